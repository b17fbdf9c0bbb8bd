"""The service's web page (``GET /``) and the brain plot it shows (rendered on the server)."""

from __future__ import annotations

import base64
import html
import io
from string import Template

import nibabel as nib

from niclip_ray.report import figures


def glass_brain_png(img: nib.Nifti1Image) -> str:
    """A glass-brain plot of ``img`` as a ``data:image/png;base64,...`` URL.

    Drawn and thresholded as the report draws a map (:func:`~niclip_ray.report.figures.glass_brain`,
    the rule the page states: :data:`~niclip_ray.report.figures.THRESHOLD_RULE`).
    """
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(7, 2.6))
    try:
        figures.glass_brain(img, figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def caveats(description: dict) -> list[str]:
    """The warnings the page shows about the model (from :meth:`Decoder.describe`)."""
    notes = []
    if description.get("atlas_standin"):
        notes.append(f"The atlas is a stand-in ({description['atlas_id']}), not the real DiFuMo: "
                     "predictions are for testing the service, not for interpretation.")
    n_train = description.get("n_train_studies")
    if n_train is not None and n_train < 5000:
        notes.append(f"The model was trained on {n_train} studies only (the paper's model used ~23,000 "
                     "full texts): expect weak, noisy rankings.")
    notes.append("Probabilities are posteriors over this vocabulary, not evidence that a task was performed.")
    return notes


_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>NiCLIP decoder</title>
<style>
body{font-family:system-ui,sans-serif;max-width:70em;margin:1em auto;padding:0 1em;color:#222}
#drop{border:2px dashed #888;border-radius:8px;padding:2em;text-align:center;cursor:pointer}
#drop.over{background:#eef}
.caveat{background:#fff4d6;border-left:4px solid #e0a800;padding:.4em .8em;margin:.3em 0}
table{border-collapse:collapse;margin:.5em 1em .5em 0;vertical-align:top;display:inline-table}
td,th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left}
#error{color:#b00020}
.bar{height:.45em;margin:1px 0}.post{background:#3366cc}.prior{background:#aaa}
</style></head><body>
<h1>NiCLIP decoder</h1>
<p>Model <code>$bundle</code>, atlas <code>$atlas</code>, $n_tasks tasks.</p>
$caveats
<div id="drop">Drop a NIfTI map (.nii or .nii.gz) here, or <label>choose one
<input id="file" type="file" accept=".nii,.gz"></label></div>
<p><label>Rank tasks by <select id="rankby"><option value="posterior">posterior (the paper's)</option>
<option value="bayes-factor">Bayes factor (the map's evidence)</option><option value="likelihood">likelihood (the map alone)</option>
</select></label></p>
<p id="status"></p><p id="error"></p>
<img id="brain" alt="glass brain plot of the uploaded map" style="display:none;max-width:100%">
<p id="threshold" style="display:none">$threshold_rule</p>
<div id="tables"></div>
<p id="notes" style="display:none">Bars: posterior (blue) beside prior (grey). <b>against map</b>: the map lowered the
task's probability below its prior (Bayes factor below 1). Concepts and domains are noisy-ORs over every task's
posterior, not the top task's, and keep their posterior order, so the top concept need not belong to the top task.
Hub flags need many maps decoded together (<code>niclip-ray decode</code>); one upload has none.</p>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("file");
const rankBy = document.getElementById("rankby");
function esc(s){return String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");}
function fmt(x){return x === null ? "" : (typeof x === "number" ? x.toPrecision(4) : esc(x));}
async function decode(file){
  document.getElementById("status").textContent = "decoding " + file.name + "...";
  document.getElementById("error").textContent = "";
  const body = new FormData(); body.append("file", file);
  const response = await fetch("v1/decode?top_k=10&plot=true&rank_by=" + rankBy.value, {method: "POST", body});
  const data = await response.json();
  if (!response.ok){ document.getElementById("status").textContent = "";
    document.getElementById("error").textContent = data.detail; return; }
  const brain = document.getElementById("brain"); brain.src = data.plot; brain.style.display = "block";
  document.getElementById("threshold").style.display = "block";
  let out = "";
  for (const [level, rows] of Object.entries(data.results)){
    const task = level === "task", top = Math.max(...rows.map(r => Math.max(r.prob, task ? r.prior : 0)), 1e-12);
    const bar = (x, kind) => '<div class="bar ' + kind + '" style="width:' + (6 * x / top).toFixed(2) + 'em"></div>';
    out += '<table id="table-' + level + '"><caption>' + level + "s" + (task ? " by " + esc(data.model.rank_by) : "")
      + "</caption><tr><th>rank</th><th>term</th><th>prob</th>"
      + (task ? "<th>prior</th><th>bayes factor</th><th>posterior / prior</th><th>flags</th>" : "") + "</tr>";
    for (const r of rows) out += '<tr class="row-' + level + '"><td>' + r.rank + "</td><td>" + esc(r.term)
      + "</td><td>" + fmt(r.prob) + "</td>" + (task ? "<td>" + fmt(r.prior) + "</td><td>" + fmt(r.bayes_factor)
      + "</td><td>" + bar(r.prob, "post") + bar(r.prior, "prior") + "</td><td>" + (r.against_map ? "against map" : "")
      + "</td>" : "") + "</tr>";
    out += "</table>";
  }
  document.getElementById("tables").innerHTML = out;
  document.getElementById("notes").style.display = "block";
  const m = data.map;
  document.getElementById("status").textContent = file.name + ": grid " + m.shape.join("x") + " at "
    + m.voxel_mm.join("x") + " mm, " + (m.resampled ? "resampled" : "on the model's grid") + ", "
    + m.nan_count + " NaN voxels";
}
input.addEventListener("change", () => input.files.length && decode(input.files[0]));
drop.addEventListener("dragover", e => {e.preventDefault(); drop.classList.add("over");});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) decode(e.dataTransfer.files[0]);});
</script></body></html>
""")


def render_page(description: dict) -> str:
    """The HTML of ``GET /`` for a decoder's :meth:`describe` output."""
    notes = "\n".join(f'<p class="caveat">{html.escape(note)}</p>' for note in caveats(description))
    return _PAGE.substitute(
        bundle=html.escape(str(description.get("bundle_sha256"))),
        atlas=html.escape(str(description["atlas_id"])),
        n_tasks=int(description["n_terms"]["task"]),
        caveats=notes,
        threshold_rule=html.escape(figures.THRESHOLD_RULE),
    )
