"""``niclip-ray model``: import the paper's artifacts into a bundle, inspect it, attach a vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from niclip_ray.cli.console import ByteProgress, out, say
from niclip_ray.cli.context import options
from niclip_ray.cli.options import parse_logit_scale

app = typer.Typer(help="Model bundles: import the paper's files, inspect, attach a vocabulary.", no_args_is_help=True)


@app.command("import-reference")
def import_reference(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", help="The paper's CLIP weights (.pth, loaded weights-only).")],
    vocabulary: Annotated[Path, typer.Option("--vocabulary", help="Vocabulary .txt, one task name per line.")],
    vocabulary_emb: Annotated[Path, typer.Option("--vocabulary-emb", help="Vocabulary embeddings .npy (V, D).")],
    vocabulary_prior: Annotated[Path, typer.Option("--vocabulary-prior", help="Prior .npy (V,) or name,prior .csv.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle directory to write.")],
    cognitiveatlas: Annotated[
        str | None,
        typer.Option("--cognitiveatlas", help="Cognitive Atlas directory (reference snapshots) or 'builtin'."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Use the full Cognitive Atlas instead of the reduced set.")] = False,
    dim: Annotated[int | None, typer.Option("--dim", help="DiFuMo dimension (default: the image head width).")] = None,
    atlas_dir: Annotated[
        Path | None, typer.Option("--atlas-dir", help="nilearn data dir that must hold the real DiFuMo (checked).")
    ] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="Brain mask NIfTI (the resampling grid).")] = None,
    logit_scale: Annotated[
        float,
        typer.Option("--logit-scale", parser=parse_logit_scale,
                     help="Decoding scale stored in the bundle (the paper's jobs use 20)."),
    ] = 20.0,
    embedding_kind: Annotated[
        str | None, typer.Option("--embedding-kind", help="names, definitions or combined (default: from file name).")
    ] = None,
) -> None:
    """Turn the paper's loose files into a checksummed bundle.

    Example: niclip-ray model import-reference --model brainclip.pth --vocabulary vocab.txt
    --vocabulary-emb vocab-combined.npy --vocabulary-prior prior.npy --cognitiveatlas cognitive_atlas --out bundle
    """
    from niclip_ray.model.bundle import save_bundle
    from niclip_ray.model.reference import bundle_from_reference

    bundle = bundle_from_reference(
        model,
        vocabulary,
        vocabulary_emb,
        vocabulary_prior,
        cognitiveatlas=cognitiveatlas,
        reduced=not full,
        dim=dim,
        mask=mask,
        logit_scale=logit_scale,
        embedding_kind=embedding_kind,
        atlas_dir=atlas_dir,
    )
    path = save_bundle(out_dir, bundle.state_dict, bundle.config, bundle.vocabulary, bundle.ontology, mask_file=mask)
    say(
        f"bundle {path}: {len(bundle.vocabulary)} terms, {bundle.config['text_dim']}-d text, "
        f"atlas {bundle.config['atlas_id']}, ontology {'yes' if bundle.ontology is not None else 'no'}",
        quiet=options(ctx).quiet,
    )


@app.command("fetch-reference")
def fetch_reference(
    ctx: typer.Context,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Download directory (default: $NICLIP_HOME/downloads/osf-dsj56, "
                                   "NICLIP_HOME defaulting to ~/.cache/niclip-ray)."),
    ] = None,
    atlas_dir: Annotated[
        Path | None,
        typer.Option("--atlas-dir", help="nilearn data dir for the real DiFuMo (default: where decode looks, "
                                         "NILEARN_DATA or ~/nilearn_data)."),
    ] = None,
) -> None:
    """Download the paper's model from OSF (node dsj56), verify it, and import it as the default bundle.

    Fetches the CLIP weights (u3cxh), vocabulary (8m2fz), its embeddings (nza7b), prior
    (v82za), brain mask (jzvry) and the data/cognitive_atlas folder; each file is checked
    against the size and sha256 that OSF publishes (kept in SOURCES.json), partial downloads
    resume, verified files are not downloaded again. DiFuMo comes through nilearn. The
    bundle goes to $NICLIP_HOME/models/niclip-reference, which decode uses without --model.
    NICLIP_OSF_API and NICLIP_OSF_FILES replace OSF's addresses (a mirror).

    Example: niclip-ray model fetch-reference, then niclip-ray decode my_map.nii.gz --out work/decoded
    """
    from niclip_ray.model.fetch_reference import fetch_reference as fetch

    quiet = options(ctx).quiet
    with ByteProgress(quiet=quiet) as progress:
        path, written = fetch(out_dir, atlas_dir, on_bytes=progress, note=lambda line: say(line, quiet=quiet))
    state = "imported" if written else "already imported from these files"
    say(f"bundle {path}: {state}; `niclip-ray decode MAP` uses it when no --model is given", quiet=quiet)


@app.command("attach-vocabulary")
def attach_vocabulary(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    vocabulary: Annotated[Path, typer.Option("--vocabulary", help="vocabulary.parquet (from 'vocab build').")],
    ontology: Annotated[
        str | None, typer.Option("--ontology", help="Ontology directory or 'builtin' (task order = vocabulary order).")
    ] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="The full task set of a reference or export directory (as 'vocab build --full').")] = False,
) -> None:
    """Add or replace a bundle's vocabulary (and ontology snapshot); checksums are rewritten."""
    from niclip_ray.model.bundle import attach_vocabulary as attach
    from niclip_ray.model.vocabulary import read_vocabulary
    from niclip_ray.ontology import load_ontology

    updated = attach(bundle, read_vocabulary(vocabulary), load_ontology(ontology, reduced=not full) if ontology else None)
    say(f"bundle {updated.path}: vocabulary of {len(updated.vocabulary)} terms attached", quiet=options(ctx).quiet)


@app.command()
def info(bundle: Annotated[Path, typer.Argument(help="Bundle directory.")]) -> None:
    """Verify a bundle's checksums and describe it."""
    from niclip_ray.model.bundle import load_bundle
    from niclip_ray.model.vocabulary import available_embeddings

    loaded = load_bundle(bundle)
    config = loaded.config
    table = Table(title=f"Bundle {bundle}", show_header=False)
    table.add_row("checksums", f"{len(loaded.checksums)} files verified")
    table.add_row("text -> embedding", f"{config['text_dim']} -> {config['embed_dim']}")
    table.add_row("blocks (image / text)", f"{config['n_image_blocks']} / {config['n_text_blocks']}")
    learned = float(loaded.state_dict["logit_scale"].reshape(-1)[0])
    table.add_row("logit scale (decoding / learned)", f"{loaded.logit_scale:g} / {learned:g}")
    for key in ("text_model_id", "atlas_id", "atlas_dim", "mask", "dropout", "vocabulary_embedding"):
        if config.get(key) is not None:
            table.add_row(key.replace("_", " "), str(config[key]))
    if loaded.vocabulary is not None:
        vocab = loaded.vocabulary
        table.add_row("vocabulary", f"{len(vocab)} terms; embeddings: {', '.join(available_embeddings(vocab))}")
        top = vocab.nlargest(3, "prior")
        table.add_row("highest prior", "; ".join(f"{n} ({p:.3f})" for n, p in zip(top["name"], top["prior"])))
    else:
        table.add_row("vocabulary", "none (attach one before decoding)")
    table.add_row("ontology", loaded.ontology.summary() if loaded.ontology is not None else "none (tasks only)")
    for key, value in _flat_metrics(config.get("metrics") or {}):
        table.add_row(f"metric {key}", value)
    out.print(table)


def _flat_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar metrics as ``(dotted key, text)``; lists are summarised by their length."""
    rows = []
    for key, value in sorted(metrics.items()):
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat_metrics(value, prefix=f"{name}.")
        elif isinstance(value, list):
            rows.append((name, f"{len(value)} entries"))
        else:
            rows.append((name, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows
