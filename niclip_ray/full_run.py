"""The real-scale run: NiCLIP trained on Neurosynth + NeuroQuery, judged on maps it never saw.

Stages (each reused when its output exists, so a killed run resumes):

1. corpus      Neurosynth v7 + NeuroQuery (one study per PMID) through NiMARE's fetchers,
               minus every study that is one of NiMARE's 320 n-back/flanker studies (matched
               by PMID, DOI or normalised title; ``corpus/exclusions.csv``).
2. atlas       DiFuMo from ``atlas_dir``, else the deterministic offline stand-in.
3. features    MKDA + DiFuMo image features; text features of each section (the title, and
               the title followed by NeuroQuery's keyword document).
4. train       Per section: CLIP heads with k-fold cross-validation on Ray Train.
5. vocabulary  The full Cognitive Atlas and its reduced task set, embedded by the same text
               model; the prior over the selected fold's training documents; one bundle per
               section and vocabulary.
6. decode      The held-out studies' MKDA maps and nilearn's motor map, by every bundle.
7. baselines   Neurosynth-style and GC-LDA decoders fitted on the same training studies.
8. evaluate    Per label (n-back, flanker, motor): the best true task's rank, hit@1/5/10, MRR,
               the true concepts' rank, the two-way known answer, each against the
               permutation null; hubness; map -> own text retrieval on the held-out fold.
9. report      ``report/report.html``, the held-out table first.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from niclip_ray.atomic import write_csv, write_json
from niclip_ray.corpus import load_corpus
from niclip_ray.decoding.schema import CSV_FLOAT_FORMAT

SOURCE = "neurosynth+neuroquery"
HELDOUT_SOURCE = "nimare:nback_vs_flanker"
#: Text sections trained on: the title alone, and the title with the keyword document.
SECTIONS = ("title", "title+keywords")
VOCABULARIES = ("full", "reduced")
MOTOR_MAP_ID = "motor-neurovault-10426"
#: The concept an n-back map should bring to the top (the issue's goal: top 5).
NBACK_CONCEPT = ("working memory", 5)
Say = Callable[[str], None]
#: What a section's text is called in the retrieval tables.
TEXT_NAMES = {"title": "title", "title+keywords": "title and keywords"}
HEADLINE_NOTE = (
    "Per label, the best-ranked true task of each map: its median rank, hit@1/5/10 and MRR, each with the mean "
    "of the permutation null (prediction lists shuffled across all held-out maps) and its p; two-way: the best "
    "n-back task ranked above the Eriksen flanker task for n-back maps and the reverse for flanker maps, against "
    "the label permutation. The motor row is one map."
)


@dataclass(frozen=True)
class FullSettings:
    """What the real-scale run does; :meth:`subsample` is the tests' reduced run."""

    out_dir: Path
    data_dir: Path
    model: str = "all-minilm-l6-v2"
    #: Texts per forward pass: titles and keyword sentences are short, so wide batches pay
    #: (64 embeds titles 8x faster than the text stage's default of 8 on 2 CPUs).
    text_batch_size: int = 64
    dim: int = 512
    atlas_dir: Path | None = None
    sections: tuple[str, ...] = SECTIONS
    max_studies: int | None = None
    folds: int = 5
    epochs: int = 50
    batch_size: int = 128
    patience: int = 10
    num_workers: int = 1
    max_concurrent_folds: int = 2
    permutations: int = 1000
    seed: int = 0
    baselines: dict = field(default_factory=lambda: {
        "neurosynth": {"section": "all"},
        # the reference's 25 topics; half its 1,000 iterations, on a seeded 2,000-study subsample
        # (NiMARE's sampler is serial Python: about 0.5 s an iteration at that size on 2 CPUs)
        "gclda": {"section": "all", "n_iters": 500, "max_studies": 2000},
    })

    @classmethod
    def subsample(cls, out_dir: Path, data_dir: Path, **changes) -> FullSettings:
        """About 2,000 studies, DiFuMo-64, 3 short folds: the whole path in minutes."""
        small = cls(out_dir=Path(out_dir), data_dir=Path(data_dir), dim=64, max_studies=2000, folds=3, epochs=5,
                    patience=2, permutations=200,
                    baselines={"neurosynth": {"section": "all"},
                               "gclda": {"section": "all", "n_topics": 10, "n_iters": 20, "max_studies": 300}})
        return replace(small, **changes)


def data_paths(data_dir: Path) -> tuple[Path, Path | None]:
    """NiMARE's data directory and the Cognitive Atlas export under ``data_dir``.

    ``data_dir`` is either a seeded folder holding ``nimare/`` and ``cognitive_atlas/`` (the
    layout of the offline copy) or NiMARE's data directory itself; the Cognitive Atlas is
    then read from the live API.
    """
    data_dir = Path(data_dir).expanduser()
    nimare_dir = data_dir / "nimare" if (data_dir / "nimare").is_dir() else data_dir
    cogat = data_dir / "cognitive_atlas"
    return nimare_dir, cogat if cogat.is_dir() else None


@contextmanager
def timed(times: dict, name: str, say: Say):
    """Add the wall time of a stage to ``times`` (a resumed run adds to the earlier runs') and say it."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    times[name] = round(times.get(name, 0.0) + elapsed, 1)
    say(f"{name}: {elapsed:.0f} s")


def stage_corpora(settings: FullSettings, say: Say) -> tuple[Path, Path]:
    """The training corpus (held-out studies removed) and the held-out corpus."""
    from niclip_ray.corpus.ingest import ingest, write_corpus
    from niclip_ray.corpus.subset import drop_studies, subset_studies
    from niclip_ray.evaluation.heldout import heldout_matches

    out = settings.out_dir
    train_dir, heldout_dir = out / "corpus", out / "heldout" / "corpus"
    if not (heldout_dir / "studies.parquet").is_file():
        say(ingest(HELDOUT_SOURCE, heldout_dir)[1].line())
    if (train_dir / "studies.parquet").is_file():
        say(f"corpus: reusing {train_dir}")
        return train_dir, heldout_dir
    nimare_dir, _ = data_paths(settings.data_dir)
    corpus, summary = ingest(SOURCE, out / "corpus-all", data_dir=nimare_dir)
    say(summary.line())
    matches = heldout_matches(corpus.studies, load_corpus(heldout_dir).studies)
    train_dir.mkdir(parents=True, exist_ok=True)
    write_csv(train_dir / "exclusions.csv", matches)
    corpus = drop_studies(corpus, matches["study_id"])
    say(f"corpus: {matches['study_id'].nunique()} studies are held-out studies "
        f"({', '.join(f'{n} by {k}' for k, n in matches['matched_by'].value_counts().items())}); removed")
    if settings.max_studies:
        corpus = subset_studies(corpus, settings.max_studies, settings.seed)
    say(write_corpus(corpus, train_dir, SOURCE).line())
    return train_dir, heldout_dir


def load_ontologies(settings: FullSettings) -> dict:
    """The full Cognitive Atlas and its reduced task set."""
    from niclip_ray.ontology import load_ontology

    _, cogat = data_paths(settings.data_dir)
    source = cogat if cogat is not None else "online"
    return {name: load_ontology(source, reduced=name == "reduced") for name in VOCABULARIES}


def stage_features(settings: FullSettings, corpus_dir: Path, atlas_dir: Path, say: Say, progress) -> dict[str, Path]:
    """Image features once, text features per section; one features directory per section."""
    from niclip_ray.pipelines import images, text

    out = settings.out_dir / "features"
    n = len(load_corpus(corpus_dir).studies)
    with progress("images", n, "studies") as done:
        summary = images.run(corpus_dir, out / "images", dim=settings.dim, atlas_dir=atlas_dir,
                             allow_standin=settings.atlas_dir is None,
                             on_items=lambda k, total: done.advance(k))
    say(summary.line())
    dirs = {}
    for section in settings.sections:
        section_dir = out / section
        section_dir.mkdir(parents=True, exist_ok=True)
        link = section_dir / "images"
        if not link.exists():
            link.symlink_to(Path("..") / "images")
        with progress(f"text ({section})", n, "studies") as done:
            summary = text.run(corpus_dir, section_dir / "text", model=settings.model, section=section,
                               batch_size=settings.text_batch_size,
                               on_items=lambda k, total: done.advance(k))
        say(summary.line())
        dirs[section] = section_dir
    return dirs


def stage_train(settings: FullSettings, section: str, features: Path, say: Say, progress) -> Path:
    """Cross-validated CLIP training on one section; returns the bundle."""
    from niclip_ray.runtime.session import train_worker_share
    from niclip_ray.training.cv import RUNS, train_cross_validated
    from niclip_ray.training.data import load_pairs
    from niclip_ray.training.loop import TrainConfig
    from niclip_ray.training.progress import follow_epochs
    from niclip_ray.training.ray_train import ScalingOptions

    train_dir = settings.out_dir / "train" / section
    bundle = train_dir / "bundle"
    if (bundle / "manifest.json").is_file():
        say(f"train ({section}): reusing {bundle}")
        return bundle
    pairs = load_pairs(features / "images", features / "text", section=section)
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, patience=settings.patience,
                         seed=settings.seed)
    share = train_worker_share(settings.num_workers, settings.max_concurrent_folds)
    scaling = ScalingOptions(num_workers=settings.num_workers, cpus_per_worker=share)
    with progress(f"train ({section})", settings.folds * settings.epochs, "epochs (at most)") as epochs, \
            follow_epochs(train_dir / RUNS, epochs, on_resume=say):
        report = train_cross_validated(pairs, train_dir, config, scaling, n_folds=settings.folds,
                                       max_concurrent_folds=settings.max_concurrent_folds, print_epochs=False)
    say(f"train ({section}): {len(pairs)} pairs, {settings.folds} folds, selected fold {report.selected_fold}")
    return report.bundle


def stage_models(settings: FullSettings, section: str, bundle: Path, features: Path, ontologies: dict,
                 say: Say, task_texts: dict | None = None) -> dict[str, Path]:
    """One bundle per vocabulary: the trained weights with that vocabulary and its prior.

    ``task_texts`` caches the task texts' embeddings across vocabularies and sections (one
    text model): each is embedded once.
    """
    from niclip_ray.model.bundle import attach_vocabulary, load_bundle
    from niclip_ray.model.vocabulary import read_vocabulary
    from niclip_ray.pipelines import vocab as vocab_stage

    split = load_bundle(bundle).config["training"]["split"]
    models = {}
    for name, ontology in ontologies.items():
        target = settings.out_dir / "models" / f"{section}-{name}"
        if not (target / "manifest.json").is_file() or load_bundle(target).vocabulary is None:
            vocabulary_path = settings.out_dir / "vocabulary" / f"{section}-{name}.parquet"
            if not vocabulary_path.is_file():
                build = vocab_stage.run(ontology.tasks, features / "text", model=settings.model,
                                        batch_size=settings.text_batch_size, train_ids=split["train"],
                                        cache=task_texts)
                build.provenance["ontology"] = ontology.meta.get("source", "")
                build.provenance["vocabulary"] = name
                vocabulary_path.parent.mkdir(parents=True, exist_ok=True)
                build.write(vocabulary_path)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(bundle, target)
            attach_vocabulary(target, read_vocabulary(vocabulary_path), ontology)
        say(f"model ({section}, {name} vocabulary): {len(ontology.tasks)} tasks -> {target}")
        models[name] = target
    return models


def stage_maps(settings: FullSettings, heldout_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Every held-out study's MKDA map and the motor map, with their labels."""
    from nilearn.datasets import load_sample_motor_activation_image

    from niclip_ray.features.study_maps import write_study_maps

    studies = load_corpus(heldout_dir).studies.set_index("study_id")
    maps = write_study_maps(heldout_dir, studies.index.tolist(), settings.out_dir / "maps" / "heldout")
    motor = settings.out_dir / "maps" / f"{MOTOR_MAP_ID}.nii.gz"
    if not motor.is_file():
        shutil.copyfile(load_sample_motor_activation_image(), motor)
    maps[MOTOR_MAP_ID] = motor
    labels = {m: studies.at[m.removeprefix("study-"), "label"] for m in maps if m.startswith("study-")}
    labels[MOTOR_MAP_ID] = "motor"
    return maps, labels


def rerank(predictions: pd.DataFrame, terms: set[str], level: str = "task") -> pd.DataFrame:
    """Keep one level's rows whose term is in ``terms`` and rank them again per backend and map."""
    rows = predictions[(predictions["level"] == level) & predictions["term"].isin(terms)].copy()
    rows["rank"] = rows.groupby(["backend", "map_id"])["rank"].rank(method="first").astype("int64")
    return rows


def evaluate_heldout(predictions: pd.DataFrame, ontology, map_labels: dict[str, str], settings: FullSettings,
                     ) -> dict[str, pd.DataFrame]:
    """Every held-out table of one vocabulary, all backends."""
    from niclip_ray.evaluation.heldout import (
        hubness,
        label_table,
        label_tasks,
        label_terms,
        term_in_top,
    )
    from niclip_ray.evaluation.known_answer import known_answer_test, own_term_first
    from niclip_ray.evaluation.mappings import truth_from_labels

    tasks = label_tasks(ontology)
    truth = truth_from_labels(map_labels, label_terms(ontology, tasks))
    studies = {m: label for m, label in map_labels.items() if label in ("n-back", "flanker")}
    per_label, known, concept, hubs = [], [], [], []
    for backend, rows in predictions.groupby("backend"):
        levels = [level for level in ("task", "concept") if level in set(rows["level"])]
        per_label.append(label_table(rows, truth, map_labels, levels=levels, n_permutations=settings.permutations,
                                     seed=settings.seed).assign(backend=backend))
        ranks = own_term_first(rows, studies, {k: tasks[k] for k in ("n-back", "flanker")})
        known.append(known_answer_test(ranks, settings.permutations, settings.seed).assign(backend=backend))
        hubs.append(hubness(rows, "task", k=10).assign(backend=backend))
        if "concept" in levels:
            term, k = NBACK_CONCEPT
            nback = [m for m, label in studies.items() if label == "n-back"]
            found = term_in_top(rows, nback, list(map_labels), term, "concept", k, settings.permutations,
                                settings.seed)
            concept.append({"backend": backend, "check": f"{term!r} in the top {k} concepts of n-back maps",
                            **found})
    return {
        "per_label": pd.concat(per_label, ignore_index=True),
        "known_answer": pd.concat(known, ignore_index=True),
        "concept": pd.DataFrame(concept),
        "hubness": pd.concat(hubs, ignore_index=True),
        "truth": truth,
    }


def headline(per_label: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """The report's first table: per backend and label, the task-level figures side by side."""
    tasks = per_label[(per_label["level"] == "task") & per_label["observed"].notna()]
    wide = tasks.pivot_table(index=["backend", "label", "n_maps"], columns="statistic",
                             values=["observed", "null_mean", "p_value"], aggfunc="first")
    columns = {}
    for stat in ("median_best_rank", "hit@1", "hit@5", "hit@10", "mrr"):
        if ("observed", stat) in wide:
            columns[stat] = wide[("observed", stat)]
            columns[f"{stat} null"] = wide[("null_mean", stat)]
            columns[f"{stat} p"] = wide[("p_value", stat)]
    table = pd.DataFrame(columns).reset_index()
    two_way = known[known["kind"] == "all"].set_index("backend")
    table["two-way"] = table["backend"].map(two_way["observed"])
    table["two-way null"] = table["backend"].map(two_way["null_mean"])
    table["two-way p"] = table["backend"].map(two_way["p_value"])
    return table


@dataclass
class FullResult:
    """The run's outputs: where things are, and the headline tables per section and vocabulary."""

    report: Path
    headline: dict[str, pd.DataFrame]
    times: dict[str, float]
    paths: dict[str, Path]


def run_full(settings: FullSettings, say: Say = print, ray_options=None, progress=None) -> FullResult:
    """Run every stage of the real-scale run on an embedded (or given) Ray and write the report.

    Parameters
    ----------
    settings : FullSettings
    say : callable
        Receives progress lines.
    ray_options : niclip_ray.runtime.RayOptions, optional
    progress : callable, optional
        ``progress(label, total, unit)`` context manager with ``advance(n)``.
    """
    from niclip_ray.baselines.run import run_baselines
    from niclip_ray.decoding.map_files import collect_maps
    from niclip_ray.demo import _Silent, stage_atlas
    from niclip_ray.evaluation import load_predictions
    from niclip_ray.model.bundle import load_bundle
    from niclip_ray.pipelines import decode
    from niclip_ray.pipelines import index as index_stage
    from niclip_ray.retrieval import Index
    from niclip_ray.retrieval.evaluation import RetrievalEvaluation, evaluate_retrieval
    from niclip_ray.runtime import ray_session

    progress = progress or (lambda label, total, unit: nullcontext(_Silent()))
    out = Path(settings.out_dir).resolve()
    settings = replace(settings, out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", asdict(settings), indent=2, default=str)
    times_file = out / "evaluation" / "times.json"
    # seconds spent per stage over every run into this directory (a resumed stage adds little)
    times: dict[str, float] = json.loads(times_file.read_text()) if times_file.is_file() else {}
    with timed(times, "corpus", say):
        corpus_dir, heldout_dir = stage_corpora(settings, say)
    ontologies = load_ontologies(settings)
    for name, ontology in ontologies.items():
        say(f"ontology ({name}): {ontology.summary()}")
    atlas_dir = stage_atlas(settings, say)
    maps, map_labels = stage_maps(settings, heldout_dir)
    models, retrieval, task_texts = {}, {}, {}
    with ray_session(ray_options, log_dir=out / "logs"):
        with timed(times, "features", say):
            features = stage_features(settings, corpus_dir, atlas_dir, say, progress)
        for section in settings.sections:
            with timed(times, f"train ({section})", say):
                bundle = stage_train(settings, section, features[section], say, progress)
            with timed(times, f"vocabulary ({section})", say):
                models[section] = stage_models(settings, section, bundle, features[section], ontologies, say,
                                               task_texts)
            with timed(times, f"decode ({section})", say):
                for name, model in models[section].items():
                    target = out / "decode" / f"{section}-{name}"
                    say(decode.run(collect_maps(list(maps.values())), model, target, topk=None,
                                   atlas_dir=atlas_dir).line())
            with timed(times, f"retrieval ({section})", say):
                index_dir = out / "index" / section
                say(index_stage.run(corpus_dir, features[section], bundle, index_dir).line())
                retrieval[section] = RetrievalEvaluation.read(out / "evaluation" / section)
                if retrieval[section] is None:
                    retrieval[section] = evaluate_retrieval(
                        Index(index_dir, bundle, atlas_dir=atlas_dir, seed=settings.seed), corpus_dir,
                        features[section] / "text", n_permutations=settings.permutations, seed=settings.seed)
                    retrieval[section].write(out / "evaluation" / section)

    first = settings.sections[0]
    split = load_bundle(models[first]["full"]).config["training"]["split"]
    baseline_file = out / "baselines" / "decode" / "part-00000.parquet"
    with timed(times, "baselines", say):
        if baseline_file.is_file():
            baselines = load_predictions(baseline_file)
        else:
            full = ontologies["full"]
            baselines, baseline_file = run_baselines(
                corpus_dir, split["train"], full.tasks["name"].tolist(), maps, out / "baselines",
                params=settings.baselines, term_ids=full.tasks["task_id"].tolist())
        say(f"baselines: fitted on the {len(split['train'])} training studies of the {first!r} split")

    tables, headlines = {}, {}
    with timed(times, "evaluate", say):
        for section in settings.sections:
            for name, ontology in ontologies.items():
                niclip = load_predictions(out / "decode" / f"{section}-{name}").assign(backend="niclip")
                reduced = rerank(baselines, set(ontology.tasks["name"]))
                result = evaluate_heldout(pd.concat([niclip, reduced], ignore_index=True), ontology, map_labels,
                                          settings)
                key = f"{section}-{name}"
                tables[key] = result
                headlines[key] = headline(result["per_label"], result["known_answer"])
                target = out / "evaluation" / key
                target.mkdir(parents=True, exist_ok=True)
                for table_name, table in {**result, "headline": headlines[key]}.items():
                    write_csv(target / f"{table_name}.csv", table, float_format=CSV_FLOAT_FORMAT)
    write_json(times_file, times, indent=2)
    report = write_full_report(settings, tables, headlines, retrieval, maps, map_labels, models, atlas_dir, times)
    say(f"report: {report}")
    return FullResult(report, headlines, times, {"corpus": corpus_dir, "heldout": heldout_dir, "maps": out / "maps"})


def write_full_report(settings: FullSettings, tables: dict, headlines: dict, retrieval: dict, maps: dict,
                      map_labels: dict, models: dict, atlas_dir: Path, times: dict) -> Path:
    """The HTML report: held-out tables first, then retrieval, hubness, maps and methods."""
    from niclip_ray.decoding.decoder import Decoder
    from niclip_ray.demo import retrieval_tables
    from niclip_ray.evaluation.labels import report_maps
    from niclip_ray.report import methods_text, read_curves, write_report

    out = settings.out_dir
    first = settings.sections[0]
    main_key = f"{first}-full"
    lead = {f"Held-out maps, text section {key.rsplit('-', 1)[0]!r}, {key.rsplit('-', 1)[1]} vocabulary: "
            "task level": table for key, table in headlines.items()}
    ordered = {}
    for key, result in tables.items():
        if not result["concept"].empty:
            ordered[f"Concept check ({key})"] = result["concept"]
    for section, found in retrieval.items():
        for heading, table in retrieval_tables(found, text=TEXT_NAMES.get(section, section)).items():
            ordered[f"{heading} (section {section!r})"] = table
    ordered["Wall time per stage (s), summed over the runs into this directory"] = pd.DataFrame(
        {"stage": list(times), "seconds": list(times.values())})
    from niclip_ray.evaluation import evaluate, load_predictions

    predictions = pd.concat([load_predictions(out / "decode" / main_key).assign(backend="niclip"),
                             load_predictions(out / "baselines" / "decode")], ignore_index=True)
    k = {"task": 10, "concept": 5, "domain": 2}
    metrics = evaluate(predictions, tables[main_key]["truth"], k=k, n_permutations=settings.permutations,
                       seed=settings.seed).summary
    curves = pd.concat([read_curves(p) for p in sorted((out / "train" / first / "runs").glob("*/metrics.jsonl"))],
                       ignore_index=True)
    facts = Decoder(models[first]["full"], atlas_dir=atlas_dir).describe()
    n_train = len(load_corpus(out / "corpus").studies)
    methods = methods_text(facts, corpus=f"Neurosynth v7 and NeuroQuery ({n_train} studies after removing the "
                           "held-out studies; titles and NeuroQuery keyword documents)",
                           n_maps=len(maps), k=k,
                           n_permutations=settings.permutations, seed=settings.seed, baselines=settings.baselines)
    shown, reason = report_maps(map_labels, per_label=2)
    return write_report(
        out / "report", maps={m: maps[m] for m in shown}, predictions=predictions,
        metrics=metrics, curves=curves, methods=methods, truth=tables[main_key]["truth"], tables=ordered,
        lead_tables=lead, table_notes={heading: HEADLINE_NOTE for heading in lead},
        title="NiCLIP at real scale: Neurosynth + NeuroQuery, judged on held-out n-back, flanker and motor maps",
        provenance=facts, hubness_k=10, maps_reason=reason,
        intro=(f"NiCLIP trained on {n_train} Neurosynth and NeuroQuery studies (no study of the held-out set) "
               f"decodes {len(maps) - 1} held-out n-back and flanker studies' MKDA maps and a motor map into the "
               "full Cognitive Atlas. Every figure is compared with a permutation null and with two baselines "
               "trained on the same studies."),
    )
