"""``niclip-ray decode``: brain maps -> Cognitive Atlas tasks, concepts and domains."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli import preflight
from niclip_ray.cli.console import (
    PLAIN_EVERY_S,
    SHOW_MAPS,
    ItemProgress,
    check_shards,
    err,
    fail_if_any_failed,
    print_maps,
    print_top_tasks,
    report_failures,
    say,
)
from niclip_ray.cli.context import options
from niclip_ray.cli.options import AtlasDirOpt, FailOnErrorOpt, RankByOpt, TopKOpt, parse_logit_scale
from niclip_ray.controls import escape_controls

#: At most this many maps are decoded in this process, without starting Ray (unless --ray).
IN_PROCESS_MAPS = 4


def decode(
    ctx: typer.Context,
    maps: Annotated[
        list[Path] | None,
        typer.Argument(help="NIfTI files, directories of maps, or NeuroVault collection_<id>/ directories."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model bundle directory (default: the one 'model fetch-reference' wrote)."),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory (decode/ Parquet parts, csv/).")] = ...,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", help="NeuroVault collection id (repeatable).")
    ] = None,
    neurovault_dir: Annotated[
        Path | None, typer.Option("--neurovault-dir", help="nilearn data dir holding neurovault/collection_<id>/.")
    ] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch missing collections from NeuroVault.")] = False,
    topk: TopKOpt = 10,
    rank_by: RankByOpt = "posterior",
    logit_scale: Annotated[
        float | None, typer.Option("--logit-scale", parser=parse_logit_scale, help="Similarity scale (default: the bundle's).")
    ] = None,
    hierarchical: Annotated[
        bool | None,
        typer.Option("--hierarchical/--tasks-only", help="Concepts and domains too (default: if the bundle has an ontology)."),
    ] = None,
    atlas_dir: AtlasDirOpt = None,
    allow_atlas_mismatch: Annotated[
        bool, typer.Option("--allow-atlas-mismatch", help="Decode even if the atlas found is not the bundle's.")
    ] = False,
    standin: Annotated[
        bool, typer.Option("--standin", help="Allow a bundle trained on the offline stand-in atlas (not DiFuMo).")
    ] = False,
    csv: Annotated[bool, typer.Option("--csv/--no-csv", help="Also write per-map CSVs in the reference's format.")] = True,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Maps per output part.")] = 64,
    num_actors: Annotated[int | None, typer.Option("--num-actors", min=1, help="Decoder actors (default: per CPU).")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse maps with no sform/qform or only partly over the brain mask.")
    ] = False,
    fail_on_error: FailOnErrorOpt = False,
    use_ray: Annotated[
        bool, typer.Option("--ray", help=f"Use Ray even for {IN_PROCESS_MAPS} maps or fewer on this machine.")
    ] = False,
) -> None:
    """Decode brain maps with a model bundle.

    Writes OUT/decode/part-NNNNN.parquet (map_id, source_path, level, rank, term, prob,
    similarity, likelihood, prior, bayes_factor, error, warning, and a NeuroVault map's
    collection_id, image_id, name, contrast), OUT/csv/{map}_{level}_predictions.csv, and
    prints the top predictions of up to 3 maps, or each map's top task for more. A map's
    id is its file name (its path when two maps share a name). A rerun resumes (maps whose
    files changed are decoded again). Failed maps keep exit 0 unless --fail-on-error.
    Up to 4 maps with no Ray address are decoded in this process, without starting Ray
    (same files; --ray to use Ray anyway).

    Without --model, the bundle written by `niclip-ray model fetch-reference` is used
    ($NICLIP_HOME/models/niclip-reference) and named on stderr.

    --rank-by orders each map's tasks: posterior (the paper's, default), bayes-factor or
    likelihood. The against_map column marks a task the map argues against (Bayes factor
    below 1), hub a term in the top 5 of more than half of the maps decoded together.

    Example: niclip-ray decode motor.nii.gz --model bundle --out work/decoded
    """
    opts = options(ctx)
    preflight.existing_paths(maps or [])  # before torch, nilearn and Ray are imported
    model = model if model is not None else default_model(opts.quiet)
    config = preflight.bundle_config(model)
    preflight.standin_allowed(config, model, standin)
    preflight.atlas_available(config, atlas_dir, allow_atlas_mismatch)

    from niclip_ray.decoding.export import write_csvs
    from niclip_ray.decoding.map_files import collect_maps
    from niclip_ray.errors import InputError
    from niclip_ray.pipelines import decode as stage
    from niclip_ray.runtime import ray_session
    from niclip_ray.tables import read_parts

    items = collect_maps(maps or [], collection or [], neurovault_dir, download)
    stage.validate(model, atlas_dir, allow_atlas_mismatch, hierarchical)  # fail before starting Ray
    settings = dict(topk=topk, logit_scale=logit_scale, atlas_dir=atlas_dir, allow_atlas_mismatch=allow_atlas_mismatch,
                    hierarchical=hierarchical, rank_by=rank_by, shard_size=shard_size, num_actors=num_actors, strict=strict)
    if decode_here(len(items), opts.ray_options(), use_ray, num_actors):
        with warnings.catch_warnings():  # the stand-in note below says it once, as on Ray
            warnings.filterwarnings("ignore", message="decoding on .*stand-in", category=UserWarning)
            summary = stage.run(items, model, out_dir / "decode", in_process=True, **settings)
    else:
        with ray_session(opts.ray_options(), log_dir=out_dir / "logs"), \
                ItemProgress("decode", len(items), "maps", quiet=opts.quiet, every_s=PLAIN_EVERY_S) as progress:
            summary = stage.run(items, model, out_dir / "decode", on_items=progress.on_items, **settings)
    check_shards(summary)
    results = read_parts(out_dir / "decode").to_pandas()
    failed = results[results["error"].notna()]
    for row in failed.head(10).itertuples():
        err.print(f"warning: {escape_controls(row.error)}", markup=False)
    if len(failed) > 10:
        err.print(f"warning: ... {len(failed) - 10} more failed maps (see the error column)", markup=False)
    decoded = results[results["error"].isna()]
    warned = decoded[decoded["warning"] != ""].drop_duplicates("map_id")
    for row in warned.head(10).itertuples():
        err.print(f"warning: map {escape_controls(row.map_id)}: {escape_controls(row.warning)}", markup=False)
    if decoded.empty:
        raise InputError(f"none of the {len(items)} maps could be decoded")
    report_failures(summary, out_dir / "decode", "maps")
    atlas_ids = sorted(set(decoded["atlas_id"]))
    if any("standin" in a for a in atlas_ids):
        err.print(f"note: maps were projected on a stand-in atlas ({', '.join(atlas_ids)}), not DiFuMo", markup=False)
    written = write_csvs(results, out_dir / "csv") if csv else []
    say(summary.line(), quiet=opts.quiet)  # once every file is written
    if csv:
        say(f"{sum(p.is_file() for p in written)} CSV files -> {out_dir / 'csv'}", quiet=opts.quiet)
    map_ids = sorted(set(decoded["map_id"]))
    if len(map_ids) <= SHOW_MAPS:
        from niclip_ray.model.bundle import load_bundle

        print_maps(decoded, map_ids, rank_by=rank_by, ontology=load_bundle(model).ontology)
    else:
        print_top_tasks(decoded)
    if fail_on_error:
        fail_if_any_failed(summary, "maps")


def default_model(quiet: bool) -> Path:
    """The default bundle (said on stderr unless ``quiet``), or an error saying how to get one."""
    from niclip_ray.errors import InputError
    from niclip_ray.home import default_bundle_dir, find_default_bundle

    path = find_default_bundle()
    if path is None:
        raise InputError(f"no --model given and no default bundle in {default_bundle_dir()}: run "
                         "`niclip-ray model fetch-reference` (online, once) or pass --model BUNDLE")
    if not quiet:
        err.print(f"model: the default bundle {path} (from `niclip-ray model fetch-reference`)", markup=False)
    return path


def decode_here(n_maps: int, ray_options, use_ray: bool, num_actors: int | None) -> bool:
    """Whether to decode in this process: a few maps, no Ray address, none running, and no Ray asked for."""
    ray = sys.modules.get("ray")  # not imported means not running; importing it costs seconds
    running = ray is not None and ray.is_initialized()
    return (n_maps <= IN_PROCESS_MAPS and not use_ray and num_actors is None
            and ray_options.resolved_address() is None and not running)
