"""One self-contained HTML report: maps, top predictions, metric table, training curves, methods.

Every picture is embedded as a base64 PNG (and also written beside the HTML file), the
style sheet is inline, and nothing is loaded from elsewhere, so the file can be mailed or
archived on its own.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from niclip_ray import __version__
from niclip_ray.errors import InputError
from niclip_ray.evaluation import load_truth
from niclip_ray.report import figures
from niclip_ray.report.methods import cited_references, standin_banner

REPORT_NAME = "report.html"
#: Summary columns shown in the metric table, with their headers.
METRIC_COLUMNS = {
    "backend": "backend", "level": "level", "k": "k", "n_images": "maps", "mean_recall_at_k": "recall@k",
    "mean_hit_at_k": "hit@k", "median_best_rank": "median best rank", "mrr": "MRR",
    "null_mean_hit_at_k": "null hit@k (mean)", "null_std_hit_at_k": "null hit@k (std)",
    "p_value_hit_at_k": "p (hit@k)", "normalized_hit_at_k": "hit@k / null", "above_chance": "above chance",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
img { max-width: 100%; } .error { color: #a00; } p.meta { color: #666; font-size: 0.85em; }
.banner { background: #fff3cd; border: 2px solid #c90; padding: 0.8em 1em; font-weight: 600; }
figcaption { color: #444; font-size: 0.9em; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "map"


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "<td>yes</td>" if value else "<td>no</td>"
    if isinstance(value, (float, np.floating)):
        return "<td>-</td>" if np.isnan(value) else f"<td>{value:.3g}</td>"
    if isinstance(value, (int, np.integer)):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def html_table(frame: pd.DataFrame, headers: Mapping[str, str] | None = None) -> str:
    """An escaped HTML table of ``frame`` (numbers to 3 significant digits, NaN as '-')."""
    headers = headers or {c: c for c in frame.columns}
    columns = [c for c in headers if c in frame.columns]
    head = "".join(f"<th>{html.escape(headers[c])}</th>" for c in columns)
    rows = ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame[columns].itertuples(index=False)]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _value_column(predictions: pd.DataFrame) -> pd.Series:
    """The shown value: the posterior ``prob`` where there is one, else the baseline ``score``."""
    prob = predictions["prob"] if "prob" in predictions else pd.Series(np.nan, index=predictions.index)
    score = predictions["score"] if "score" in predictions else pd.Series(np.nan, index=predictions.index)
    return prob.astype(float).fillna(score.astype(float))


def _truth_line(labels: pd.DataFrame, map_id: str) -> str:
    rows = labels[labels["map_id"] == map_id]
    if rows.empty:
        return "<p>True labels: none given.</p>"
    parts = [f"{level}: {', '.join(group['term'])}" for level, group in rows.groupby("level", sort=False)]
    return f"<p>True labels: {html.escape('; '.join(parts))}</p>"


def _prediction_tables(predictions: pd.DataFrame, map_id: str, top_n: int) -> str:
    rows = predictions[predictions["map_id"].astype(str) == map_id]
    if rows.empty:
        return "<p>No predictions for this map.</p>"
    parts = []
    errors = rows[rows["error"].notna()] if "error" in rows else rows.iloc[:0]
    for backend, message in zip(errors.get("backend", pd.Series("", index=errors.index)), errors["error"]):
        parts.append(f'<p class="error">{html.escape(str(backend))}: {html.escape(str(message))}</p>')
    ok = rows.drop(index=errors.index)
    if ok.empty:
        return "".join(parts)
    ok = ok.assign(value=_value_column(ok))
    if "backend" not in ok:
        ok = ok.assign(backend="niclip")
    for (level, backend), group in ok.groupby(["level", "backend"], sort=False):
        top = group.sort_values("rank", kind="stable").head(top_n)
        parts.append(f"<h4>{html.escape(str(level))} · {html.escape(str(backend))}</h4>")
        parts.append(html_table(top, {"rank": "rank", "term": "term", "value": "prob / score"}))
    return "".join(parts)


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
) -> Path:
    """Write ``report.html`` and its PNG figures to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Created if needed; holds ``report.html``, ``map-*.png``, ``metrics.png``, ``curves.png``.
    maps : mapping of map id to NIfTI path or image
        Decoded maps, drawn with nilearn's ``plot_stat_map``.
    predictions : DataFrame
        Decode-contract rows (``map_id, level, rank, term`` and ``prob`` and/or ``score``,
        optionally ``backend`` and ``error``) of NiCLIP and the baselines.
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
        shown under each map.
    tables : mapping of heading to DataFrame, optional
        Further result tables (e.g. a known-answer check), shown after the metrics.
    provenance : mapping, optional
        What decoded the maps (:meth:`Decoder.describe() <niclip_ray.decoding.decoder.Decoder.describe>`):
        its ``atlas_id`` and ``text_model_id`` go into the captions. A stand-in atlas there or
        in the predictions' ``atlas_id`` column opens the report with a warning banner.

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
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">niclip-ray {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>']
    banner = standin_banner(atlas_ids)
    if banner:
        body.insert(1, f'<p class="banner">Stand-in atlas: {html.escape(banner)}</p>')
    caption = ", ".join(
        f"{label} {provenance[key]}" for key, label in (("atlas_id", "atlas"), ("text_model_id", "text model"))
        if provenance.get(key)
    )

    body.append("<h2>Metrics: NiCLIP, baselines and the permutation null</h2>")
    body.append(html_table(metrics, METRIC_COLUMNS))
    if not metrics.empty:
        body.append(_img_tag(figures.plot_metrics(metrics, out / "metrics.png"), "hit@k against the null"))

    for heading, table in (tables or {}).items():
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(html_table(table))

    body.append("<h2>Decoded maps and top predictions</h2>")
    for map_id, source in maps.items():
        body.append(f"<h3>{html.escape(str(map_id))}</h3>")
        if labels is not None:
            body.append(_truth_line(labels, str(map_id)))
        png = out / f"map-{_slug(str(map_id))}.png"
        try:
            body.append("<figure>" + _img_tag(figures.plot_map(source, str(map_id), png), f"map {map_id}")
                        + (f"<figcaption>{html.escape(str(map_id))}, decoded with {html.escape(caption)}</figcaption>"
                           if caption else "") + "</figure>")
        except InputError as exc:
            body.append(f'<p class="error">{html.escape(str(exc))}</p>')
        body.append(_prediction_tables(predictions, str(map_id), top_n))

    body.append("<h2>Training curves</h2>")
    if curves is None or curves.empty:
        body.append("<p>No training curves were given.</p>")
    else:
        body.append(_img_tag(figures.plot_curves(curves, out / "curves.png"), "training and validation loss"))

    body.append("<h2>Methods</h2>")
    body += [f"<p>{html.escape(p.strip())}</p>" for p in methods.split("\n\n") if p.strip()]
    references = cited_references(methods)
    if references:
        body.append("<h3>References</h3><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in references) + "</ul>")

    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = out / REPORT_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
