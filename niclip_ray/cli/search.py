"""``niclip-ray search``: brain map -> similar studies, and text -> studies and a brain map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from niclip_ray.atomic import write_csv
from niclip_ray.cli.console import err, out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import AtlasDirOpt
from niclip_ray.controls import escape_controls

app = typer.Typer(help="Search a study index with brain maps or text.", no_args_is_help=True)

IndexOpt = Annotated[Path, typer.Option("--index", help="Index directory from 'index build'.")]
BundleOpt = Annotated[Path, typer.Option("--model", help="Model bundle directory the index was built with.")]
SearchTopKOpt = Annotated[int, typer.Option("--top-k", "--topk", min=1, help="Studies returned per query.")]
AgainstOpt = Annotated[str, typer.Option("--against", help="Rank by the studies' text or image latents.")]
#: Shown per query on the console; every row is written.
SHOW_ROWS = 10


def print_matches(query: str, rows) -> None:
    """Print a query's best studies: rank, ids, title (cut to fit; the files have it whole), trained on, score."""
    table = Table(title=Text(f"{escape_controls(query)}: nearest studies"))
    for column in ("rank", "study_id", "pmid", "title", "trained on", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in rows.sort_values("rank").head(SHOW_ROWS).itertuples():
        table.add_row(str(row.rank), Text(str(row.study_id)), str(row.pmid), Text(str(row.title)[:80]),
                      "yes" if row.in_training else "", f"{row.score:.3f}")
    out.print(table)


def provenance_notes(model: Path, index: Path, text_to_map: bool) -> None:
    """Print what ``decode`` says about a stand-in atlas, and what the index's evaluation says about its maps."""
    import json

    from niclip_ray.cli.preflight import bundle_config
    from niclip_ray.retrieval.evaluation import INDEX_EVALUATION, map_caveat

    atlas_id = str(bundle_config(model).get("atlas_id") or "")
    if "standin" in atlas_id:
        err.print(f"note: the bundle was trained on a stand-in atlas ({atlas_id}), not DiFuMo: the matches show that "
                  "search runs, not what a map means", markup=False)
    record_path = Path(index) / INDEX_EVALUATION
    record = json.loads(record_path.read_text()) if text_to_map and record_path.is_file() else None
    caveat = map_caveat(record)
    if caveat:
        err.print(f"warning: {caveat}", markup=False)


@app.command()
def image(
    ctx: typer.Context,
    maps: Annotated[list[Path], typer.Argument(help="NIfTI files or directories of maps.")],
    index: IndexOpt,
    model: BundleOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory (matches.csv, search/ parts).")] = Path(
        "search-results"
    ),
    top_k: SearchTopKOpt = 20,
    against: AgainstOpt = "text",
    atlas_dir: AtlasDirOpt = None,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Maps per output part.")] = 64,
    num_actors: Annotated[int | None, typer.Option("--num-actors", min=1, help="Actors (default: per CPU).")] = None,
) -> None:
    """Rank the indexed studies by cosine between each map's latent and theirs.

    One map is searched here; several maps or a directory run on Ray (resumable). Writes
    OUT/matches.csv (query, rank, study_id, pmid, doi, title, in_training, score) and prints the best ones.

    Example: niclip-ray search image motor.nii.gz --index work/index --model work/train/bundle
    """
    from niclip_ray.decoding.map_files import collect_maps, load_item
    from niclip_ray.errors import InputError
    from niclip_ray.retrieval.index import RESULT_COLUMNS, Index

    opts = options(ctx)
    items = collect_maps(maps)
    if len(items) == 1:
        results = Index(index, model, atlas_dir=atlas_dir).search_image(
            load_item(items[0]), top_k, against, name=items[0]["map_id"])
        results["error"] = None
    else:
        from niclip_ray.cli.console import report_stage
        from niclip_ray.pipelines import index as stage
        from niclip_ray.runtime import ray_session
        from niclip_ray.tables import read_parts

        with ray_session(opts.ray_options()):
            summary = stage.search_maps(items, index, model, out_dir / "search", top_k=top_k, against=against,
                                        atlas_dir=atlas_dir, shard_size=shard_size, num_actors=num_actors)
        report_stage(summary, quiet=opts.quiet)
        results = read_parts(out_dir / "search").to_pandas()
    failed = results[results["error"].notna()]
    for row in failed.itertuples():
        err.print(f"warning: {row.error}", markup=False)
    found = results[results["error"].isna()]
    if found.empty:
        raise InputError(f"none of the {len(items)} maps could be searched")
    found = found.assign(rank=found["rank"].astype(int))[RESULT_COLUMNS]
    write_csv(out_dir / "matches.csv", found)
    for query in sorted(set(found["query"]))[:3]:
        print_matches(query, found[found["query"] == query])
    provenance_notes(model, index, text_to_map=False)
    say(f"{len(found)} matches of {found['query'].nunique()} maps -> {out_dir / 'matches.csv'}", quiet=opts.quiet)


@app.command()
def text(
    ctx: typer.Context,
    query: Annotated[str | None, typer.Argument(help="The text to search with (or --query-file).")] = None,
    index: IndexOpt = ...,
    model: BundleOpt = ...,
    out_path: Annotated[Path, typer.Option("--out", help="Predicted map (.nii.gz); a .png and a .csv go beside it.")] = ...,
    query_file: Annotated[Path | None, typer.Option("--query-file", help="Read the query from a UTF-8 file.")] = None,
    top_k: SearchTopKOpt = 20,
    against: AgainstOpt = "text",
    atlas_dir: AtlasDirOpt = None,
) -> None:
    """Embed a query with the bundle's text model: nearest studies and a predicted brain map.

    The map is a ridge regression from text latent to atlas coefficients, fitted on the
    bundle's training studies, summed over the atlas components on the MNI 2 mm grid.
    Writes OUT (NIfTI), OUT with .png (picture) and .csv (the studies, as for `search image`).

    Example: niclip-ray search text "working memory" --index work/index --model work/train/bundle
    --out wm.nii.gz
    """
    from niclip_ray.errors import ParameterError
    from niclip_ray.retrieval.brain_maps import save_map
    from niclip_ray.retrieval.index import RESULT_COLUMNS, Index
    from niclip_ray.retrieval.queries import query_text, read_query_file

    opts = options(ctx)
    if (query is None) == (query_file is None):
        raise ParameterError("query", "must be given either as an argument or with --query-file, not both")
    query = query_text(query) if query_file is None else read_query_file(query_file)
    if not out_path.name.endswith((".nii", ".nii.gz")):
        raise ParameterError("out_dir", f"must name a .nii or .nii.gz file, got {out_path}")
    match = Index(index, model, atlas_dir=atlas_dir).search_text(query, top_k, against)
    nifti, png = save_map(match.image, out_path, query[:60])
    table_path = png.with_suffix(".csv")
    write_csv(table_path, match.studies[RESULT_COLUMNS])
    print_matches(query[:60], match.studies)
    provenance_notes(model, index, text_to_map=True)
    say(f"map -> {nifti} (+ {png.name}); studies -> {table_path}", quiet=opts.quiet)
