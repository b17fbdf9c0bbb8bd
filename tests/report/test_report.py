"""The HTML report: self-contained, with the maps, tables, curves and methods."""

import base64
import json
import re

import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray._testing import toy_bundle
from niclip_ray.decoding.decoder import Decoder
from niclip_ray.errors import InputError
from niclip_ray.evaluation import evaluate
from niclip_ray.report import methods_text, read_curves, write_report


def _predictions():
    rows = []
    for backend, lists in {"niclip": ["motor fMRI task paradigm", "finger tapping"],
                           "gclda": ["finger tapping", "n-back"]}.items():
        rows += [("motor", "task", r + 1, t, 0.7 - 0.3 * r if backend == "niclip" else None, 5.0 - r, backend, None)
                 for r, t in enumerate(lists)]
    rows.append(("motor", "domain", 1, "Action", 0.9, None, "niclip", None))
    rows.append(("bad", None, None, None, None, None, "niclip", "map bad: file not found"))
    return pd.DataFrame(rows, columns=["map_id", "level", "rank", "term", "prob", "score", "backend", "error"])


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    """What a real decoder says it runs (toy bundle on the stand-in atlas, top 5)."""
    root = tmp_path_factory.mktemp("toy")
    return Decoder(toy_bundle(root / "bundle", root / "atlas"), atlas_dir=root / "atlas", topk=5).describe()


@pytest.fixture(scope="module")
def report(tmp_path_factory, facts):
    out = tmp_path_factory.mktemp("report")
    metrics_file = out / "metrics.jsonl"
    metrics_file.write_text("\n".join(json.dumps({"fold": f, "epoch": e, "train_loss": 3 - e * 0.2 - f,
                                                  "val_loss": 3.2 - e * 0.1 - f}) for f in (0, 1) for e in range(5)))
    predictions = _predictions()
    truth = pd.DataFrame({"map_id": ["motor"], "task": ["motor fMRI task paradigm"], "domain": ["Action"]})
    summary = evaluate(predictions, truth, n_permutations=10).summary
    methods = methods_text(facts, corpus="a toy corpus", n_maps=2, k={"task": 4}, n_permutations=10, seed=0,
                           baselines={"gclda": {"n_topics": 3}})
    path = write_report(out / "html", maps={"motor": load_sample_motor_activation_image(), "bad": out / "missing.nii"},
                        predictions=predictions, metrics=summary, curves=read_curves(metrics_file), methods=methods,
                        truth=truth, provenance=facts)
    return path, summary


def test_report_is_self_contained_and_has_its_pngs(report):
    path, _ = report
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    sources = [s for s in re.findall(r'(?:src|href)="([^"]*)"', page) if not s.startswith("#")]  # # : on the page
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and page.count("<script") == 1 and "<script>" in page  # one inline script
    assert "http" not in page.split("<script>")[1].split("</script>")[0]
    for name in ("metrics.png", "curves.png", "map-motor.png"):
        png = path.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(png.read_bytes()).decode() in page


def test_report_has_the_tables_and_methods(report):
    path, summary = report
    page = path.read_text()
    assert "null hit@k (mean)" in page and page.count("<h4>") == 3  # task x2 backends, domain x1
    assert "motor fMRI task paradigm" in page and "finger tapping" in page
    # metric table: one row per backend and level, filled from the summary
    table = page.split('<h2 id="metrics">')[1].split("</table>")[0]
    assert table.count("<tr>") == len(summary) + 1
    hit = float(summary["mean_hit_at_k"].iloc[0])
    assert f'<td data-sort="{hit!r}">{hit:.3g}</td>' in table
    truth = page.split("<h3 id=\"map-motor\">")[1].split("True labels and their ranks:")[1].split("</table>")[0]
    assert truth.index("motor fMRI task paradigm") < truth.index("Action")  # tasks first
    assert "True labels: none given." in page  # the map "bad" has none
    assert "map bad: file not found" in page  # failed maps are shown, not dropped
    assert "Rubin et al., 2017" in page and "doi:10.1371/journal.pcbi.1005649" in page
    assert "Yarkoni, T." not in page  # only cited references are listed


def test_methods_state_what_the_decoder_ran(facts):
    text = methods_text(facts, corpus="a toy corpus", n_maps=2, k={"task": 4}, n_permutations=10, seed=0)
    assert (f"2 maps were decoded into a vocabulary of {facts['n_terms']['task']} Cognitive Atlas task names "
            "(Poldrack et al., 2011), with concepts and domains obtained by noisy-OR over the ontology.") in text
    assert "projected onto toy-difumo64-8mm-standin-seed0, an offline stand-in for the DiFuMo atlas" in text
    assert "trained on a toy corpus." in text  # the toy bundle records no training split
    assert "embedded with toy-random." in text and "scaled by 20)" in text and "with the vocabulary's prior" in text
    assert f"the top 5 tasks and concepts of each map were kept (model bundle {facts['bundle_sha256']})." in text
    assert "(task k=4)" in text and "10 permutations" in text
    other = {**facts, "hierarchical": False, "topk": None, "atlas_standin": False, "prior": "uniform",
             "n_train_studies": 20, "bundle_sha256": None}
    text = methods_text(other, corpus="a toy corpus", n_maps=2, k={"task": 4}, n_permutations=10, seed=0)
    assert "noisy-OR" not in text and "trained on 20 studies of a toy corpus." in text
    assert "projected onto the DiFuMo atlas (Dadi et al., 2020) by least squares" in text
    assert "posteriors with a uniform prior; every term was ranked." in text


def test_a_standin_run_says_so_at_the_top_and_in_the_methods(report):
    page = report[0].read_text()
    top = page.split("<h2")[0]
    assert 'class="banner"' in top and "toy-difumo64-8mm-standin-seed0, an offline stand-in" in top
    assert "decoded with atlas toy-difumo64-8mm-standin-seed0, text model toy-random" in page  # map caption
    methods = page.split('<h2 id="methods">')[1]
    assert "stand-in" in methods and "projected onto the DiFuMo atlas" not in methods


def test_no_banner_on_the_real_atlas(tmp_path, facts):
    real = {**facts, "atlas_id": "difumo512-2mm", "atlas_standin": False}
    predictions = _predictions().iloc[:2]
    metrics = evaluate(predictions, pd.DataFrame({"map_id": ["motor"], "task": ["n-back"]}), n_permutations=10).summary
    page = write_report(tmp_path, maps={}, predictions=predictions, metrics=metrics, curves=None,
                        methods="", provenance=real).read_text()
    assert "banner" not in page.split("<style>")[1].split("</style>")[1] and "stand-in" not in page


def test_baselines_with_default_settings_have_no_empty_brackets(facts):
    text = methods_text(facts, corpus="c", n_maps=1, k={"task": 4}, n_permutations=10, seed=0,
                        baselines={"neurosynth": {}, "gclda": {}})
    assert "()" not in text and "(Rubin et al., 2017)" in text and "(NiMARE's default settings)" in text


def test_full_term_tables_hubness_intro_and_links(tmp_path, facts):
    from niclip_ray.report.html import format_p, term_hubness

    predictions = _predictions()
    metrics = evaluate(predictions, pd.DataFrame({"map_id": ["motor"], "task": ["n-back"]}), n_permutations=10).summary
    page = write_report(tmp_path, maps={"motor": load_sample_motor_activation_image()}, predictions=predictions,
                        metrics=metrics.assign(p_value_hit_at_k=0.0004), curves=None, methods="", provenance=facts,
                        intro="What this shows & what it does not.", map_titles={"motor": "A motor map"},
                        map_links={"motor": {"NeuroVault": "https://neurovault.org/images/10426/"}},
                        hubness_k=1).read_text()
    assert "<p class=\"intro\">What this shows &amp; what it does not.</p>" in page  # escaped by the template
    assert 'A motor map · <a href="https://neurovault.org/images/10426/">NeuroVault</a>' in page
    assert '<td data-sort="0.0004">&lt; 0.001</td>' in page  # p-values as p < 0.001, sorted by the value
    full = page.split("<details>")[1]
    assert "<th tabindex=\"0\">probability</th><th tabindex=\"0\">raw score</th>" in full
    assert '<td data-sort="0.7">0.7</td><td data-sort="5.0">5</td>' in full
    assert "Term hubness" in page
    assert format_p(0.0123) == "0.012" and format_p(float("nan")) == "-"
    ranked = pd.DataFrame({"map_id": ["a", "a", "b", "b"], "level": "task", "rank": [1, 2, 1, 2],
                           "term": ["x", "y", "x", "y"]})
    hubs = term_hubness(ranked, k=1)
    assert hubs[["term", "maps_in_top_k", "fraction_in_top_k", "expected", "ratio"]].values.tolist() == [
        ["x", 2, 1.0, 0.5, 2.0]]


def test_bad_report_inputs(tmp_path):
    with pytest.raises(InputError, match="lack column"):
        write_report(tmp_path, maps={}, predictions=pd.DataFrame({"map_id": []}), metrics=pd.DataFrame(),
                     curves=None, methods="")
    (tmp_path / "m.jsonl").write_text('{"fold": 0, "epoch": 1}\n')
    with pytest.raises(InputError, match="train_loss"):
        read_curves(tmp_path / "m.jsonl")


def test_map_style_and_figures(tmp_path):
    import nibabel as nib
    import numpy as np

    from niclip_ray.report.figures import SIGNED_PERCENTILE, map_style, plot_map

    spheres = np.zeros((20, 20, 20), dtype=np.float32)
    spheres[5:9, 5:9, 5:9] = 1.0
    assert map_style(spheres) == ("non-negative", 0.0)
    signed = np.concatenate([np.zeros(100), np.arange(1, 101), -np.arange(1, 101)])  # zeros do not count
    assert map_style(signed) == ("signed", pytest.approx(np.percentile(np.arange(1, 101), SIGNED_PERCENTILE)))

    mask = nib.load(load_sample_motor_activation_image())
    binary = nib.Nifti1Image((np.abs(mask.get_fdata()) > 3).astype(np.float32), mask.affine)
    glass = plot_map(binary, "binary", tmp_path / "binary.png")
    assert glass.kind == "non-negative" and "Glass brain" in glass.caption
    motor = plot_map(load_sample_motor_activation_image(), "motor", tmp_path / "motor.png")
    assert motor.kind == "signed" and 3 < motor.threshold < 6 and f"{motor.threshold:.3g}" in motor.caption
    for figure in (glass, motor):
        assert figure.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_top_tables_have_probability_and_score_apart_and_map_captions(report):
    page = report[0].read_text()
    motor = page.split('<h3 id="map-motor">motor</h3>')[1].split("<h3")[0]
    top = motor.split("<h4>task · niclip</h4>")[1].split("</table>")[0]
    assert "".join(f"<th tabindex=\"0\">{h}</th>" for h in ("rank", "term", "probability", "raw score")) in top
    assert '<td data-sort="0.7">0.7</td><td data-sort="5.0">5</td>' in top
    gclda = motor.split("<h4>task · gclda</h4>")[1].split("</table>")[0]
    assert '<td class="missing">-</td><td data-sort="5.0">5</td>' in gclda  # GC-LDA gives no probability
    assert "the 95th percentile of |value|" in motor  # the motor map is signed: thresholded slices


def test_cognitive_atlas_ids_are_linked(tmp_path, facts):
    from niclip_ray.report.html import cognitive_atlas_url

    assert cognitive_atlas_url("trm_4f24126c22011", "task") == "https://www.cognitiveatlas.org/task/id/trm_4f24126c22011/"
    assert cognitive_atlas_url("tsk_4a57abb949a4f", "task") == "https://www.cognitiveatlas.org/task/id/tsk_4a57abb949a4f/"
    assert cognitive_atlas_url("trm_4a3fd79d0b5a7", "concept") == (
        "https://www.cognitiveatlas.org/concept/id/trm_4a3fd79d0b5a7/")
    assert cognitive_atlas_url("ctp_C10", "domain") == "https://www.cognitiveatlas.org/concepts/categories/all"
    for term_id, level in (("niclip_tsk_n_back_task", "task"), ("tsk_4a57abb949a4f", "concept"),
                           ("ctp_C1", "task"), ("domain_x", "domain"), (None, "task"), ("trm_4f24126c22011 x", "task")):
        assert cognitive_atlas_url(term_id, level) is None

    predictions = _predictions().iloc[:2].assign(term_id=["trm_4f24126c22011", "niclip_tsk_finger_tapping"])
    metrics = evaluate(predictions, pd.DataFrame({"map_id": ["motor"], "task": ["n-back"]}), n_permutations=10).summary
    page = write_report(tmp_path, maps={"motor": load_sample_motor_activation_image()}, predictions=predictions,
                        metrics=metrics, curves=None, methods="", provenance=facts).read_text()
    full = page.split("<details>")[1]
    assert '<td class="text"><a href="https://www.cognitiveatlas.org/task/id/trm_4f24126c22011/">trm_4f24126c22011</a>' in full
    assert '<td class="text">niclip_tsk_finger_tapping</td>' in full  # a local id stays plain text


def test_every_table_is_sortable_with_typed_cells_and_notes(tmp_path, facts):
    predictions = _predictions()
    metrics = evaluate(predictions, pd.DataFrame({"map_id": ["motor"], "task": ["n-back"]}), n_permutations=10).summary
    extra = pd.DataFrame({"name": ["b", "a"], "value": [2.0, float("nan")], "ok": [True, False]})
    page = write_report(tmp_path, maps={}, predictions=predictions, metrics=metrics, curves=None, methods="",
                        provenance=facts, tables={"Extra": extra}, table_notes={"Extra": "2 rows & a note."},
                        metrics_note="Why the counts differ.", hubness_k=1).read_text()
    assert page.count("<table") == page.count('<table class="sortable">') == 3  # metrics, extra, hubness
    table = page.split("Extra</h2>")[1].split("</table>")[0]
    assert ('<tr><td class="text">b</td><td data-sort="2.0">2</td><td data-sort="1">yes</td></tr>'
            '<tr><td class="text">a</td><td class="missing">-</td><td data-sort="0">no</td></tr>') in table
    assert '</table>\n<p class="note">2 rows &amp; a note.</p>' in page.split("Extra</h2>")[1]
    assert '</table>\n<p class="note">Why the counts differ.</p>' in page.split("<h2 id=\"metrics\">")[1]


def test_lead_tables_open_the_report(tmp_path, facts):
    predictions = _predictions().iloc[:2]
    metrics = evaluate(predictions, pd.DataFrame({"map_id": ["motor"], "task": ["n-back"]}), n_permutations=10).summary
    lead = pd.DataFrame({"label": ["n-back"], "hit@10": [0.9]})
    page = write_report(tmp_path, maps={}, predictions=predictions, metrics=metrics, curves=None, methods="",
                        provenance=facts, tables={"Later": lead}, lead_tables={"Held-out": lead},
                        table_notes={"Held-out": "What the columns are."}).read_text()
    assert page.index('<h2 id="held-out">Held-out</h2>') < page.index('<h2 id="metrics">') < page.index(
        '<h2 id="later">Later</h2>')
    assert '<p class="note">What the columns are.</p>' in page.split("Held-out</h2>")[1].split("<h2")[0]


def test_posterior_prior_bars_flags_and_how_to_read_them(tmp_path, facts):
    predictions = _predictions().assign(prior=None, bayes_factor=None, against_map=None, hub=None)
    niclip_task = (predictions["backend"] == "niclip") & (predictions["level"] == "task")
    predictions.loc[niclip_task, ["prior", "bayes_factor", "against_map", "hub"]] = [[0.2, 9.3, False, True],
                                                                                      [0.5, 0.43, True, False]]
    truth = pd.DataFrame({"map_id": ["motor"], "task": ["motor fMRI task paradigm"]})
    path = write_report(tmp_path, maps={"motor": load_sample_motor_activation_image()}, predictions=predictions,
                        metrics=evaluate(predictions, truth, n_permutations=5).summary, curves=None, methods="m",
                        provenance={**facts, "rank_by": "bayes_factor"})
    page = path.read_text()
    assert (tmp_path / "bars-motor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64encode((tmp_path / "bars-motor.png").read_bytes()).decode() in page
    motor = page.split('<h3 id="map-motor">motor</h3>')[1]
    niclip = motor.split("<h4>task · niclip</h4>")[1].split("</table>")[0]
    assert "<th tabindex=\"0\">against map</th><th tabindex=\"0\">hub</th>" in niclip
    assert niclip.count('<td data-sort="1">yes</td>') == 2  # the first task's hub, the second's against map
    gclda = motor.split("<h4>task · gclda</h4>")[1].split("</table>")[0]
    assert "against map" not in gclda  # a baseline has no prior, so no flags
    assert "Tasks are ranked by bayes factor." in page and "need not be one the top task measures" in page
