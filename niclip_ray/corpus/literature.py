"""Neurosynth and NeuroQuery, in the files NiMARE's fetchers download, read into a corpus.

SOURCE ``neurosynth``, ``neuroquery`` or ``neurosynth+neuroquery`` reads

* Neurosynth v7 (``fetch_neurosynth(version="7", source="abstract", vocab="LDA50")``):
  peaks ``id, table_id, table_num, peak_id, x, y, z`` and metadata ``id`` (PMID), ``doi``,
  ``space``, ``title``, ...;
* NeuroQuery v1 (``fetch_neuroquery(version="1", source="abstract", vocab="neuroquery7547",
  type="count")``): peaks ``id, table_id, table_name, x, y, z``, metadata ``id, title`` and
  the word counts of each abstract over NeuroQuery's 7,547 terms (a sparse matrix, rows in
  metadata order).

A study is one PMID (``study_id`` and ``pmid``), an analysis one table
(``PMID-TABLE_ID``). Neither database redistributes abstracts, so a study's text is its
``title`` and its ``keywords``: every term of NeuroQuery's vocabulary that its abstract
contains, by tf-idf over the NeuroQuery corpus (descending, ties in vocabulary order),
joined with ", " (empty for a study NeuroQuery lacks). A study with neither is an error
("no text").

Files are looked for where the fetchers keep them, ``DATA_DIR/neurosynth`` and
``DATA_DIR/neuroquery`` (``DATA_DIR``: NiMARE's data directory, ``$NIMARE_DATA`` or
``~/.nimare``, unless given); missing ones are downloaded by the fetcher. When that
download fails (no network), the error names the folder to seed and the files it needs.
"""

from __future__ import annotations

import contextlib
import io
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from niclip_ray.corpus.schema import RawCorpus
from niclip_ray.corpus.spaces import to_mni
from niclip_ray.errors import InputError

#: What counts as a study's text in these sources.
TEXT_COLUMNS = ("title", "keywords")

#: Seconds a download may wait on one socket operation before the fetcher gives up.
SOCKET_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Release:
    """One database release as NiMARE's fetcher asks for it, and the files it then holds."""

    fetcher: str
    query: dict
    files: tuple[str, ...]
    url: str


RELEASES = {
    "neurosynth": Release(
        "fetch_neurosynth",
        {"version": "7", "source": "abstract", "vocab": "LDA50"},
        (
            "data-neurosynth_version-7_coordinates.tsv.gz",
            "data-neurosynth_version-7_metadata.tsv.gz",
            "data-neurosynth_version-7_vocab-LDA50_source-abstract_type-weight_features.npz",
            "data-neurosynth_version-7_vocab-LDA50_vocabulary.txt",
            "data-neurosynth_version-7_vocab-LDA50_keys.tsv",
            "data-neurosynth_version-7_vocab-LDA50_metadata.json",
        ),
        "https://github.com/neurosynth/neurosynth-data",
    ),
    "neuroquery": Release(
        "fetch_neuroquery",
        {"version": "1", "source": "abstract", "vocab": "neuroquery7547", "type": "count"},
        (
            "data-neuroquery_version-1_coordinates.tsv.gz",
            "data-neuroquery_version-1_metadata.tsv.gz",
            "data-neuroquery_version-1_vocab-neuroquery7547_source-abstract_type-count_features.npz",
            "data-neuroquery_version-1_vocab-neuroquery7547_vocabulary.txt",
        ),
        "https://github.com/neuroquery/neuroquery_data",
    ),
}


def dataset_dir(which: str, data_dir: str | Path | None = None) -> Path:
    """The folder NiMARE's fetcher of ``which`` reads and writes.

    ``data_dir/which`` when ``data_dir`` is given, else the fetcher's default (the first of
    ``$NIMARE_SHARED_DATA``, ``$NIMARE_DATA`` and ``~/.nimare`` that holds it, or where it
    would be created). NiMARE creates the folder when it is missing.
    """
    from nimare.extract.utils import _get_dataset_dir

    try:
        return Path(_get_dataset_dir(which, data_dir=None if data_dir is None else str(data_dir)))
    except OSError as exc:
        raise InputError(f"cannot create a folder for {which} data: {exc}") from exc


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every socket operation that gives no timeout of its own (NiMARE's ``urlopen``)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_files(which: str, data_dir: str | Path | None = None) -> dict:
    """Run NiMARE's fetcher of ``which`` (``return_type="files"``) and return its file manifest.

    The fetcher downloads the files that ``dataset_dir(which, data_dir)`` lacks. Every socket
    operation of that download times out after :data:`SOCKET_TIMEOUT_S` seconds, so an
    unreachable network fails within seconds, not minutes.

    Returns
    -------
    dict
        ``coordinates`` and ``metadata`` paths, and ``features``: a list of dicts of paths
        (``features``, ``vocabulary``, ...).

    Raises
    ------
    InputError
        When a missing file cannot be downloaded: one line naming the folder to seed and the
        files it needs. Partial downloads are removed.
    """
    from nimare import extract

    release = RELEASES[which]
    folder = dataset_dir(which, data_dir)
    missing = [name for name in release.files if not (folder / name).is_file()]
    fetch = getattr(extract, release.fetcher)
    # With every file present the fetcher only prints "Downloading ... Skipping" per file.
    quiet = contextlib.nullcontext() if missing else contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet, _socket_timeout(SOCKET_TIMEOUT_S), warnings.catch_warnings():
            # this frozen snapshot is the one wanted; NiMARE warns that it is frozen
            warnings.filterwarnings("ignore", message="fetch_neurosynth downloads a frozen", category=FutureWarning)
            found = fetch(data_dir=str(folder.parent), return_type="files", **release.query)
    except (OSError, HTTPException) as exc:
        for name in missing:  # the fetcher opens each file before it connects
            (folder / name).unlink(missing_ok=True)
        raise InputError(
            f"cannot download {which} ({type(exc).__name__}: {exc}): seed {folder} with "
            f"{', '.join(missing)} from {release.url}"
        ) from exc
    return found[0]


def _read_table(path: str | Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A gzip TSV as strings ("" for empty cells), with the columns we need checked."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        raise InputError(f"{path} lacks column(s) {', '.join(lacking)}")
    return table


def _peaks(coords: pd.DataFrame) -> pd.DataFrame:
    """Peaks in the corpus layout: a study per PMID, an analysis per table."""
    return pd.DataFrame({
        "study_id": coords["id"],
        "analysis_id": coords["id"] + "-" + coords["table_id"],
        "x": coords["x"],
        "y": coords["y"],
        "z": coords["z"],
    })


def keyword_documents(counts: sparse.spmatrix, terms: list[str]) -> list[str]:
    """Each row's non-zero terms, by tf-idf descending (ties in term order), joined with ", ".

    tf is the count; idf is scikit-learn's smooth idf over the rows,
    ``ln((1 + n_rows) / (1 + document frequency)) + 1``.

    Parameters
    ----------
    counts : scipy.sparse matrix, shape (n_rows, n_terms)
        Term counts per row.
    terms : list of str, length n_terms
        The terms, in column order.

    Returns
    -------
    list of str, length n_rows
        One keyword document per row ("" for a row without terms).
    """
    counts = sparse.csr_matrix(counts, copy=True)
    counts.eliminate_zeros()
    n_rows = counts.shape[0]
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + n_rows) / (1 + document_frequency)) + 1
    names = np.asarray(terms, dtype=object)
    documents = []
    for i in range(n_rows):
        span = slice(counts.indptr[i], counts.indptr[i + 1])
        columns = counts.indices[span]
        order = np.lexsort((columns, -(counts.data[span] * idf[columns])))
        documents.append(", ".join(names[columns[order]]))
    return documents


def _neurosynth(files: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Neurosynth's studies and peaks (Talairach peaks converted to MNI).

    ``space_in`` is the study's ``space`` in the metadata. Talairach (``TAL``) peaks are
    converted with NiMARE's ``tal2mni``; ``UNKNOWN`` peaks are kept as they are, i.e. read
    as MNI, which is what Neurosynth itself and the reference do; ``space_in`` keeps
    ``UNKNOWN`` so that they can be told apart.
    """
    metadata = _read_table(files["metadata"], ("id", "doi", "space", "title"))
    coords = _read_table(files["coordinates"], ("id", "table_id", "x", "y", "z"))
    studies = pd.DataFrame({
        "study_id": metadata["id"],
        "pmid": metadata["id"],
        "doi": metadata["doi"],
        "title": metadata["title"],
        "peaks_from": "neurosynth",
    })
    peaks = _peaks(coords)
    peaks["space_in"] = coords["id"].map(metadata.drop_duplicates("id").set_index("id")["space"])
    return studies, to_mni(peaks)


def _neuroquery(files: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NeuroQuery's studies (with their keyword documents) and peaks.

    NeuroQuery's peaks carry no space, and its data folder's ``README.md`` does not name
    one (it says only "Data used by https://neuroquery.org" and links the paper). They are
    read as MNI (``space_in`` "MNI"), as NeuroQuery's own code does: it places them on
    nilearn's MNI152 brain mask. Caveat: for studies Neurosynth marks ``TAL``, NeuroQuery's
    peaks equal Neurosynth's unconverted Talairach values.
    """
    metadata = _read_table(files["metadata"], ("id", "title"))
    coords = _read_table(files["coordinates"], ("id", "table_id", "x", "y", "z"))
    features = files["features"][0]  # the query names one: abstract counts over the 7,547 terms
    try:
        counts = sparse.load_npz(features["features"])
        terms = Path(features["vocabulary"]).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read NeuroQuery's word counts ({features['features']}): {exc}") from exc
    if counts.shape != (len(metadata), len(terms)):
        raise InputError(
            f"{features['features']} holds {counts.shape[0]} x {counts.shape[1]} counts; expected one row per "
            f"study of {files['metadata']} ({len(metadata)}) and one column per term of "
            f"{features['vocabulary']} ({len(terms)})"
        )
    studies = pd.DataFrame({
        "study_id": metadata["id"],
        "pmid": metadata["id"],
        "title": metadata["title"],
        "keywords": keyword_documents(counts, terms),
        "peaks_from": "neuroquery",
    })
    return studies, _peaks(coords).assign(space_in="MNI")


def read_neurosynth(data_dir: str | Path | None = None) -> RawCorpus:
    """Read Neurosynth v7 (SOURCE ``neurosynth``); see the module docstring."""
    studies, peaks = _neurosynth(fetch_files("neurosynth", data_dir))
    return RawCorpus("neurosynth", studies, peaks, text_columns=TEXT_COLUMNS)


def read_neuroquery(data_dir: str | Path | None = None) -> RawCorpus:
    """Read NeuroQuery v1 (SOURCE ``neuroquery``); see the module docstring."""
    studies, peaks = _neuroquery(fetch_files("neuroquery", data_dir))
    return RawCorpus("neuroquery", studies, peaks, text_columns=TEXT_COLUMNS)


def read_union(data_dir: str | Path | None = None) -> RawCorpus:
    """Read both databases as one corpus, one study per PMID (SOURCE ``neurosynth+neuroquery``).

    A study in only one database comes from it. A study in both takes its title and keywords
    from NeuroQuery, its doi and its peaks from Neurosynth: Neurosynth records each study's
    space, so its Talairach peaks are converted, while NeuroQuery's peaks carry no space and,
    for the studies Neurosynth marks ``TAL``, are the unconverted Talairach values (93% of
    those studies' peaks equal Neurosynth's raw ones). Peaks are never pooled across the two,
    as both mostly list the same tables. ``peaks_from`` records which database gave a
    study's peaks.
    """
    ns_studies, ns_peaks = _neurosynth(fetch_files("neurosynth", data_dir))
    nq_studies, nq_peaks = _neuroquery(fetch_files("neuroquery", data_dir))
    ns_by_id = ns_studies.drop_duplicates("study_id").set_index("study_id")
    in_neurosynth = nq_studies["study_id"].isin(ns_by_id.index)
    nq_studies["doi"] = nq_studies["study_id"].map(ns_by_id["doi"]).fillna("")
    nq_studies.loc[in_neurosynth, "peaks_from"] = "neurosynth"
    studies = pd.concat([nq_studies, ns_studies.loc[~ns_studies["study_id"].isin(set(nq_studies["study_id"]))]])
    peaks = pd.concat([ns_peaks, nq_peaks.loc[~nq_peaks["study_id"].isin(ns_by_id.index)]])
    return RawCorpus("neurosynth+neuroquery", studies, peaks, text_columns=TEXT_COLUMNS)


#: SOURCE -> reader, for :func:`niclip_ray.corpus.ingest.read_source`.
READERS: dict[str, Callable[[str | Path | None], RawCorpus]] = {
    "neurosynth": read_neurosynth,
    "neuroquery": read_neuroquery,
    "neurosynth+neuroquery": read_union,
}
