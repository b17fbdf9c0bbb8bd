"""``niclip-ray predict``: the original NiCLIP ``predict.py``, same flags, files and numbers.

The loose files (model ``.pth``, vocabulary ``.txt``, embeddings and prior ``.npy``,
Cognitive Atlas directory, mask) become an in-memory bundle through
:func:`niclip_ray.model.reference.bundle_from_reference`, the code behind
``model import-reference``. One image is decoded in this process by the decode stage's own
process function; several images (or a directory) go through the Ray decode pipeline.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated

import typer

from niclip_ray.cli.console import err, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import RankByOpt, parse_logit_scale


def predict(
    ctx: typer.Context,
    image: Annotated[
        list[Path],
        typer.Option(
            "--image", metavar="PATH", help="Brain map (NIfTI). Repeat it, or give a directory, to decode several on Ray."
        ),
    ],
    model: Annotated[Path, typer.Option("--model", help="The paper's CLIP weights (.pth, loaded weights-only).")],
    vocabulary: Annotated[Path, typer.Option("--vocabulary", help="Vocabulary .txt, one task name per line.")],
    vocabulary_emb: Annotated[
        Path, typer.Option("--vocabulary_emb", "--vocabulary-emb", help="Vocabulary embeddings .npy (V, D).")
    ],
    vocabulary_prior: Annotated[
        Path, typer.Option("--vocabulary_prior", "--vocabulary-prior", help="Prior .npy (V,) or name,prior .csv.")
    ],
    mask: Annotated[Path, typer.Option("--mask", help="Brain mask NIfTI; images are resampled to its grid.")],
    cognitiveatlas: Annotated[
        Path | None,
        typer.Option("--cognitiveatlas", help="Cognitive Atlas directory (task/concept snapshots, reduced_tasks.csv)."),
    ] = None,
    hierarchical: Annotated[
        str,
        typer.Option(
            "--hierarchical",
            help="Also predict concepts and domains (the reference's processes; needs --cognitiveatlas). True/False, 1/0 or yes/no, read "
            "as written: the original took any non-empty value, \"False\" included, as true.",
            metavar="BOOL",
        ),
    ] = "False",
    reduced: Annotated[
        str,
        typer.Option(
            "--reduced",
            help="Reduced Cognitive Atlas task set (reduced_tasks.csv) rather than the full one. Boolean as "
            "--hierarchical (the original read \"False\" as true here too).",
            metavar="BOOL",
        ),
    ] = "True",
    topk: Annotated[int, typer.Option("--topk", "--top-k", min=1, help="Tasks and concepts written per image.")] = 10,
    rank_by: RankByOpt = "posterior",
    logit_scale: Annotated[
        float,
        typer.Option(
            "--logit_scale", "--logit-scale",
            parser=parse_logit_scale,
            help="Similarity scale s. 10.0 is the original CLI's default; the paper's jobs and app use 20.",
        ),
    ] = 10.0,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="cpu, cuda, cuda:N or mps, checked against this machine. Decoding itself runs on the CPU "
            "(the model is tiny; the atlas projection dominates).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Output directory (default: each image's own directory).")
    ] = None,
    atlas_dir: Annotated[
        Path | None,
        typer.Option(
            "--atlas-dir",
            help="nilearn data dir holding difumo_atlases/ (default: $BRAINDEC_DATA/nilearn if it has one, "
            "else nilearn's usual locations).",
        ),
    ] = None,
    allow_atlas_mismatch: Annotated[
        bool, typer.Option("--allow-atlas-mismatch", help="Decode even if only a stand-in DiFuMo is found.")
    ] = False,
) -> None:
    """Predict tasks (and concepts and domains) from brain images with the paper's files.

    Writes {image}_predictions.csv (pred, prob, similarity, likelihood, prior_prob, joint_prob,
    bayes_factor) or, with --hierarchical True, {image}_task_predictions.csv,
    {image}_concept_predictions.csv and {image}_process_predictions.csv (pred, prob), where
    {image} is the file name up to its first dot, and prints the top-k table. --rank-by
    orders the tasks (posterior, the original's, by default).

    Fixes over the original: concept_to_process.json domain overrides are applied; the
    vocabulary order is checked against the Cognitive Atlas; a missing GPU is a clear error.

    Example: niclip-ray predict --image map.nii.gz --model model.pth --vocabulary vocab.txt
    --vocabulary_emb vocab.npy --vocabulary_prior prior.npy --mask mask.nii.gz --output out
    """
    from niclip_ray.cli.console import SHOW_MAPS, print_maps
    from niclip_ray.decoding.map_files import collect_maps
    from niclip_ray.decoding.predict import braindec_atlas_dir, check_device, output_targets, write_predictions
    from niclip_ray.errors import InputError
    from niclip_ray.model.reference import bundle_from_reference

    check_device(device)
    hierarchical, reduced = _flag("--hierarchical", hierarchical), _flag("--reduced", reduced)
    if hierarchical and cognitiveatlas is None:
        raise InputError("--hierarchical True needs --cognitiveatlas (the Cognitive Atlas directory)")
    missing = [p for p in image if not p.exists()]
    if missing:
        raise InputError(f"--image {missing[0]} does not exist")
    bundle = bundle_from_reference(
        model,
        vocabulary,
        vocabulary_emb,
        vocabulary_prior,
        cognitiveatlas=cognitiveatlas if hierarchical else None,
        reduced=reduced,
        mask=mask,
        logit_scale=logit_scale,
    )
    items = collect_maps(image)
    targets = output_targets(items, output)
    atlas_dir = atlas_dir if atlas_dir is not None else braindec_atlas_dir()
    decode_args = {"topk": topk, "logit_scale": logit_scale, "atlas_dir": str(atlas_dir) if atlas_dir else None,
                   "allow_atlas_mismatch": allow_atlas_mismatch, "hierarchical": hierarchical, "rank_by": rank_by}
    if len(image) == 1 and image[0].is_file() and len(items) == 1:
        from niclip_ray.pipelines.decode import make_process

        results = make_process(bundle, **decode_args)(items).to_pandas()
    else:
        results = _decode_on_ray(ctx, bundle, items, Path(output) if output else targets[items[0]["map_id"]][0],
                                 decode_args)
    failed = results[results["error"].notna()]
    decoded = results[results["error"].isna()]
    if decoded.empty and len(items) == 1:
        raise InputError(failed["error"].iloc[0])
    for row in failed.itertuples():
        err.print(f"warning: {row.error}", markup=False)
    if decoded.empty:
        raise InputError(f"none of the {len(items)} maps could be decoded")
    written = []
    for map_id, rows in decoded.groupby("map_id", sort=True):
        written += write_predictions(rows, *targets[map_id], hierarchical=hierarchical)
    say(f"{len(written)} CSV files -> {', '.join(sorted({str(p.parent) for p in written}))}",
        quiet=options(ctx).quiet)
    print_maps(decoded, sorted(set(decoded["map_id"]))[:SHOW_MAPS], n=topk, rank_by=rank_by, ontology=bundle.ontology)


def _flag(name: str, value: str) -> bool:
    """A boolean flag's value, or an error naming the flag."""
    from niclip_ray.decoding.predict import parse_bool
    from niclip_ray.errors import InputError

    try:
        return parse_bool(value)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from exc


def _decode_on_ray(ctx: typer.Context, bundle, items: list[dict], work_root: Path, decode_args: dict):
    """Decode ``items`` with the Ray decode pipeline; returns the tidy results as a DataFrame.

    The bundle is saved, for the actors, in a hidden directory under ``work_root`` (the
    output directory, which the workers write to anyway) and removed afterwards.
    """
    from niclip_ray.cli.console import report_stage
    from niclip_ray.model.bundle import save_bundle
    from niclip_ray.pipelines import decode as stage
    from niclip_ray.runtime import ray_session
    from niclip_ray.tables import read_parts

    work = work_root / f".niclip-predict-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True)
    try:
        path = save_bundle(work / "bundle", bundle.state_dict, bundle.config, bundle.vocabulary, bundle.ontology,
                           mask_file=bundle.mask_path)
        with ray_session(options(ctx).ray_options()):
            summary = stage.run(items, path, work / "decode", **decode_args)
        report_stage(summary, quiet=options(ctx).quiet)
        return read_parts(work / "decode").to_pandas()
    finally:
        shutil.rmtree(work, ignore_errors=True)
