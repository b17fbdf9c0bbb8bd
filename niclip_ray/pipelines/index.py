"""Study index on Ray: build it (corpus + features + bundle -> latents), and search it with many maps.

:func:`run` writes ``INDEX/part-NNNNN.parquet`` (:mod:`niclip_ray.retrieval.table`) through
:func:`~niclip_ray.pipelines.shards.run_stage`, so a killed build resumes, then
``INDEX/index.json``. Each actor loads the bundle's CLIP heads once and reads, per shard,
only the feature part files its studies are in.

:func:`search_maps` ranks the studies for every map of a decode manifest
(:func:`niclip_ray.decoding.map_files.collect_maps`) on an actor pool, each actor holding
one :class:`~niclip_ray.retrieval.index.Index`; a bad map becomes one error row.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pyarrow as pa

from niclip_ray.atomic import write_json
from niclip_ray.decoding.decoder import bundle_digest
from niclip_ray.decoding.map_files import load_item
from niclip_ray.errors import InputError, ParameterError
from niclip_ray.features.text_fingerprint import check_text_model, text_model_sha256
from niclip_ray.model.bundle import TEXT_MODEL_SHA256, load_bundle
from niclip_ray.pipelines.shards import ProcessFn, StageSummary, run_stage
from niclip_ray.retrieval.table import INDEX_META, index_items, index_rows
from niclip_ray.tables import read_parts

STAGE = "index"
SEARCH_STAGE = "search"
DEFAULT_SHARD_SIZE = 1024
#: Columns of the image search stage's part files.
SEARCH_SCHEMA = pa.schema([
    ("query", pa.string()), ("source_path", pa.string()), ("rank", pa.int32()), ("study_id", pa.string()),
    ("pmid", pa.string()), ("doi", pa.string()), ("title", pa.string()), ("in_training", pa.bool_()),
    ("score", pa.float64()), ("error", pa.string()),
])


def _section(config: dict, text_dir: Path) -> str:
    recorded = config.get("training", {}).get("section")
    if recorded:
        return str(recorded)
    try:
        sections = sorted(set(read_parts(text_dir, columns=["section"])["section"].to_pylist()))
    except FileNotFoundError as exc:
        raise InputError(f"text features directory {text_dir} holds no part-*.parquet files") from exc
    if len(sections) != 1:
        raise InputError(f"text features in {text_dir} hold sections {sections}; the bundle records none")
    return sections[0]


def _features_model_sha(model_id: str) -> str | None:
    """Fingerprint of the features' text model when its files are on this machine, else None."""
    try:
        return text_model_sha256(model_id)
    except InputError:
        return None


def make_process(bundle_path: str) -> ProcessFn:
    """Process factory body: the bundle's CLIP heads, loaded once in this actor."""
    from niclip_ray.model import CLIP

    model = CLIP.from_state_dict(load_bundle(bundle_path).state_dict).eval()
    return functools.partial(index_rows, model=model)


def run(
    corpus_dir: str | os.PathLike,
    features_dir: str | os.PathLike,
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    num_actors: int | None = None,
) -> StageSummary:
    """Build a study index on the current Ray.

    Parameters
    ----------
    corpus_dir : path
        Corpus from ``niclip-ray corpus ingest`` (study ids, pmids, titles).
    features_dir : path
        Holds the ``images/`` and ``text/`` feature stages the bundle was trained on.
    bundle_path : path
        Model bundle; its ``training.split`` gives each study's fold.
    out_dir : path
        Index directory; a rerun resumes it.

    Raises
    ------
    InputError
        The text features were embedded by another text model than the bundle's.
    """
    bundle_path = Path(bundle_path).resolve()
    bundle = load_bundle(bundle_path)
    config = bundle.config
    features_dir = Path(features_dir)
    section = _section(config, features_dir / "text")
    plan = index_items(corpus_dir, features_dir, config.get("training", {}).get("split"), section)
    if len(plan.text_model_ids) > 1:
        raise InputError(f"text features in {features_dir / 'text'} mix models {plan.text_model_ids}")
    model_id = plan.text_model_ids[0] if plan.text_model_ids else None
    sha = _features_model_sha(model_id) if model_id and config.get(TEXT_MODEL_SHA256) else None
    check_text_model(config, model_id, sha, where=f"text features in {features_dir / 'text'}")
    meta = {
        "bundle": str(bundle_path),
        "bundle_manifest": bundle_digest(bundle_path),
        "text_model_id": model_id,
        TEXT_MODEL_SHA256: config.get(TEXT_MODEL_SHA256),
        "atlas_id": config.get("atlas_id"),
        "section": section,
    }
    summary = run_stage(
        STAGE,
        plan.items,
        key="study_id",
        out_dir=out_dir,
        factory=functools.partial(make_process, str(bundle_path)),
        params=meta,
        shard_size=shard_size,
        num_actors=num_actors,
    )
    if not summary.failed_shards:
        write_json(Path(out_dir) / INDEX_META, {**meta, "n_studies": summary.n_ok_rows}, indent=2)
    return summary


def search_items(index, items: list[dict], top_k: int, against: str) -> pa.Table:
    """Pure per-shard function: the ``top_k`` studies of each map item (one error row for a bad map)."""
    import pandas as pd

    frames = []
    for item in items:
        try:
            frame = index.search_image(load_item(item), top_k, against, name=item["map_id"])
            frames.append(frame.assign(source_path=item["source_path"], error=None))
        except InputError as exc:
            frames.append(pd.DataFrame({"query": [item["map_id"]], "source_path": [item["source_path"]],
                                        "error": [str(exc)]}))
        except Exception as exc:  # one unexpected failure must not take the shard down
            frames.append(pd.DataFrame({"query": [item["map_id"]], "source_path": [item["source_path"]],
                                        "error": [f"map {item['map_id']}: {type(exc).__name__}: {exc}"]}))
    table = pd.concat(frames, ignore_index=True)
    columns = {}
    for field in SEARCH_SCHEMA:
        values = table[field.name] if field.name in table else pd.Series([None] * len(table))
        columns[field.name] = pa.array(values.astype(object).where(values.notna(), None).tolist(), field.type)
    return pa.table(columns, schema=SEARCH_SCHEMA)


def make_search_process(index_dir: str, bundle_path: str, top_k: int, against: str,
                        atlas_dir: str | None) -> ProcessFn:
    """Process factory body: one :class:`~niclip_ray.retrieval.index.Index` and its projector per actor."""
    from niclip_ray.retrieval.index import Index

    index = Index(index_dir, bundle_path, atlas_dir=atlas_dir)
    index.projector  # noqa: B018 - build the projector now, not inside the first shard
    return functools.partial(search_items, index, top_k=top_k, against=against)


def search_maps(
    maps: list[dict],
    index_dir: str | os.PathLike,
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    top_k: int = 20,
    against: str = "text",
    atlas_dir: str | os.PathLike | None = None,
    shard_size: int = 64,
    num_actors: int | None = None,
) -> StageSummary:
    """Rank the index's studies for every map on the current Ray (resumable, one part per shard)."""
    from niclip_ray.retrieval.index import AGAINST, Index

    if against not in AGAINST:
        raise ParameterError("against", f"must be one of {', '.join(AGAINST)}, got {against!r}")
    Index(index_dir, bundle_path, atlas_dir=atlas_dir)  # index and bundle checked on the driver, before any actor
    bundle_path = Path(bundle_path).resolve()
    params = {"index": str(Path(index_dir).resolve()), "bundle_manifest": bundle_digest(bundle_path),
              "top_k": int(top_k), "against": against}
    factory = functools.partial(make_search_process, str(Path(index_dir).resolve()), str(bundle_path), int(top_k),
                                against, str(atlas_dir) if atlas_dir else None)
    return run_stage(SEARCH_STAGE, maps, key="map_id", output_key="query", out_dir=out_dir, factory=factory,
                     params=params, shard_size=shard_size, num_actors=num_actors)

