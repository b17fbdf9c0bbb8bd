"""Batch decoding on Ray: maps -> ``decode/part-NNNNN.parquet`` (the decode contract, :mod:`niclip_ray.decoding.schema`).

Each actor loads the bundle, builds the CLIP features of the vocabulary and the atlas
projector once (:class:`~niclip_ray.decoding.decoder.Decoder`), then decodes its shards
as :meth:`Decoder.transform <niclip_ray.decoding.decoder.Decoder.transform>` does
(:func:`~niclip_ray.decoding.batch.decode_maps`): every map is projected on its own (a
bad map becomes one error row) and the good ones are scored together, vectorised.
Sharding, resume and atomic writes come from :func:`niclip_ray.pipelines.shards.run_stage`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from niclip_ray.decoding.batch import decode_maps
from niclip_ray.decoding.decoder import Decoder, bundle_digest, resolve_atlas
from niclip_ray.decoding.map_files import file_stamp
from niclip_ray.decoding.ranking import DEFAULT_RANK_BY, parse_rank_by
from niclip_ray.decoding.schema import DECODE_SCHEMA
from niclip_ray.errors import ParameterError
from niclip_ray.model.bundle import load_bundle
from niclip_ray.pipelines.shards import ProcessFn, StageSummary, run_stage
from niclip_ray.pipelines.tally import items_done

STAGE = "decode"


def decode_items(decoder: Decoder, items: list[dict], strict: bool = False) -> pa.Table:
    """Decode one shard of manifest items with a ready decoder (pure; no Ray).

    :func:`~niclip_ray.decoding.batch.decode_maps`'s rows, a failed map one error row,
    as a part's Arrow table.

    Returns
    -------
    pyarrow.Table
        :data:`~niclip_ray.decoding.schema.DECODE_SCHEMA`.
    """
    table = decode_maps(decoder, items, strict=strict, on_item=items_done)
    columns = {}
    for name in DECODE_SCHEMA.names:
        values = table[name].astype(object)
        columns[name] = pa.array(values.where(table[name].notna(), None).tolist(), DECODE_SCHEMA.field(name).type)
    return pa.table(columns, schema=DECODE_SCHEMA)


def make_process(
    bundle_path: str,
    topk: int | None = 10,
    logit_scale: float | None = None,
    atlas_dir: str | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
    strict: bool = False,
    rank_by: str = DEFAULT_RANK_BY,
) -> ProcessFn:
    """Process factory run inside each actor: build the decoder (and its projector) once."""
    decoder = Decoder(
        bundle_path,
        topk=topk,
        logit_scale=logit_scale,
        atlas_dir=atlas_dir,
        allow_atlas_mismatch=allow_atlas_mismatch,
        hierarchical=hierarchical,
        rank_by=rank_by,
    )
    decoder.projector  # noqa: B018 - build the projector now, not inside the first shard
    return functools.partial(decode_items, decoder, strict=strict)


def validate(
    bundle_path: str | os.PathLike,
    atlas_dir: str | os.PathLike | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
) -> Path:
    """Check a bundle and its atlas before any actor starts (needs no Ray).

    Returns
    -------
    Path
        The resolved bundle directory.

    Raises
    ------
    InputError, ConfigError
        Bad or tampered bundle, no vocabulary, no ontology for ``hierarchical=True``, or
        no matching atlas.
    """
    bundle_path = Path(bundle_path).resolve()
    bundle = load_bundle(bundle_path)
    bundle.require_vocabulary()
    if hierarchical and bundle.ontology is None:
        raise ParameterError("hierarchical", f"needs a bundle with an ontology, but bundle {bundle_path} has no "
                             "ontology: decode tasks only, or attach one")
    resolve_atlas(bundle, atlas_dir, allow_atlas_mismatch)
    return bundle_path


def run(
    maps: list[dict],
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    topk: int | None = 10,
    logit_scale: float | None = None,
    atlas_dir: str | os.PathLike | None = None,
    allow_atlas_mismatch: bool = False,
    hierarchical: bool | None = None,
    rank_by: str = DEFAULT_RANK_BY,
    shard_size: int = 64,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    strict: bool = False,
    in_process: bool = False,
    on_items: Callable[[int, int], None] | None = None,
) -> StageSummary:
    """Decode ``maps`` (items of :func:`niclip_ray.decoding.map_files.collect_maps`) into ``out_dir``.

    The bundle is checked (:func:`validate`) on the driver before any actor starts. Each
    map's file is fingerprinted (:func:`~niclip_ray.decoding.map_files.file_stamp`: size,
    mtime and sha256), so a rerun skips finished shards only while their files are
    unchanged; a shard with a changed file is decoded again. ``strict`` refuses maps
    without a transform or only partly over the brain mask instead of warning. ``rank_by``
    orders each map's tasks (:mod:`niclip_ray.decoding.ranking`); hubs are flagged per shard.
    ``in_process`` decodes in this process without Ray (a few maps), writing the same files.
    ``on_items(n, total)`` is told as maps are decoded (for progress).

    Returns
    -------
    StageSummary
        Counts maps (``unit="maps"``); rows are prediction rows, each failed map one row.
    """
    bundle_path = validate(bundle_path, atlas_dir, allow_atlas_mismatch, hierarchical)
    params = {
        "bundle": str(bundle_path),
        "bundle_manifest": bundle_digest(bundle_path),
        "topk": topk,
        "logit_scale": logit_scale,
        "atlas_dir": str(atlas_dir) if atlas_dir else None,
        "hierarchical": hierarchical,
        "strict": strict,
        "rank_by": parse_rank_by(rank_by),
    }
    maps = [{**item, "file": file_stamp(item["source_path"])} for item in maps]
    factory = functools.partial(
        make_process,
        str(bundle_path),
        topk=topk,
        logit_scale=logit_scale,
        atlas_dir=str(atlas_dir) if atlas_dir else None,
        allow_atlas_mismatch=allow_atlas_mismatch,
        hierarchical=hierarchical,
        strict=strict,
        rank_by=rank_by,
    )
    return run_stage(
        STAGE,
        maps,
        key="map_id",
        out_dir=out_dir,
        factory=factory,
        params=params,
        shard_size=shard_size,
        num_actors=num_actors,
        cpus_per_actor=cpus_per_actor,
        unit="maps",
        in_process=in_process,
        on_items=on_items,
    )

