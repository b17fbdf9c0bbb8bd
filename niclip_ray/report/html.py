"""One self-contained HTML report: maps, predictions, metric table, training curves, methods.

Every picture is embedded as a base64 PNG (and also written beside the HTML file), the
style sheet is inline, and nothing is loaded from elsewhere, so the file can be mailed or
archived on its own. The page is a jinja2 template (``templates/report.html``, autoescaped);
this module only turns frames into rows of cells.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray import __version__
from niclip_ray.atomic import write_text
from niclip_ray.decoding.ranking import HUB_MIN_MAPS, HUB_SHARE, HUB_TOP_K
from niclip_ray.decoding.schema import LEVELS
from niclip_ray.errors import InputError
from niclip_ray.evaluation import load_truth
from niclip_ray.evaluation.metrics import effective_ranks
from niclip_ray.report import figures
from niclip_ray.report.methods import cited_references, standin_banner

REPORT_NAME = "report.html"
#: The report's own sections (anchor id: heading); the caller's tables come before and after the metrics.
SECTIONS = {"metrics": "Metrics: NiCLIP, baselines and the permutation null",
            "maps": "Decoded maps and top predictions", "curves": "Training curves", "methods": "Methods"}
#: Why the report draws the maps it does, when the caller gives no reason.
ALL_MAPS = "every map it was given"
#: Under a map's table of true labels: what '-' means and how ties are counted.
TRUTH_NOTE = ("The rank each backend gave each true label, counted as the evaluation counts it (tied terms take the "
              "last of their ranks); '-': not ranked (outside the backend's vocabulary or kept top terms, or a level "
              "it does not predict).")
#: Summary columns shown in the metric table, with their headers.
METRIC_COLUMNS = {
    "backend": "backend", "level": "level", "k": "k", "n_images": "maps", "mean_recall_at_k": "recall@k",
    "mean_hit_at_k": "hit@k", "median_best_rank": "median best rank", "mrr": "MRR",
    "null_mean_hit_at_k": "null hit@k (mean)", "null_std_hit_at_k": "null hit@k (std)",
    "p_value_hit_at_k": "p (hit@k)", "normalized_hit_at_k": "hit@k / null", "above_chance": "above chance",
}
#: Columns of a map's top-n table (the prior, Bayes factor and flags where a backend gives them).
TOP_COLUMNS = {"rank": "rank", "term": "term", "prob": "probability", "score": "raw score", "prior": "prior",
               "bayes_factor": "Bayes factor", "against_map": "against map", "hub": "hub"}
#: Columns shown only for the backends that fill them.
_OPTIONAL_TOP = ("prior", "bayes_factor", "against_map", "hub")
#: How to read a map's predictions: the ranking, the flags, and why levels can disagree.
READING = ("Tasks are ranked by {rank_by}. The probability is the posterior (likelihood × prior); a Bayes factor "
           "below 1 ('against map: yes') means the map lowered the task's probability below its prior, so the "
           "prior, not the map, keeps it ranked; the bars show each top task's posterior beside its prior. A hub "
           "is a term in the top {hub_k} of more than {hub_share:.0%} of the maps decoded together (at least "
           "{hub_min}). Concepts and domains are noisy-ORs over every task's posterior, not the top task's, and keep "
           "their posterior order, so the top concept need not be one the top task measures.")
#: Columns of the full term table of a map.
TERM_COLUMNS = {"rank": "rank", "term_id": "term id", "term": "term", "prob": "probability", "score": "raw score",
                "similarity": "cosine similarity"}
#: Cognitive Atlas id forms per level (tasks have old ``trm_`` and new ``tsk_`` ids, concepts ``trm_``).
_COGNITIVE_ATLAS_IDS = {"task": re.compile(r"(?:trm|tsk)_[0-9A-Za-z]+"), "concept": re.compile(r"trm_[0-9A-Za-z]+"),
                        "domain": re.compile(r"ctp_C[0-9]+")}
#: Cognitive Atlas has no page per concept class (domain); this one lists each class and its concepts.
_COGNITIVE_ATLAS_DOMAINS = "https://www.cognitiveatlas.org/concepts/categories/all"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("niclip_ray.report", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "map"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def format_p(value: float) -> str:
    """A p-value as a paper writes it: ``p < 0.001`` below 0.001, else three decimals."""
    return "-" if value != value else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _sort_key(value: float) -> str:
    """A number as JavaScript's ``Number()`` reads it (``Infinity`` for inf)."""
    return repr(value) if np.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def _cell(value: object, column: str = "") -> dict:
    """What a cell shows (``value``), its ``kind`` (number, text or missing) and, for numbers, its ``sort`` key."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return {"value": "-", "kind": "missing"}
    if isinstance(value, (bool, np.bool_)):
        return {"value": "yes" if value else "no", "kind": "number", "sort": str(int(value))}
    if isinstance(value, (float, np.floating)):
        shown = format_p(float(value)) if column.startswith("p_value") or column == "p" else f"{value:.3g}"
        return {"value": shown, "kind": "number", "sort": _sort_key(float(value))}
    if isinstance(value, (int, np.integer)):
        return {"value": str(value), "kind": "number", "sort": str(int(value))}
    return {"value": str(value), "kind": "text"}


def cognitive_atlas_url(term_id: object, level: str) -> str | None:
    """The Cognitive Atlas page of a task (``trm_*``, ``tsk_*``), concept (``trm_*``) or domain (``ctp_C*``) id.

    A domain (concept class) links to the page listing the classes. Local ids (the built-in
    ontology's ``niclip_tsk_*``) and other levels get None.
    """
    pattern = _COGNITIVE_ATLAS_IDS.get(level)
    if pattern is None or not isinstance(term_id, str) or not pattern.fullmatch(term_id):
        return None
    if level == "domain":
        return _COGNITIVE_ATLAS_DOMAINS
    return f"https://www.cognitiveatlas.org/{level}/id/{term_id}/"


def table_rows(frame: pd.DataFrame, headers: Mapping[str, str] | None = None, note: str = "",
               links: Mapping[str, Sequence[str | None]] | None = None) -> dict:
    """``headers`` and ``rows`` of cells (numbers to 3 significant digits, p-values as ``< 0.001``, NaN as '-').

    ``links`` maps a column to one URL (or None) per row; a cell with a URL becomes a link.
    """
    headers = headers or {c: c for c in frame.columns}
    columns = [c for c in headers if c in frame.columns]
    rows = [[_cell(v, c) for c, v in zip(columns, row)] for row in frame[columns].itertuples(index=False)]
    for column, urls in (links or {}).items():
        if column in columns:
            at = columns.index(column)
            for row, url in zip(rows, urls):
                if url:
                    row[at]["href"] = url
    return {"headers": [headers[c] for c in columns], "rows": rows, "note": note}


def _anchor(text: str, taken: set[str]) -> str:
    """A new HTML id for ``text`` (lower-case words joined by '-'), numbered when already ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, n = base, 1
    while anchor in taken:
        n += 1
        anchor = f"{base}-{n}"
    taken.add(anchor)
    return anchor


def _level_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with tasks first, then concepts and domains (other levels last), otherwise in its order."""
    order = frame["level"].map({level: i for i, level in enumerate(LEVELS)}).fillna(len(LEVELS))
    return frame.iloc[np.argsort(order.to_numpy(), kind="stable")]


def truth_ranks(predictions: pd.DataFrame, labels: pd.DataFrame, map_id: str) -> pd.DataFrame:
    """The rank each backend gave each true label of one map.

    Parameters
    ----------
    predictions : DataFrame
        Ranked rows (``map_id, level, rank, term``, optionally ``backend`` and ``error``).
    labels : DataFrame
        True labels in the long layout of :func:`~niclip_ray.evaluation.load_truth`.
    map_id : str

    Returns
    -------
    DataFrame
        ``level, term`` and a ``rank (<backend>)`` column per backend, one row per true label,
        tasks first, then concepts and domains. A rank is the evaluation's
        (:func:`~niclip_ray.evaluation.metrics.effective_ranks`: tied terms take the last of
        their ranks), NaN where the backend did not rank the term.
    """
    rows = predictions[(predictions["map_id"].astype(str) == map_id) & predictions["rank"].notna()]
    if "error" in rows:
        rows = rows[rows["error"].isna()]
    if "backend" not in rows:
        rows = rows.assign(backend="niclip")
    rows = rows.assign(effective=effective_ranks(rows, ["backend", "level"]))
    table = _level_order(labels.loc[labels["map_id"] == map_id, ["level", "term"]]).reset_index(drop=True)
    for backend, group in rows.groupby("backend", sort=False):
        ranks = group.drop_duplicates(["level", "term"]).set_index(["level", "term"])["effective"]
        table[f"rank ({backend})"] = ranks.reindex(pd.MultiIndex.from_frame(table[["level", "term"]])).to_numpy()
    return table


def _map_predictions(predictions: pd.DataFrame, map_id: str, top_n: int) -> dict:
    """Errors, top-``top_n`` tables and full term tables of one map, per level and backend."""
    rows = predictions[predictions["map_id"].astype(str) == map_id]
    errors = rows[rows["error"].notna()] if "error" in rows else rows.iloc[:0]
    messages = [f"{backend}: {message}" for backend, message in
                zip(errors.get("backend", pd.Series("", index=errors.index)), errors["error"])]
    ok = rows.drop(index=errors.index)
    if "backend" not in ok:
        ok = ok.assign(backend="niclip")
    top, full = [], []
    for (level, backend), group in _level_order(ok).groupby(["level", "backend"], sort=False):
        group = group.sort_values("rank", kind="stable")
        heading = f"{level} · {backend}"
        columns = {c: h for c, h in TOP_COLUMNS.items()
                   if c not in _OPTIONAL_TOP or (c in group and group[c].notna().any())}
        top.append((heading, table_rows(group.head(top_n), columns)))
        links = {"term_id": [cognitive_atlas_url(t, level) for t in group["term_id"]]} if "term_id" in group else {}
        full.append((heading, table_rows(group, TERM_COLUMNS, links=links)))
    return {"errors": messages, "top": top, "full": full, "empty": rows.empty}


def _posterior_prior_png(predictions: pd.DataFrame, map_id: str, top_n: int, path: Path) -> str | None:
    """The NiCLIP top tasks' posterior-beside-prior bars of a map (a data URI), or None without a prior."""
    rows = predictions[(predictions["map_id"].astype(str) == map_id) & (predictions["level"] == "task")]
    if "backend" in rows:
        rows = rows[rows["backend"] == "niclip"]
    if "prior" not in rows or rows["prior"].isna().all():
        return None
    rows = rows.sort_values("rank", kind="stable").head(top_n)
    drawn = figures.plot_posterior_prior(rows["term"].astype(str).tolist(), rows["prob"].to_numpy(float),
                                         rows["prior"].to_numpy(float), f"{map_id}: posterior and prior", path)
    return _data_uri(drawn)


def term_hubness(predictions: pd.DataFrame, k: int, level: str = "task") -> pd.DataFrame:
    """How often each term is among a map's top ``k``, against ``k / n_terms`` if ranks were even.

    Parameters
    ----------
    predictions : DataFrame
        Ranked rows (``map_id, level, rank, term``, optionally ``backend``).
    k : int
    level : str

    Returns
    -------
    DataFrame
        ``backend, term, maps_in_top_k, fraction_in_top_k, expected, ratio`` (fraction over
        expected), the most frequent first; terms never in a top ``k`` are left out.
    """
    rows = predictions[(predictions["level"] == level) & predictions["rank"].notna()]
    if "error" in rows:
        rows = rows[rows["error"].isna()]
    if "backend" not in rows:
        rows = rows.assign(backend="niclip")
    parts = []
    for backend, group in rows.groupby("backend", sort=True):
        n_maps, n_terms = group["map_id"].nunique(), group["term"].nunique()
        counts = group[group["rank"] <= k].groupby("term")["map_id"].nunique()
        expected = min(k / max(n_terms, 1), 1.0)
        parts.append(pd.DataFrame({
            "backend": backend, "term": counts.index, "maps_in_top_k": counts.to_numpy(),
            "fraction_in_top_k": counts.to_numpy() / max(n_maps, 1), "expected": expected,
        }))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["backend", "term", "maps_in_top_k", "fraction_in_top_k", "expected"])
    frame["ratio"] = frame["fraction_in_top_k"].astype(float) / frame["expected"].astype(float)
    return frame.sort_values(["backend", "maps_in_top_k", "term"], ascending=[True, False, True], ignore_index=True)


def write_report(
    out_dir: str | os.PathLike,
    *,
    maps: Mapping[str, str | os.PathLike | nib.Nifti1Image],
    predictions: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: pd.DataFrame | None,
    methods: str,
    title: str = "NiCLIP decoding report",
    top_n: int = 5,
    truth: pd.DataFrame | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    provenance: Mapping[str, object] | None = None,
    intro: str = "",
    map_titles: Mapping[str, str] | None = None,
    map_links: Mapping[str, Mapping[str, str]] | None = None,
    hubness_k: int | None = None,
    metrics_note: str = "",
    table_notes: Mapping[str, str] | None = None,
    lead_tables: Mapping[str, pd.DataFrame] | None = None,
    maps_reason: str = "",
) -> Path:
    """Write ``report.html`` and its PNG figures to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Created if needed; holds ``report.html``, ``map-*.png``, ``metrics.png``, ``curves.png``.
    maps : mapping of map id to NIfTI path or image
        Decoded maps to draw, listed at the top of their section with ``maps_reason``. Each is
        drawn by :func:`~niclip_ray.report.figures.plot_map` (a glass brain of a non-negative
        map, thresholded slices of a signed one, as its caption says; the section states
        :data:`~niclip_ray.report.figures.THRESHOLD_RULE`), with its NiCLIP top tasks' posterior
        beside their prior
        (:func:`~niclip_ray.report.figures.plot_posterior_prior`, ``bars-*.png``) when the
        predictions have a prior.
    predictions : DataFrame
        Decode-contract rows (``map_id, level, rank, term`` and ``prob`` and/or ``score``,
        optionally ``term_id``, ``similarity``, ``backend``, ``atlas_id`` and ``error``) of NiCLIP
        and the baselines. Each map gets its top ``top_n`` and, folded, every term with its
        probability and raw score in separate columns; the top table adds the prior, Bayes
        factor and the ``against_map`` and ``hub`` flags where a backend gives them. Tasks come
        before concepts and domains.
    metrics : DataFrame
        The evaluator's summary (:attr:`EvaluationResult.summary`).
    curves : DataFrame or None
        Training curves (``fold, epoch, train_loss, val_loss``), e.g. from
        :func:`~niclip_ray.report.figures.read_curves`.
    methods : str
        Methods text (paragraphs separated by blank lines), e.g. from
        :func:`~niclip_ray.report.methods.methods_text`; cited references are listed.
    title : str
        Page title.
    top_n : int
        Predictions shown per map, level and backend.
    truth : DataFrame, optional
        True labels (long or wide layout, see :func:`~niclip_ray.evaluation.load_truth`),
        shown under each map with the rank each backend gave them (:func:`truth_ranks`).
    tables : mapping of heading to DataFrame, optional
        Further result tables (e.g. a known-answer check), shown after the metrics.
    provenance : mapping, optional
        What decoded the maps (:meth:`Decoder.describe() <niclip_ray.decoding.decoder.Decoder.describe>`):
        its ``atlas_id`` and ``text_model_id`` go into the captions, its ``rank_by`` into the
        note on reading the predictions. A stand-in atlas there or
        in the predictions' ``atlas_id`` column opens the report with a warning banner.
    intro : str
        A plain sentence or two under the title (and above the table of contents): what the
        run shows and does not show.
    map_titles : mapping of map id to str, optional
        A title shown under a map's heading.
    map_links : mapping of map id to mapping of label to URL, optional
        Links shown after a map's title, e.g. ``{"PubMed": ..., "NeuroStore record (JSON)": ...}``.
    hubness_k : int, optional
        Add the :func:`term_hubness` table of the task level at this cut-off.
    metrics_note, table_notes : str, mapping of heading to str, optional
        A note under the metric table, and under the ``tables`` (or ``lead_tables``) of those
        headings (e.g. why two tables count different maps).
    lead_tables : mapping of heading to DataFrame, optional
        Tables shown first, before the metrics (e.g. a run's headline evaluation).
    maps_reason : str, optional
        Why these ``maps`` are drawn (e.g. :func:`~niclip_ray.evaluation.labels.report_maps`'s
        reason); by default :data:`ALL_MAPS`.

    Returns
    -------
    Path
        The HTML file.
    """
    missing = [c for c in ("map_id", "level", "rank", "term") if c not in predictions.columns]
    if missing:
        raise InputError(f"report predictions lack column(s) {', '.join(missing)}")
    missing = [c for c in ("backend", "level", "k", "mean_hit_at_k") if c not in metrics.columns]
    if missing:
        raise InputError(f"report metrics lack column(s) {', '.join(missing)}")
    labels = None if truth is None else load_truth(truth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    provenance = provenance or {}
    atlas_ids = [str(provenance.get("atlas_id") or "")]
    if "atlas_id" in predictions:
        atlas_ids += predictions["atlas_id"].dropna().astype(str).unique().tolist()
    caption = ", ".join(
        f"{label} {provenance[key]}" for key, label in (("atlas_id", "atlas"), ("text_model_id", "text model"))
        if provenance.get(key)
    )
    taken = {"contents", *SECTIONS}
    shown = []
    for map_id, source in maps.items():
        entry = {"id": str(map_id), "anchor": _anchor(f"map {map_id}", taken),
                 "title": (map_titles or {}).get(map_id, ""), "links": (map_links or {}).get(map_id, {}), "png": None,
                 "truth": None, "true_tasks": ""}
        if labels is not None and (labels["map_id"] == str(map_id)).any():
            entry["truth"] = table_rows(truth_ranks(predictions, labels, str(map_id)), note=TRUTH_NOTE)
            entry["true_tasks"] = ", ".join(labels.loc[(labels["map_id"] == str(map_id))
                                                       & (labels["level"] == "task"), "term"])
        entry.update(_map_predictions(predictions, str(map_id), top_n))
        entry["bars_png"] = _posterior_prior_png(predictions, str(map_id), top_n, out / f"bars-{_slug(str(map_id))}.png")
        try:
            drawn = figures.plot_map(source, str(map_id), out / f"map-{_slug(str(map_id))}.png")
        except InputError as exc:
            entry["errors"] = [str(exc), *entry["errors"]]
        else:
            decoded = f" {map_id}, decoded with {caption}." if caption else ""
            entry.update(png=_data_uri(drawn.path), caption=drawn.caption + decoded)
        shown.append(entry)
    notes = table_notes or {}

    def sections(named: Mapping[str, pd.DataFrame] | None) -> list[dict]:
        return [{"id": _anchor(heading, taken), "heading": heading, "table": table_rows(table, note=notes.get(heading, ""))}
                for heading, table in (named or {}).items()]

    lead, extra = sections(lead_tables), sections(tables)
    if hubness_k:
        hubs = term_hubness(predictions, hubness_k)
        heading = f"Term hubness: how often a task is in a map's top {hubness_k}"
        extra.append({"id": _anchor(heading, taken), "heading": heading, "table": table_rows(
            hubs, {"backend": "backend", "term": "term", "maps_in_top_k": "maps", "fraction_in_top_k": "fraction of maps",
                   "expected": "k / n terms", "ratio": "fraction / (k / n)"},
            note="A term far above k / n sits in the top k of most maps whatever they show "
                 "(a hub); an even decoder would put each term there in k / n of the maps.")})
    fixed = {key: {"id": key, "heading": heading} for key, heading in SECTIONS.items()}
    contents = [*lead, fixed["metrics"], *extra, fixed["maps"], fixed["curves"], fixed["methods"]]
    page = _TEMPLATES.get_template("report.html").render(
        title=title, version=__version__, stamp=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
        banner=standin_banner(atlas_ids), intro=intro, contents=contents, sections=fixed, lead=lead,
        reading=READING.format(rank_by=str(provenance.get("rank_by", "posterior")).replace("_", " "),
                               hub_k=HUB_TOP_K, hub_share=HUB_SHARE, hub_min=HUB_MIN_MAPS),
        metrics=table_rows(_level_order(metrics), METRIC_COLUMNS, note=metrics_note),
        metrics_png=_data_uri(figures.plot_metrics(metrics, out / "metrics.png")) if not metrics.empty else None,
        tables=extra, maps=shown, has_truth=labels is not None, maps_reason=maps_reason or ALL_MAPS, threshold_rule=figures.THRESHOLD_RULE,
        curves_png=None if curves is None or curves.empty else _data_uri(figures.plot_curves(curves, out / "curves.png")),
        methods=[p.strip() for p in methods.split("\n\n") if p.strip()], references=cited_references(methods),
    )
    return write_text(out / REPORT_NAME, page)
