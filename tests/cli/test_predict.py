"""``niclip-ray predict`` on the paper's file formats, checked against a direct implementation of the method's decoding.

The fixture writes what the original ``predict.py`` reads: a seeded state dict in the
reference key layout (``.pth``), a vocabulary ``.txt``, embeddings and prior ``.npy``, a
Cognitive Atlas directory in the reference JSON/CSV format (with a domain override), and
NiMARE's ``MNI152_2x2x2_brainmask.nii.gz``; the image lies on a 4 mm grid with NaNs. The
oracle below resamples with nilearn, solves the least squares with numpy, runs the CLIP
heads from the raw weights and applies the formulas with plain loops.
"""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy.special import erf

from niclip_ray._testing import toy_atlas, toy_state_dict
from niclip_ray.cli.main import run
from niclip_ray.decoding.predict import image_name, output_targets, parse_bool
from niclip_ray.errors import InputError

TASKS = [  # (id, name, definition) in snapshot order; the last one has no definition and is dropped
    ("trm_t1", "n-back task", "hold items in mind"),
    ("trm_t2", "stroop task", "name the ink colour"),
    ("trm_t9", "rest", "lie still"),  # not in the reduced set
    ("trm_t3", "finger tapping task", "tap fingers"),
    ("trm_t4", "emotional face matching task", "match faces"),
    ("trm_t5", "go/no-go task", "withhold a response"),
    ("trm_t6", "undefined task", ""),
]
CONCEPTS = [  # (id, name, concept class)
    ("trm_c1", "working memory", "ctp_C5"),
    ("trm_c2", "attention", "ctp_C2"),
    ("trm_c3", "motor control", "ctp_C7"),
    ("trm_c4", "emotion perception", "ctp_C8"),
    ("trm_c5", "response inhibition", "ctp_C4"),
    ("trm_c6", "semantic memory", "ctp_C5"),  # linked to no task
]
REDUCED = {  # reduced_tasks.csv rows (not in snapshot order)
    "go/no-go task": ["response inhibition", "motor control"],
    "n-back task": ["working memory", "attention"],
    "finger tapping task": ["motor control"],
    "stroop task": ["attention", "response inhibition", "working memory"],
    "emotional face matching task": ["emotion perception"],
}
OVERRIDES = {"response inhibition": "ctp_C7"}  # concept_to_process.json: C4 -> C7
DOMAIN_NAMES = {
    "ctp_C1": "Perception", "ctp_C2": "Attention", "ctp_C3": "Reasoning and decision making",
    "ctp_C4": "Executive cognitive control", "ctp_C5": "Learning and memory", "ctp_C6": "Language",
    "ctp_C7": "Action", "ctp_C8": "Emotion", "ctp_C9": "Social function", "ctp_C10": "Motivation",
}
VOCAB = [name for _, name, _ in TASKS if name in REDUCED]  # snapshot order
TASK_COLUMNS = ["pred", "prob", "similarity", "likelihood", "prior_prob", "joint_prob", "bayes_factor"]
TEXT_DIM, DIM = 16, 64


def nimare_mask() -> Path:
    import importlib.util

    root = Path(list(importlib.util.find_spec("nimare").submodule_search_locations)[0])
    return root / "resources" / "templates" / "MNI152_2x2x2_brainmask.nii.gz"


def write_image(path: Path, seed: int) -> Path:
    """A smooth map on a 4 mm grid (not the mask's) with a NaN slab and scattered NaNs."""
    rng = np.random.default_rng(seed)
    shape, affine = (46, 55, 46), np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = ijk * 4.0 + affine[:3, 3]
    data = np.zeros(len(xyz))
    for _ in range(6):
        centre = rng.uniform([-50, -80, -30], [50, 40, 60])
        data += rng.normal(0, 3) * np.exp(-((xyz - centre) ** 2).sum(1) / (2 * 20.0**2))
    data = data.reshape(shape).astype(np.float32)
    data[:, :, :6] = np.nan
    data[rng.random(shape) < 0.01] = np.nan
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The original's input files in their formats, in one directory."""
    root = tmp_path_factory.mktemp("predict")
    inputs = root / "inputs"
    ca = inputs / "cognitive_atlas"
    ca.mkdir(parents=True)
    (ca / "task_snapshot-02-19-25.json").write_text(
        json.dumps([{"id": i, "name": n, "definition_text": d} for i, n, d in TASKS]))
    (ca / "concept_extended_snapshot-02-19-25.json").write_text(json.dumps(
        [{"id": i, "name": n, "definition_text": f"{n} defined", "id_concept_class": c} for i, n, c in CONCEPTS]))
    pd.DataFrame([{"task": t, **{f"concept_{k + 1}": c for k, c in enumerate(cs)}} for t, cs in REDUCED.items()]
                 ).fillna("").to_csv(ca / "reduced_tasks.csv", index=False)
    (ca / "concept_to_process.json").write_text(json.dumps(OVERRIDES))
    rng = np.random.default_rng(7)
    state = toy_state_dict(text_dim=TEXT_DIM, dim=DIM, seed=3)
    torch.save(state, inputs / "model.pth")
    (inputs / "vocabulary-cogatlasred_task.txt").write_text("\n".join(VOCAB) + "\n")
    emb = rng.standard_normal((len(VOCAB), TEXT_DIM)).astype(np.float32)
    np.save(inputs / "vocabulary-cogatlasred_task-combined_embedding-Toy.npy", emb)
    prior = rng.random(len(VOCAB)) + 0.2
    prior = prior / prior.sum()
    np.save(inputs / "prior.npy", prior)
    image = write_image(inputs / "sub-01_contrast.nii.gz", seed=1)
    atlas = root / "atlas"
    toy_atlas(atlas, dim=DIM)
    args = ["--model", str(inputs / "model.pth"), "--vocabulary", str(inputs / "vocabulary-cogatlasred_task.txt"),
            "--vocabulary_emb", str(inputs / "vocabulary-cogatlasred_task-combined_embedding-Toy.npy"),
            "--vocabulary_prior", str(inputs / "prior.npy"), "--mask", str(nimare_mask()),
            "--atlas-dir", str(atlas), "--allow-atlas-mismatch"]
    return {"root": root, "inputs": inputs, "ca": ca, "image": image, "atlas": atlas, "args": args,
            "state": {k: v.double().numpy() for k, v in state.items()}, "emb": emb.astype(np.float64),
            "prior": prior}


# ---------------------------------------------------------------- the oracle (docs/method.md, "Decoding")
def oracle_beta(image: Path, atlas: Path) -> np.ndarray:
    """DiFuMo coefficients: image and atlas resampled to the mask, then least squares."""
    from nilearn.image import resample_img

    mask = nib.load(nimare_mask())
    maps = nib.load(str(atlas / "difumo_atlases" / str(DIM) / "2mm" / "maps.nii.gz"))
    columns = []
    for k in range(DIM):
        vol = resample_img(nib.Nifti1Image(np.asarray(maps.dataobj[..., k]), maps.affine), target_affine=mask.affine,
                           target_shape=mask.shape, interpolation="linear", copy_header=True)
        columns.append(sp.csc_matrix(np.nan_to_num(np.asarray(vol.dataobj, np.float64)).reshape(-1, 1)))
    X = sp.hstack(columns).tocsc()
    with pytest.warns(RuntimeWarning, match="NaNs"):  # nilearn's NaN handling, as the decoder's
        img = resample_img(nib.load(str(image)), target_affine=mask.affine, target_shape=mask.shape,
                           interpolation="continuous", copy_header=True)
    y = np.nan_to_num(np.asarray(img.dataobj, np.float64).reshape(-1))
    return np.linalg.solve((X.T @ X).toarray(), X.T @ y)


def clip_heads(state: dict, x: np.ndarray, head: str) -> np.ndarray:
    """The reference CLIP heads from the raw weights (float64), L2-normalised outputs."""
    def lin(v, p):
        return v @ state[f"{p}.weight"].T + state[f"{p}.bias"]

    def norm(v, p):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * state[f"{p}.weight"] + state[f"{p}.bias"]

    def gelu(v):
        return 0.5 * v * (1 + erf(v / np.sqrt(2)))

    blocks = range(3)
    if head == "text_model":
        p = lin(x, "text_model.model.0.projection")
        x = norm(p + lin(gelu(p), "text_model.model.0.fc"), "text_model.model.0.layer_norm")
        blocks = range(1, 3)
    for i in blocks:
        b = f"{head}.model.{i}"
        x = norm(x + gelu(lin(x, f"{b}.fc")), f"{b}.layer_norm")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def oracle(ref: dict, image: Path, scale: float) -> dict:
    beta = oracle_beta(image, ref["atlas"])
    f_img = clip_heads(ref["state"], (beta / (np.linalg.norm(beta) + 1e-8))[None], "image_model")[0]
    emb = ref["emb"] / (np.linalg.norm(ref["emb"], axis=1, keepdims=True) + 1e-8)
    f_txt = clip_heads(ref["state"], emb, "text_model")
    prior = ref["prior"]
    sim = scale * f_txt @ f_img
    lik = np.exp(sim - sim.max()) / np.exp(sim - sim.max()).sum()
    joint = lik * prior
    post = joint / joint.sum()
    bf = (post / (1 - post)) / (prior / (1 - prior))
    tasks = pd.DataFrame({"pred": VOCAB, "prob": post, "similarity": sim, "likelihood": lik, "prior_prob": prior,
                          "joint_prob": joint, "bayes_factor": bf}).set_index("pred")
    concept = {}
    for _, name, _ in CONCEPTS:
        q = 1.0
        for t, cs in REDUCED.items():
            if name in cs:
                q *= 1 - post[VOCAB.index(t)]
        concept[name] = 1 - q
    domain_of = {name: OVERRIDES.get(name, c) for _, name, c in CONCEPTS}
    process = {}
    for d, dname in DOMAIN_NAMES.items():
        q = 1.0
        for name, p in concept.items():
            if domain_of[name] == d:
                q *= 1 - p
        process[dname] = 1 - q
    return {"task": tasks, "concept": pd.Series(concept), "process": pd.Series(process)}


def assert_ranked(table: pd.DataFrame, expected: pd.Series, k: int) -> None:
    """``table`` holds the ``k`` most probable terms, best first, with the expected probabilities."""
    assert len(table) == min(k, len(expected))
    np.testing.assert_allclose(table["prob"], expected[table["pred"]].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(table["prob"], np.sort(expected.to_numpy())[::-1][: len(table)], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- tests
def test_hierarchical_files_columns_and_numbers(ref, tmp_path, capsys):
    before = sorted(p.name for p in ref["inputs"].rglob("*"))
    code = run(["predict", "--image", str(ref["image"]), *ref["args"], "--cognitiveatlas", str(ref["ca"]),
                "--hierarchical", "True", "--reduced", "True", "--topk", "3", "--logit_scale", "20.0",
                "--device", "cpu", "--output", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sub-01_contrast_concept_predictions.csv", "sub-01_contrast_process_predictions.csv",
        "sub-01_contrast_task_predictions.csv"]
    assert sorted(p.name for p in ref["inputs"].rglob("*")) == before  # nothing written beside the inputs
    expected = oracle(ref, ref["image"], 20.0)
    task = pd.read_csv(tmp_path / "out" / "sub-01_contrast_task_predictions.csv")
    assert task.columns.tolist() == TASK_COLUMNS
    assert_ranked(task, expected["task"]["prob"], 3)
    for column in ("likelihood", "prior_prob", "joint_prob"):  # probabilities: to 1e-6
        np.testing.assert_allclose(task[column], expected["task"].loc[task["pred"], column], rtol=0, atol=1e-6)
    for column in ("similarity", "bayes_factor"):  # unbounded: relative, at float32 model precision
        np.testing.assert_allclose(task[column], expected["task"].loc[task["pred"], column], rtol=1e-5)
    concept = pd.read_csv(tmp_path / "out" / "sub-01_contrast_concept_predictions.csv")
    assert concept.columns.tolist() == ["pred", "prob"]
    assert_ranked(concept, expected["concept"], 3)
    process = pd.read_csv(tmp_path / "out" / "sub-01_contrast_process_predictions.csv")
    assert process.columns.tolist() == ["pred", "prob"]
    assert_ranked(process, expected["process"], 10)
    # the override moved response inhibition to Action: Executive cognitive control gets nothing
    assert process.set_index("pred").loc["Executive cognitive control", "prob"] == 0.0
    assert "sub-01_contrast: top predictions" in captured.out and task["pred"].iloc[0] in captured.out


def test_flat_when_hierarchical_is_false(ref, tmp_path, capsys):
    code = run(["predict", "--image", str(ref["image"]), *ref["args"], "--cognitiveatlas", str(ref["ca"]),
                "--hierarchical", "False", "--reduced", "false", "--output", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["sub-01_contrast_predictions.csv"]
    table = pd.read_csv(tmp_path / "sub-01_contrast_predictions.csv")
    assert table.columns.tolist() == TASK_COLUMNS
    expected = oracle(ref, ref["image"], 10.0)  # the original CLI's default scale
    assert_ranked(table, expected["task"]["prob"], 10)
    np.testing.assert_allclose(table["similarity"], expected["task"].loc[table["pred"], "similarity"], rtol=1e-5)
    assert "concept" not in capsys.readouterr().out


def test_default_output_is_the_image_directory(ref, tmp_path, capsys):
    image = write_image(tmp_path / "run-1.bold.nii.gz", seed=3)
    assert run(["predict", "--image", str(image), *ref["args"], "--topk", "2"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run-1_predictions.csv").is_file()  # the file name up to its first dot, as the original


def test_wrong_vocabulary_order_is_caught(ref, tmp_path, capsys):
    swapped = tmp_path / "vocab.txt"
    swapped.write_text("\n".join([VOCAB[1], VOCAB[0], *VOCAB[2:]]))
    args = list(ref["args"])
    args[args.index("--vocabulary") + 1] = str(swapped)
    code = run(["predict", "--image", str(ref["image"]), *args, "--cognitiveatlas", str(ref["ca"]),
                "--hierarchical", "yes", "--output", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "vocab.txt lists the ontology's tasks in another order" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--model", "--vocabulary_prior", "--mask", "--image"])
def test_missing_file_is_one_line(ref, tmp_path, capsys, flag):
    args = ["--image", str(ref["image"]), *ref["args"]]
    args[args.index(flag) + 1] = str(tmp_path / "missing.file")
    assert run(["predict", *args, "--output", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "missing.file" in lines[0] and lines[0].startswith("error:")


def test_hierarchical_needs_cognitiveatlas(ref, tmp_path, capsys):
    assert run(["predict", "--image", str(ref["image"]), *ref["args"], "--hierarchical", "1"]) == 1
    assert "--hierarchical True needs --cognitiveatlas" in capsys.readouterr().err


def test_cuda_without_gpu_is_a_clear_error(ref, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run(["predict", "--image", str(ref["image"]), *ref["args"], "--device", "cuda:0",
                "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--device cuda:0: no CUDA GPU is available" in err and len(err.strip().splitlines()) == 1
    assert run(["predict", "--image", str(ref["image"]), *ref["args"], "--device", "tpu:0"]) == 1
    assert "is not a device" in capsys.readouterr().err


def test_boolean_flags_and_help(capsys):
    for text, value in [("True", True), ("False", False), ("true", True), ("false", False), ("1", True),
                        ("0", False), ("yes", True), ("no", False)]:
        assert parse_bool(text) is value
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("maybe")
    assert run(["predict", "--image", "x.nii.gz", "--model", "m", "--vocabulary", "v", "--vocabulary-emb", "e",
                "--vocabulary-prior", "p", "--mask", "k", "--reduced", "maybe"]) == 1
    assert "--reduced: 'maybe' is not a boolean" in capsys.readouterr().err
    assert run(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert '"False" included, as true' in text and "jobs and app use 20" in text and "[default: 10.0]" in text


def test_output_names():
    assert image_name("/data/sub-01_task-motor.nii.gz") == "sub-01_task-motor"
    items = [{"map_id": "a", "source_path": "/d1/x.nii.gz", "volume": -1},
             {"map_id": "b", "source_path": "/d2/x.nii", "volume": -1}]
    assert output_targets(items, None) == {"a": (Path("/d1"), "x"), "b": (Path("/d2"), "x")}
    with pytest.raises(InputError, match="would both write"):
        output_targets(items, "/out")
    four_d = [{"map_id": "y:1", "source_path": "/d/y.nii.gz", "volume": 1}]
    assert output_targets(four_d, "/o") == {"y:1": (Path("/o"), "y_vol-1")}


def test_directory_of_two_images_on_ray(ref, ray_local, tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    first = write_image(maps / "first.nii.gz", seed=1)
    second = write_image(maps / "second.nii.gz", seed=2)
    out = tmp_path / "out"
    code = run(["predict", "--image", str(maps), *ref["args"], "--cognitiveatlas", str(ref["ca"]),
                "--hierarchical", "True", "--topk", "2", "--logit-scale", "20", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(os.listdir(out)) == sorted(f"{m}_{level}_predictions.csv" for m in ("first", "second")
                                             for level in ("task", "concept", "process"))  # work dir removed
    for image in (first, second):
        expected = oracle(ref, image, 20.0)
        task = pd.read_csv(out / f"{image_name(image)}_task_predictions.csv")
        assert task.columns.tolist() == TASK_COLUMNS
        assert_ranked(task, expected["task"]["prob"], 2)
        assert_ranked(pd.read_csv(out / f"{image_name(image)}_process_predictions.csv"), expected["process"], 10)
    assert "first: top predictions" in captured.out and "second: top predictions" in captured.out
