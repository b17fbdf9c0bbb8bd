"""Parquet helpers shared by every stage: atomic writes, fixed-shape tensor columns, checked reads.

Embeddings are stored as Arrow's canonical ``arrow.fixed_shape_tensor`` extension type
(float32), which pyarrow, pandas and Ray Data all read back as an ``(n, dim)`` array.
Rows whose embedding could not be computed hold a null tensor.

Inputs are read with :func:`read_parquet_checked`: once ``ray.data`` is imported, Arrow
knows Ray's pickled-object extension type, whose values are unpickled (so can run code)
when a column is converted; the schema is checked before any data is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from niclip_ray.atomic import replacing
from niclip_ray.errors import InputError

#: Extension types an input may hold: only the tensor type :func:`tensor_array` writes.
ALLOWED_EXTENSIONS = frozenset({"arrow.fixed_shape_tensor"})
#: Field metadata naming an extension type that this process has not registered.
_EXTENSION_KEY = b"ARROW:extension:name"


def tensor_array(values: np.ndarray, valid: np.ndarray | None = None) -> pa.ExtensionArray:
    """Build a fixed-shape float32 tensor column from a 2-D array.

    Parameters
    ----------
    values : (n_rows, dim) array
        One vector per row.
    valid : (n_rows,) bool array, optional
        False marks a row whose vector is missing; it is stored as null.

    Returns
    -------
    pyarrow.ExtensionArray
        ``arrow.fixed_shape_tensor[float, [dim]]``.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {values.shape}")
    n_rows, dim = values.shape
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    storage = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim, mask=mask)
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [dim]), storage)


def tensor_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Read a tensor (or plain list) column back as ``(n_rows, dim)`` float32; nulls are NaN."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    storage = column.storage if isinstance(column, pa.ExtensionArray) else column
    if len(storage) == 0:
        size = getattr(storage.type, "list_size", 0)
        return np.zeros((0, size), dtype=np.float32)
    valid = storage.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(storage.type):
        dim = storage.type.list_size
        flat = storage.flatten() if valid.all() else storage.fill_null([np.nan] * dim).flatten()
        out = flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(storage), dim)
    else:  # variable-size lists, e.g. written by another tool
        rows = storage.to_pylist()
        dim = max((len(r) for r in rows if r is not None), default=0)
        out = np.array([r if r is not None else [np.nan] * dim for r in rows], dtype=np.float32)
    out[~valid] = np.nan
    return out


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` through a temporary name and an atomic rename (:func:`~niclip_ray.atomic.replacing`).

    A reader never sees a half-written file, and a killed writer leaves only a hidden
    temporary file that the next run ignores.
    """
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def is_complete_parquet(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and its Parquet footer can be read."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid):
        return False
    return True


def part_files(directory: str | os.PathLike) -> list[Path]:
    """The ``part-NNNNN.parquet`` files of a stage directory, in shard order."""
    return sorted(Path(directory).glob("part-*.parquet"))


def check_parquet_schema(path: str | os.PathLike, allow_binary: tuple[str, ...] = ()) -> pa.Schema:
    """Read the schema of ``path`` and refuse column types an input may not hold.

    Refused: any extension type but :data:`ALLOWED_EXTENSIONS` (Ray's
    ``ray.data.arrow_pickled_object`` above all), registered or not, at any nesting depth,
    and binary columns other than the top-level columns named in ``allow_binary``.

    Raises
    ------
    InputError
        Naming the file and the offending column, or when the footer cannot be read.
    """
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    for field in schema:
        problem = _refused_type(field, binary_ok=field.name in allow_binary)
        if problem:
            column, what = problem
            raise InputError(f"{path}: column {column!r} {what}; inputs may hold only plain columns "
                             "and fixed-shape tensors (refused before reading any data)")
    return schema


def _refused_type(field: pa.Field, binary_ok: bool = False, prefix: str = "") -> tuple[str, str] | None:
    """``(column path, why)`` when ``field`` or a field nested in it has a refused type."""
    name = prefix + field.name
    unregistered = (field.metadata or {}).get(_EXTENSION_KEY)
    if unregistered is not None and unregistered.decode(errors="replace") not in ALLOWED_EXTENSIONS:
        return name, f"has the extension type {unregistered.decode(errors='replace')}"
    dtype = field.type
    if isinstance(dtype, pa.BaseExtensionType):
        if dtype.extension_name not in ALLOWED_EXTENSIONS:
            return name, f"has the extension type {dtype.extension_name}"
        dtype = dtype.storage_type
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    binary = (pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype)
              or pa.types.is_fixed_size_binary(dtype))
    if binary and not binary_ok:
        return name, f"holds raw bytes ({dtype})"
    for i in range(dtype.num_fields):
        problem = _refused_type(dtype.field(i), prefix=f"{name}.")
        if problem:
            return problem
    return None


def read_parquet_checked(
    path: str | os.PathLike, columns: list[str] | None = None, allow_binary: tuple[str, ...] = ()
) -> pa.Table:
    """Read an input Parquet file after :func:`check_parquet_schema` accepted its schema.

    Raises
    ------
    InputError
        When a column has a refused type or the file cannot be read; the message names the file.
    """
    check_parquet_schema(path, allow_binary)
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def read_parts(directory: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Concatenate a stage directory's part files into one table (each checked on read).

    An ``error`` column comes back with null for every good row (:func:`with_null_errors`).
    A column that parts written by an older version lack is null in their rows.
    """
    files = part_files(directory)
    if not files:
        raise FileNotFoundError(f"no part-*.parquet files in {directory}")
    tables = [read_parquet_checked(f, columns=columns) for f in files]
    return with_null_errors(pa.concat_tables(tables, promote_options="default"))


def error_array(messages: Iterable[str | None]) -> pa.Array:
    """The ``error`` column of a stage part: each failed row's message, null for a good row.

    A good row may be given as None or ``""``; both are written as null.
    """
    return pa.array([message or None for message in messages], pa.string())


def with_null_errors(table: pa.Table) -> pa.Table:
    """``table`` with ``""`` in its ``error`` column (if any) read as null.

    Parts written before the null convention hold ``""`` for a good row; read this way,
    old and new parts look alike.
    """
    if "error" not in table.column_names or not pa.types.is_string(table.schema.field("error").type):
        return table
    errors = table["error"]
    cleaned = pc.if_else(pc.equal(errors, ""), pa.scalar(None, errors.type), errors)
    return table.set_column(table.column_names.index("error"), "error", cleaned)
