"""The report's layout: contents, which maps it draws and why, level order, true-label ranks, one threshold rule."""

import html
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.evaluation.labels import report_maps
from niclip_ray.report import figures, write_report
from niclip_ray.report.html import truth_ranks
from niclip_ray.serve.page import glass_brain_png, render_page

#: Two maps; "a" has two backends, levels listed domain first, and a tie between two tasks.
PREDICTIONS = pd.DataFrame(
    [("a", "domain", 1, "Memory", 0.9, "niclip"),
     ("a", "concept", 1, "attention", 0.8, "niclip"),
     ("a", "concept", 2, "working memory", 0.7, "niclip"),
     ("a", "task", 1, "flanker", 0.5, "niclip"),
     ("a", "task", 2, "stroop", 0.3, "niclip"),
     ("a", "task", 2, "n-back", 0.3, "niclip"),  # tied with stroop: the evaluation counts rank 3
     ("a", "task", 1, "n-back", None, "gclda"),
     ("b", "task", 1, "n-back", 0.6, "niclip")],
    columns=["map_id", "level", "rank", "term", "prob", "backend"],
).assign(error=None)
TRUTH = pd.DataFrame({"map_id": ["a", "a", "a"], "level": ["domain", "concept", "task"],
                      "term": ["Memory", "working memory", "n-back"]})
METRICS = pd.DataFrame({"backend": ["niclip"] * 3, "level": ["domain", "concept", "task"], "k": [1, 2, 3],
                        "mean_hit_at_k": [1.0, 1.0, 1.0]})


def _spheres() -> nib.Nifti1Image:
    data = np.zeros((20, 20, 20), dtype=np.float32)
    data[5:9, 5:9, 5:9] = 1.0
    return nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0]))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("layout")
    return write_report(out, maps={"a": _spheres(), "b": _spheres()}, predictions=PREDICTIONS, metrics=METRICS,
                        curves=None, methods="m", truth=TRUTH, tables={"Extra": pd.DataFrame({"x": [1]})},
                        maps_reason="the two maps of the toy run").read_text()


def test_contents_link_to_every_section(page):
    contents = page.split('<nav id="contents">')[1].split("</nav>")[0]
    targets = re.findall(r'href="#([^"]+)"', contents)
    assert targets == ["metrics", "extra", "maps", "curves", "methods"]
    ids = re.findall(r'<h2 id="([^"]+)">', page)
    assert ids == targets  # every section is listed, in page order, and every link has its section
    assert page.index('<nav id="contents">') < page.index("<h2")


def test_the_drawn_maps_are_listed_with_the_reason(page):
    section = page.split('<h2 id="maps">')[1]
    assert '<p id="drawn-maps">The report draws 2 maps: the two maps of the toy run.</p>' in section
    listed = section.split('<ul class="drawn-maps">')[1].split("</ul>")[0]
    assert listed == '<li><a href="#map-a">a</a> (true task: n-back)</li><li><a href="#map-b">b</a></li>'
    assert '<h3 id="map-a">a</h3>' in section and '<h3 id="map-b">b</h3>' in section


def test_report_maps_says_which_maps_and_why():
    labels = {"s3": "flanker", "s1": "n-back", "s2": "n-back", "s0": "flanker", "s4": "n-back", "m": "motor"}
    shown, reason = report_maps(labels, per_label=2)
    assert shown == ["s0", "s3", "m", "s1", "s2"]
    assert reason == ("the first 2 of each label (flanker, motor, n-back) in map id order, so that every label is "
                      "shown and the report stays short; all 6 maps are decoded and scored")


def test_tasks_come_before_concepts_and_domains(page):
    a = page.split('<h3 id="map-a">')[1].split("<h3")[0]
    headings = re.findall(r"<h4>([^<]+)</h4>", a)
    assert headings == ["task · niclip", "task · gclda", "concept · niclip", "domain · niclip"]
    summaries = re.findall(r"<summary>Every term: ([^<]+)</summary>", a)
    assert summaries == headings
    metrics = page.split('<h2 id="metrics">')[1].split("</table>")[0]
    assert metrics.index(">task<") < metrics.index(">concept<") < metrics.index(">domain<")


def test_the_true_labels_rank_by_hand():
    ranks = truth_ranks(PREDICTIONS, TRUTH, "a")
    # niclip ranks n-back 2nd, tied with stroop: 3 as the evaluation counts it; gclda ranks only tasks
    assert ranks.columns.tolist() == ["level", "term", "rank (niclip)", "rank (gclda)"]
    assert ranks.values.tolist()[0] == ["task", "n-back", 3.0, 1.0]
    assert ranks.values.tolist()[1] == ["concept", "working memory", 2.0, pytest.approx(np.nan, nan_ok=True)]
    assert ranks.values.tolist()[2] == ["domain", "Memory", 1.0, pytest.approx(np.nan, nan_ok=True)]


def test_the_report_shows_the_true_labels_rank(page):
    a = page.split('<h3 id="map-a">')[1].split("<h4>")[0]
    table = a.split("True labels and their ranks:")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert rows[1] == ('<td class="text">task</td><td class="text">n-back</td><td data-sort="3.0">3</td>'
                       '<td data-sort="1.0">1</td>')
    assert '<td class="text">working memory</td><td data-sort="2.0">2</td><td class="missing">-</td>' in rows[2]
    assert "counted as the evaluation counts it" in a
    b = page.split('<h3 id="map-b">')[1]
    assert "True labels: none given." in b.split("<h4>")[0]


def test_report_and_page_threshold_by_one_rule(page, monkeypatch, tmp_path):
    rule = figures.THRESHOLD_RULE
    service = render_page({"atlas_id": "x", "n_terms": {"task": 3}, "bundle_sha256": "s"})
    for shown, opening in ((page, '<p class="threshold">'), (service, '<p id="threshold" style="display:none">')):
        assert html.unescape(shown.split(opening)[1].split("</p>")[0]) == rule
    assert "95th percentile of |value|" in rule and "every voxel above 0" in rule

    import nilearn.plotting

    drawn = []
    monkeypatch.setattr(figures, "map_style", lambda data: ("signed", 4.25))  # one rule for both
    for name in ("plot_glass_brain", "plot_stat_map"):
        monkeypatch.setattr(nilearn.plotting, name, lambda *a, name=name, **kw: drawn.append((name, kw["threshold"])))
    motor = nib.load(load_sample_motor_activation_image())
    report_figure = figures.plot_map(motor, "motor", tmp_path / "motor.png")
    assert glass_brain_png(motor).startswith("data:image/png;base64,")
    assert drawn == [("plot_stat_map", 4.25), ("plot_glass_brain", 4.25)]
    assert report_figure.threshold == 4.25 and "4.25" in report_figure.caption
