"""Pick a reader for a SOURCE, validate, and write the corpus Parquet directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from niclip_ray.atomic import write_json
from niclip_ray.corpus import literature, neurostore, nimare_sources, pubget
from niclip_ray.corpus.schema import TEXT_COLUMNS, Corpus, RawCorpus, validate
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.tables import read_parquet_checked, write_parquet_atomic

FILES = {"studies": "studies.parquet", "coordinates": "coordinates.parquet", "errors": "errors.parquet"}

#: Sections a corpus may store as raw bytes: the text stage flags invalid UTF-8 per study.
RAW_TEXT_SECTIONS = ("abstract", "body")


def read_source(source: str, allow_pickle: bool = False, data_dir: str | Path | None = None) -> RawCorpus:
    """Read any supported SOURCE into a :class:`RawCorpus`.

    SOURCE is ``neurosynth``, ``neuroquery`` or ``neurosynth+neuroquery`` (the files NiMARE's
    fetchers keep in ``data_dir``, default NiMARE's data directory; see
    :mod:`niclip_ray.corpus.literature`), ``nimare:NAME`` (data shipped with nimare), a
    NiMARE Studyset directory, a NiMARE Dataset ``.json`` (or ``.pkl``/``.pkl.gz`` with
    ``allow_pickle``), a pubget output directory, or a NeuroStore-style tree (a directory
    named like the first three is reached as ``./neurosynth``).

    Raises
    ------
    ParameterError
        When ``data_dir`` is given with a SOURCE that does not read it.
    """
    if source in literature.READERS:
        return literature.READERS[source](data_dir)
    if data_dir is not None:
        raise ParameterError("data_dir", f"applies only to SOURCE {', '.join(literature.READERS)}, not {source}")
    if source.startswith("nimare:"):
        path = nimare_sources.shipped_path(source.split(":", 1)[1])
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"corpus source not found: {source}")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".json"):
            return nimare_sources.read_dataset_json(path, source)
        if name.endswith((".pkl", ".pkl.gz")):
            if not allow_pickle:
                raise InputError(
                    f"{path} is a pickle; loading it runs arbitrary code. Pass --allow-pickle if you trust it."
                )
            return nimare_sources.read_dataset_pickle(path, source)
        raise InputError(f"unsupported corpus file {path}: expected a NiMARE Dataset .json or .pkl.gz")
    if nimare_sources.is_studyset_dir(path):
        return nimare_sources.read_studyset_dir(path, source)
    if pubget.find_pubget_dir(path) is not None:
        return pubget.read_pubget_dir(path, source)
    if neurostore.is_neurostore_tree(path):
        return neurostore.read_neurostore_tree(path, source)
    raise InputError(
        f"{path} is not a recognised corpus: expected a NiMARE Studyset directory, pubget output "
        "(metadata.csv, coordinates.csv, text.csv) or a NeuroStore tree (<id>/processed/...)"
    )


@dataclass
class IngestSummary:
    """Counts of an ingestion."""

    out_dir: Path
    n_studies: int
    n_peaks: int
    n_errors: int
    n_with_abstract: int
    n_with_body: int
    n_with_keywords: int

    def line(self) -> str:
        keywords = f", {self.n_with_keywords} with keywords" if self.n_with_keywords else ""
        return (
            f"corpus: {self.n_studies} studies ({self.n_with_abstract} with abstract, {self.n_with_body} with body"
            f"{keywords}), {self.n_peaks} peaks, {self.n_errors} problems -> {self.out_dir}"
        )


def write_corpus(corpus: Corpus, out_dir: str | Path, source: str) -> IngestSummary:
    """Write validated corpus tables (``studies``, ``coordinates``, ``errors``) and ``corpus.json``."""
    out_dir = Path(out_dir)
    write_parquet_atomic(pa.Table.from_pandas(corpus.studies, preserve_index=False), out_dir / FILES["studies"])
    write_parquet_atomic(pa.Table.from_pandas(corpus.coordinates, preserve_index=False), out_dir / FILES["coordinates"])
    errors = pa.Table.from_pandas(corpus.errors.astype(str), preserve_index=False)
    write_parquet_atomic(errors, out_dir / FILES["errors"])
    summary = IngestSummary(
        out_dir,
        n_studies=len(corpus.studies),
        n_peaks=len(corpus.coordinates),
        n_errors=len(corpus.errors),
        n_with_abstract=int((corpus.studies["abstract"] != "").sum()),
        n_with_body=int((corpus.studies["body"] != "").sum()),
        n_with_keywords=int((corpus.studies["keywords"] != "").sum()),
    )
    write_json(out_dir / "corpus.json", {"source": source, **_counts(summary)}, indent=2)
    return summary


def ingest(
    source: str, out_dir: str | Path, allow_pickle: bool = False, data_dir: str | Path | None = None
) -> tuple[Corpus, IngestSummary]:
    """Read SOURCE, validate it, and write ``studies``, ``coordinates`` and ``errors`` Parquet.

    ``allow_pickle`` and ``data_dir`` are passed to :func:`read_source`.

    Raises
    ------
    InputError
        When SOURCE cannot be read, or no study is valid (the tables are written first, so
        ``errors.parquet`` lists why).
    """
    corpus = validate(read_source(source, allow_pickle, data_dir))
    summary = write_corpus(corpus, out_dir, source)
    if summary.n_studies == 0:
        counts = corpus.errors["problem"].value_counts()
        found = ", ".join(f"{n} x {problem}" for problem, n in counts.head(3).items()) or "it holds none"
        raise InputError(f"no valid study in {source} ({found}); every problem is listed in "
                         f"{summary.out_dir / FILES['errors']}")
    return corpus, summary


def _counts(summary: IngestSummary) -> dict:
    return {k: v for k, v in vars(summary).items() if k.startswith("n_")}


def load_corpus(corpus_dir: str | Path, require_studies: bool = True) -> Corpus:
    """Load a corpus directory written by :func:`ingest`.

    A string column of ``studies`` that an older corpus lacks (``doi``, ``keywords``,
    ``peaks_from``) is filled with "".

    Raises
    ------
    InputError
        When it is not a corpus directory, a table has a refused column type, or (with
        ``require_studies``) it holds no study.
    """
    corpus_dir = Path(corpus_dir)
    missing = [name for name in ("studies", "coordinates") if not (corpus_dir / FILES[name]).is_file()]
    if missing:
        raise InputError(f"{corpus_dir} is not a corpus directory (missing {', '.join(FILES[m] for m in missing)})")
    errors_path = corpus_dir / FILES["errors"]
    corpus = Corpus(
        read_parquet_checked(corpus_dir / FILES["studies"], allow_binary=RAW_TEXT_SECTIONS).to_pandas(),
        read_parquet_checked(corpus_dir / FILES["coordinates"]).to_pandas(),
        read_parquet_checked(errors_path).to_pandas() if errors_path.is_file() else pd.DataFrame(),
    )
    for column in TEXT_COLUMNS:
        if column not in corpus.studies:
            corpus.studies[column] = ""
    if require_studies and len(corpus.studies) == 0:
        raise InputError(f"corpus {corpus_dir} holds no study ({len(corpus.errors)} problems listed in {errors_path})")
    return corpus
