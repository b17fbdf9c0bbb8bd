"""Corpus ingestion: NiMARE studysets and datasets, pubget output, NeuroStore trees -> Parquet."""

from niclip_ray.corpus.ingest import ingest, load_corpus

__all__ = ["ingest", "load_corpus"]
