"""Helpers of ``niclip-ray predict``, the drop-in for the reference's ``braindec/predict.py``.

The reference command takes loose files and writes, per image, ``{image}_predictions.csv``
(tasks) or, with ``--hierarchical``, ``{image}_task_predictions.csv``,
``{image}_concept_predictions.csv`` and ``{image}_process_predictions.csv`` (``docs/method.md``,
"Artifacts of the paper"). ``{image}`` is the file name up to its first dot, and the files go next to the
image unless ``--output`` is given. This module holds what is specific to that interface:
its boolean and device arguments, its output names, and writing its tables from a tidy
decoding result (:func:`niclip_ray.decoding.export.reference_tables`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_csv
from niclip_ray.decoding.export import reference_tables
from niclip_ray.errors import InputError, ParameterError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
#: File tag of each decoding level in the reference's hierarchical outputs.
LEVEL_TAGS = {"task": "task", "concept": "concept", "domain": "process"}


def parse_bool(value: str | bool) -> bool:
    """Read a boolean flag value the way it reads (``True/False/true/false/1/0/yes/no``).

    Raises
    ------
    ValueError
        On any other value (the reference treats every non-empty string, "False" included,
        as true).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean; use True or False (also true/false, 1/0, yes/no)")


def check_device(device: str | None) -> None:
    """Check a torch device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``) against this machine.

    Raises
    ------
    ParameterError
        When the string is not a device, or names a GPU this machine does not have.
    """
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ParameterError("device", f"{device!r} is not a device; use cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError("device", f"{device}: no CUDA GPU is available on this machine; use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ParameterError("device", f"{device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ParameterError("device", f"{device}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise ParameterError("device", f"{device}: only cpu, cuda, cuda:N and mps are supported")


def image_name(path: str | os.PathLike) -> str:
    """The reference's output prefix of an image: its file name up to the first dot."""
    return Path(path).name.split(".")[0]


def output_targets(items: list[dict], output: str | os.PathLike | None) -> dict[str, tuple[Path, str]]:
    """Where each map's CSVs go: ``{map_id: (directory, prefix)}``.

    The directory is ``output``, or the image's own directory (the reference's default). The
    prefix is :func:`image_name`, with ``_vol-K`` for volume K of a 4-D file.

    Parameters
    ----------
    items : list of dict
        Manifest items of :func:`niclip_ray.decoding.map_files.collect_maps`.
    output : path, optional

    Raises
    ------
    InputError
        When two maps would write the same files (e.g. ``a/x.nii.gz`` and ``b/x.nii`` with one
        ``output``).
    """
    targets = {}
    for item in items:
        source = Path(item["source_path"])
        prefix = image_name(source) + (f"_vol-{item['volume']}" if int(item.get("volume", -1)) >= 0 else "")
        directory = Path(output) if output is not None else source.parent
        targets[item["map_id"]] = (directory, prefix)
    seen: dict[tuple[Path, str], str] = {}
    for map_id, target in targets.items():
        if target in seen:
            raise InputError(
                f"maps {seen[target]} and {map_id} would both write {target[0] / target[1]}_*predictions.csv; "
                "give them different file names or decode them into different output directories"
            )
        seen[target] = map_id
    return targets


def write_predictions(result: pd.DataFrame, directory: str | os.PathLike, prefix: str, hierarchical: bool) -> list[Path]:
    """Write one map's tables under the reference's names.

    Parameters
    ----------
    result : DataFrame
        The map's rows of a tidy decoding result (:data:`niclip_ray.decoding.schema.RESULT_COLUMNS`).
    directory : path
        Created if needed.
    prefix : str
        Output prefix (:func:`image_name`).
    hierarchical : bool
        ``{prefix}_{task,concept,process}_predictions.csv`` when True, else the task table
        alone as ``{prefix}_predictions.csv``.

    Returns
    -------
    list of Path
        Files written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tables = reference_tables(result)
    if not hierarchical:
        path = directory / f"{prefix}_predictions.csv"
        write_csv(path, tables["task"])
        return [path]
    written = []
    for level, tag in LEVEL_TAGS.items():
        path = directory / f"{prefix}_{tag}_predictions.csv"
        write_csv(path, tables[level])
        written.append(path)
    return written


def braindec_atlas_dir() -> Path | None:
    """The reference's nilearn directory (``$BRAINDEC_DATA/nilearn``, default ``~/braindec-data``),
    when it holds ``difumo_atlases/``; else None."""
    root = Path(os.environ.get("BRAINDEC_DATA", "~/braindec-data")).expanduser() / "nilearn"
    return root if (root / "difumo_atlases").is_dir() else None
