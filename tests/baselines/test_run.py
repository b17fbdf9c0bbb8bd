"""``niclip-ray baselines run`` writes decode-contract Parquet that ``evaluate`` scores."""

import pandas as pd
import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray.baselines.run import read_vocabulary, run_baselines
from niclip_ray.cli.main import run
from niclip_ray.errors import InputError


def test_cli_run_then_evaluate(nback_flanker, tiny_split, tmp_path):
    corpus_dir, _ = nback_flanker
    train, _ = tiny_split
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "vocabulary.txt").write_text("n-back\nflanker\nworking memory\n")
    motor = load_sample_motor_activation_image()
    code = run([
        "baselines", "run", "--corpus", str(corpus_dir), "--train-ids", str(tmp_path / "train.txt"),
        "--vocabulary", str(tmp_path / "vocabulary.txt"), "--map", f"motor={motor}", "--map",
        str(tmp_path / "gone.nii.gz"), "--out", str(tmp_path / "base"), "--method", "gclda",
        "--gclda-topics", "3", "--gclda-regions", "2", "--gclda-iters", "3",
    ])
    assert code == 0
    written = pd.read_parquet(tmp_path / "base" / "decode" / "part-00000.parquet")
    assert set(written["backend"]) == {"gclda"}
    assert written.loc[written["map_id"] == "motor", "rank"].tolist() == [1, 2, 3]
    assert "file not found" in written.loc[written["map_id"] == "gone", "error"].iloc[0]
    pd.DataFrame({"map_id": ["motor"], "task": ["working memory"]}).to_csv(tmp_path / "truth.csv", index=False)
    code = run(["evaluate", "--predictions", str(tmp_path / "base"), "--truth", str(tmp_path / "truth.csv"),
                "--out", str(tmp_path / "eval"), "--permutations", "5"])
    assert code == 0
    summary = pd.read_csv(tmp_path / "eval" / "eval_results.csv")
    assert summary["backend"].tolist() == ["gclda"] and summary["n_images"].tolist() == [1]


def test_rows_carry_term_ids_and_the_voxel_grid(nback_flanker, tiny_split, tmp_path):
    motor = load_sample_motor_activation_image()
    rows, _ = run_baselines(nback_flanker[1], tiny_split[0], ["n-back", "flanker"], {"motor": motor}, tmp_path,
                            methods=["neurosynth"], term_ids=["trm_1", "trm_2"])
    assert dict(zip(rows["term"], rows["term_id"])) == {"n-back": "trm_1", "flanker": "trm_2"}
    assert set(rows["atlas_id"]) == {"voxels-mni152-2mm"} and rows["error"].isna().all()


def test_runner_input_errors(nback_flanker, tiny_split, tmp_path):
    with pytest.raises(InputError, match="unknown baseline"):
        run_baselines(nback_flanker[1], tiny_split[0], ["flanker"], {}, tmp_path, methods=["lda"])
    with pytest.raises(InputError, match="bad parameters for baseline gclda"):
        run_baselines(nback_flanker[1], tiny_split[0], ["flanker"], {}, tmp_path, methods=["gclda"],
                      params={"gclda": {"topics": 3}})
    pd.DataFrame({"term_id": ["t1"]}).to_parquet(tmp_path / "vocabulary.parquet")
    with pytest.raises(InputError, match="no 'name' column"):
        read_vocabulary(tmp_path / "vocabulary.parquet")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputError, match="is empty"):
        read_vocabulary(tmp_path / "empty.txt")
