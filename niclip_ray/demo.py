"""The main job: NiCLIP end to end on real shipped data, with baselines, evaluation and a report.

Stages (each skipped or resumed when its output already exists, so a rerun is cheap):

1. corpus      NiMARE's n-back/flanker studyset (real abstracts and peaks).
2. atlas       DiFuMo from ``atlas_dir``, else the deterministic offline stand-in.
3. features    MKDA + DiFuMo image features and language-model text features (Ray Data).
4. train       CLIP heads, k-fold cross-validation, Ray Train DDP; a model bundle.
5. vocabulary  The bundled ontology's tasks embedded by the same model; prior over the
               selected fold's training documents; attached to the bundle.
6. maps        MKDA maps of the selected fold's held-out studies, and nilearn's real motor map.
7. decode      Every map decoded by the bundle (Ray Data).
8. baselines   Neurosynth-style and GC-LDA decoders fitted on the same training studies.
9. evaluate    recall@k, hit@k, best rank and MRR against a permutation null, per backend;
               the n-back vs flanker known-answer check.
10. report     ``report/report.html``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_csv, write_json
from niclip_ray.corpus import load_corpus
from niclip_ray.corpus.ingest import read_source, write_corpus
from niclip_ray.corpus.schema import validate
from niclip_ray.corpus.subset import subset_studies
from niclip_ray.decoding.schema import CSV_FLOAT_FORMAT
from niclip_ray.evaluation.labels import LABEL_TASKS, report_maps, truth_table
from niclip_ray.features.study_maps import write_study_maps

SOURCE = "nimare:nback_vs_flanker"
MOTOR_MAP_ID = "motor-neurovault-10426"
MOTOR_MAP_URL = "https://neurovault.org/images/10426/"
#: A study's record in NeuroStore's API (JSON). The shipped studyset is an export of a
#: NeuroStore release, so its study ids are NeuroStore study ids; NeuroStore's web pages are
#: addressed by base-study ids, which the export does not carry.
NEUROSTORE_LINK = "NeuroStore record (JSON)"
NEUROSTORE_STUDY_URL = "https://neurostore.org/api/studies/{}"
#: The sentence the report opens with.
INTRO = (
    "This demo shows that every stage runs end to end on real, shipped data: {n_studies} n-back and flanker "
    "studies train a small CLIP model, which then decodes {n_maps} maps (the held-out studies' MKDA maps and "
    "nilearn's motor map). It does not show what NiCLIP can do: the corpus is about a hundredth of the paper's, "
    "the text model is a small sentence encoder, and {atlas}, so read the known-answer check (own task above "
    "the other label's), not the absolute ranks."
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; :meth:`quick` is a reduced mode for tests and CI."""

    out_dir: Path
    #: all-MiniLM-L6-v2 (a sentence encoder) rather than SmolLM2-135M (LLaMA class, like
    #: BrainGPT): with 230 training abstracts the CLIP heads cannot undo a small causal LM's
    #: mean-pooled anisotropy, and the demo's known-answer check fails with it (README).
    model: str = "all-minilm-l6-v2"
    section: str = "abstract"
    dim: int = 512
    atlas_dir: Path | None = None
    max_studies: int | None = None
    folds: int = 5
    epochs: int = 50
    batch_size: int = 64
    patience: int = 10
    num_workers: int = 1
    max_concurrent_folds: int = 2
    permutations: int = 1000
    seed: int = 0
    baselines: dict = field(
        default_factory=lambda: {"gclda": {"n_topics": 10, "n_iters": 200}, "neurosynth": {}}
    )

    @classmethod
    def quick(cls, out_dir: Path, **changes) -> DemoSettings:
        """A few-minute run: 60 studies, a 64-component atlas, 3 short folds, small nulls."""
        quick = cls(
            out_dir=Path(out_dir), dim=64, max_studies=60, folds=3, epochs=4, patience=2,
            batch_size=16, permutations=200,
            baselines={"gclda": {"n_topics": 4, "n_iters": 20}, "neurosynth": {}},
        )
        return replace(quick, **changes)


@dataclass
class DemoResult:
    """Where the demo put things, and its headline tables."""

    report: Path
    summary: pd.DataFrame
    known_answer: pd.DataFrame
    paths: dict[str, Path]


Say = Callable[[str], None]
#: ``progress(label, total, unit)``: a context manager with ``advance(n, note="")``, e.g.
#: :class:`niclip_ray.cli.console.ItemProgress`.
ProgressFactory = Callable[[str, int, str], object]


class _Silent:
    def advance(self, n: int = 1, note: str = "") -> None:
        pass


def stage_corpus(settings: DemoSettings, say: Say) -> Path:
    """Ingest the shipped studyset (a seeded subset with ``max_studies``)."""
    out = settings.out_dir / "corpus"
    if (out / "studies.parquet").is_file():
        say(f"corpus: reusing {out}")
        return out
    corpus = validate(read_source(SOURCE))
    if settings.max_studies:
        corpus = subset_studies(corpus, settings.max_studies, settings.seed)
    say(write_corpus(corpus, out, SOURCE).line())
    return out


def stage_atlas(settings: DemoSettings, say: Say) -> Path:
    """The DiFuMo data directory: the given one, else a cached stand-in build."""
    from niclip_ray.atlas.difumo import build_standin, default_standin_dir

    if settings.atlas_dir is not None:
        return Path(settings.atlas_dir)
    atlas_dir = default_standin_dir(settings.seed)
    build_standin(atlas_dir, settings.dim, seed=settings.seed)
    say(f"atlas: offline stand-in DiFuMo-{settings.dim} in {atlas_dir} (no real DiFuMo cache given)")
    return atlas_dir


def _map_titles(studies: pd.DataFrame, map_ids: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Titles of the shown maps and their links: PubMed (with a pmid) and NeuroStore for a study, NeuroVault."""
    titles = {MOTOR_MAP_ID: "Motor activation map (NeuroVault image 10426, nilearn's sample)"}
    links = {MOTOR_MAP_ID: {"NeuroVault": MOTOR_MAP_URL}}
    for map_id in map_ids:
        study = map_id.removeprefix("study-")
        if study in studies.index:
            titles[map_id] = str(studies.at[study, "title"] or study)
            pmid = studies.at[study, "pmid"]
            links[map_id] = {}
            if pd.notna(pmid) and str(pmid).strip():
                links[map_id]["PubMed"] = f"https://pubmed.ncbi.nlm.nih.gov/{str(pmid).strip()}/"
            links[map_id][NEUROSTORE_LINK] = NEUROSTORE_STUDY_URL.format(study)
    return titles, links


def map_count_notes(n_scored: int, n_studies: int, n_labelled: int, n_retrieval: int) -> tuple[str, str]:
    """Notes under the metric and known-answer tables: why they count different maps.

    Parameters
    ----------
    n_scored : int
        Maps in the metric table (held-out studies and the motor map).
    n_studies, n_labelled, n_retrieval : int
        Held-out study maps decoded; maps the known-answer check scores; studies the retrieval ranks.

    Returns
    -------
    (str, str)
        The metric table's note and the known-answer table's.
    """
    why = "the motor map has no n-back or flanker label and no abstract"
    metrics = (f"The metrics score {n_scored} maps ({n_studies} held-out studies' MKDA maps and the NeuroVault "
               f"motor map); the known-answer check scores {n_labelled} and the retrieval tables "
               f"{n_retrieval}, as {why}.")
    return metrics, f"{n_labelled} maps: the held-out studies labelled n-back or flanker ({why})."


def run_demo(settings: DemoSettings, say: Say = print, ray_options=None,
             progress: ProgressFactory | None = None) -> DemoResult:
    """Run every stage on an embedded (or given) Ray and write the report.

    Parameters
    ----------
    settings : DemoSettings
    say : callable
        Receives progress lines.
    ray_options : niclip_ray.runtime.RayOptions, optional
    progress : callable, optional
        Makes the progress shown per item (studies, epochs); default: none.

    Ray's worker and console logs go to ``OUT/logs/`` (see :func:`~niclip_ray.runtime.ray_session`).
    """
    progress = progress or (lambda label, total, unit: nullcontext(_Silent()))
    from nilearn.datasets import load_sample_motor_activation_image

    from niclip_ray.baselines.run import run_baselines
    from niclip_ray.decoding.decoder import Decoder
    from niclip_ray.decoding.map_files import collect_maps
    from niclip_ray.evaluation import DEFAULT_K, evaluate, load_predictions, write_results
    from niclip_ray.evaluation.known_answer import known_answer_test, own_term_first
    from niclip_ray.model.bundle import attach_vocabulary, load_bundle
    from niclip_ray.ontology import load_ontology
    from niclip_ray.pipelines import decode, features
    from niclip_ray.pipelines import index as index_stage
    from niclip_ray.pipelines import vocab as vocab_stage
    from niclip_ray.report import methods_text, read_curves, write_report
    from niclip_ray.retrieval import Index
    from niclip_ray.retrieval.evaluation import evaluate_retrieval
    from niclip_ray.runtime import ray_session
    from niclip_ray.runtime.session import train_worker_share
    from niclip_ray.training.cv import RUNS, train_cross_validated
    from niclip_ray.training.data import load_pairs
    from niclip_ray.training.loop import TrainConfig
    from niclip_ray.training.progress import follow_epochs
    from niclip_ray.training.ray_train import ScalingOptions

    out = Path(settings.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", asdict(settings), indent=2, default=str)
    paths = {"corpus": stage_corpus(settings, say), "atlas": stage_atlas(settings, say)}
    ontology = load_ontology("builtin")
    paths.update(features=out / "features", train=out / "train", maps=out / "maps", decode=out / "decode",
                 index=out / "index", baselines=out / "baselines", evaluation=out / "evaluation",
                 report=out / "report")
    n_studies = len(load_corpus(paths["corpus"]).studies)
    say(f"Ray logs: {out / 'logs'}")
    with ray_session(ray_options, log_dir=out / "logs"):
        with progress("features", 2 * n_studies, "studies x (image, text)") as done:
            image_summary, text_summary = features.run(
                paths["corpus"], paths["features"],
                image_options={"dim": settings.dim, "atlas_dir": paths["atlas"],
                               "allow_standin": settings.atlas_dir is None,
                               "on_items": lambda n, total: done.advance(n, " (images)")},
                text_options={"model": settings.model, "section": settings.section,
                              "on_items": lambda n, total: done.advance(n, " (text)")},
            )
        say(image_summary.line())
        say(text_summary.line())

        bundle_path = paths["train"] / "bundle"
        if not (bundle_path / "manifest.json").is_file():
            pairs = load_pairs(paths["features"] / "images", paths["features"] / "text", section=settings.section)
            config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                 patience=settings.patience, seed=settings.seed)
            share = train_worker_share(settings.num_workers, settings.max_concurrent_folds)
            scaling = ScalingOptions(num_workers=settings.num_workers, cpus_per_worker=share)
            with progress("train", settings.folds * settings.epochs, "epochs (at most)") as epochs, \
                    follow_epochs(paths["train"] / RUNS, epochs, on_resume=say):
                report = train_cross_validated(pairs, paths["train"], config, scaling, n_folds=settings.folds,
                                               max_concurrent_folds=settings.max_concurrent_folds,
                                               print_epochs=False)
            bundle_path = report.bundle
            say(f"train: {settings.folds} folds, selected fold {report.selected_fold} -> {bundle_path}")
        else:
            say(f"train: reusing {bundle_path}")
        bundle = load_bundle(bundle_path)
        split = bundle.config["training"]["split"]

        vocabulary_path = out / "vocabulary.parquet"
        if not vocabulary_path.is_file():
            build = vocab_stage.run(
                ontology.tasks, paths["features"] / "text", model=settings.model, train_ids=split["train"]
            )
            build.provenance["ontology"] = "builtin"
            build.write(vocabulary_path)
        if bundle.vocabulary is None:
            from niclip_ray.model.vocabulary import read_vocabulary

            bundle = attach_vocabulary(bundle_path, read_vocabulary(vocabulary_path), ontology)
        say(f"vocabulary: {len(bundle.vocabulary)} tasks -> {vocabulary_path}")

        studies = load_corpus(paths["corpus"]).studies.set_index("study_id")
        maps = write_study_maps(paths["corpus"], split["test"], paths["maps"] / "heldout")
        motor = paths["maps"] / f"{MOTOR_MAP_ID}.nii.gz"
        if not motor.is_file():
            shutil.copyfile(load_sample_motor_activation_image(), motor)  # nilearn returns the file path
        maps[MOTOR_MAP_ID] = motor
        map_labels = {m: studies.at[m.removeprefix("study-"), "label"] for m in maps if m.startswith("study-")}
        map_labels[MOTOR_MAP_ID] = "motor"

        decoding = {"topk": None, "atlas_dir": paths["atlas"]}  # every term ranked, for the evaluator
        summary = decode.run(collect_maps(list(maps.values())), bundle_path, paths["decode"], **decoding)
        say(summary.line())
        say(index_stage.run(paths["corpus"], paths["features"], bundle_path, paths["index"]).line())
    niclip = load_predictions(paths["decode"]).assign(backend="niclip")

    baseline_file = paths["baselines"] / "decode" / "part-00000.parquet"
    if baseline_file.is_file():
        baselines = load_predictions(baseline_file)
        say(f"baselines: reusing {baseline_file}")
    else:
        baselines, baseline_file = run_baselines(
            paths["corpus"], split["train"], bundle.vocabulary["name"].tolist(), maps, paths["baselines"],
            params=settings.baselines, term_ids=bundle.vocabulary["term_id"].tolist(),
        )
        say(f"baselines: Neurosynth and GC-LDA fitted on {len(split['train'])} studies -> {baseline_file}")

    truth = truth_table(map_labels, ontology)
    predictions = pd.concat([niclip, baselines], ignore_index=True)
    result = evaluate(predictions, truth, k=DEFAULT_K, n_permutations=settings.permutations, seed=settings.seed,
                      dataset="nback-flanker")
    write_results(result, paths["evaluation"], dataset="nback-flanker")
    study_labels = {m: label for m, label in map_labels.items() if label in LABEL_TASKS}
    known = pd.concat(
        [
            known_answer_test(own_term_first(frame, study_labels, LABEL_TASKS), settings.permutations, settings.seed)
            .assign(backend=backend)
            for backend, frame in predictions.groupby("backend")
        ],
        ignore_index=True,
    )
    write_csv(paths["evaluation"] / "known_answer.csv", known, float_format=CSV_FLOAT_FORMAT)
    retrieval = evaluate_retrieval(Index(paths["index"], bundle_path, atlas_dir=paths["atlas"], seed=settings.seed),
                                   paths["corpus"], paths["features"] / "text",
                                   n_permutations=settings.permutations, seed=settings.seed)
    retrieval.write(paths["evaluation"])

    curves = pd.concat(
        [read_curves(p) for p in sorted((paths["train"] / "runs").glob("*/metrics.jsonl"))], ignore_index=True
    )
    facts = Decoder(bundle_path, **decoding).describe()
    methods = methods_text(
        facts,
        corpus=f"NiMARE's n-back/flanker studyset ({len(studies)} studies with abstracts)",
        n_maps=len(maps), k=DEFAULT_K, n_permutations=settings.permutations, seed=settings.seed,
        baselines=settings.baselines,
    )
    shown, reason = report_maps(map_labels, per_label=3)
    titles, links = _map_titles(studies, shown)
    known_heading = "Known-answer check: own task ranked above the other label's task"
    metrics_note, known_note = map_count_notes(
        int(result.summary["n_images"].max()), sum(m.startswith("study-") for m in maps),
        int(known.loc[known["kind"] == "all", "n_maps"].max()), int(retrieval.image_to_text["n"]))
    atlas = ("the atlas is DiFuMo" if not facts["atlas_standin"]
             else f"the maps are projected on {facts['atlas_id']}, an offline stand-in for DiFuMo")
    report = write_report(paths["report"], maps={m: maps[m] for m in shown}, predictions=predictions, metrics=result.summary,
                          curves=curves, methods=methods, truth=truth,
                          tables={known_heading: known, **retrieval_tables(retrieval)},
                          title="NiCLIP demo: n-back vs flanker studies and a motor map", provenance=facts,
                          intro=INTRO.format(n_studies=len(studies), n_maps=len(maps), atlas=atlas),
                          map_titles=titles, map_links=links, hubness_k=DEFAULT_K["task"],
                          metrics_note=metrics_note, table_notes={known_heading: known_note}, maps_reason=reason)
    return DemoResult(report, result.summary, known, paths)


def retrieval_tables(retrieval, text: str = "abstract") -> dict[str, pd.DataFrame]:
    """The report's two retrieval tables: held-out map -> own ``text``, and text -> map against baselines."""
    found = retrieval.image_to_text
    measures = [k for k in found if k.startswith("recall@") and "_" not in k] + ["median_rank"]
    image_to_text = pd.DataFrame({
        "measure": measures,
        "observed": [found[k] for k in measures],
        "null": [found[f"{k}_null"] for k in measures],
        "p": [found[f"{k}_p"] for k in measures],
    })
    text_to_map = retrieval.paired_tests[["baseline", "mean_r_ridge", "mean_r_baseline", "p"]].rename(
        columns={"mean_r_ridge": "mean r (ridge on text latents)", "mean_r_baseline": "mean r (baseline)"})
    return {
        f"Retrieval: held-out map -> its own {text} among {int(found['n'])} held-out studies": image_to_text,
        f"Retrieval: text -> map, Pearson r with the held-out MKDA map (ridge alpha {retrieval.ridge_alpha:g})":
            text_to_map,
    }
