"""Run-directory bookkeeping of the cross-validated run (no Ray)."""

import numpy as np
import pytest

from niclip_ray.errors import InputError, ParameterError
from niclip_ray.training.cv import _check_resumable, _run_identity
from niclip_ray.training.data import PairedFeatures
from niclip_ray.training.loop import TrainConfig


def pairs(ids):
    return PairedFeatures(ids, np.eye(len(ids), 4, dtype=np.float32), np.eye(len(ids), 6, dtype=np.float32), "body")


def test_resume_allows_more_epochs_but_not_other_settings_or_data(tmp_path):
    data = pairs(["a", "b", "c"])
    _check_resumable(tmp_path, _run_identity(data, TrainConfig(epochs=2), 2))
    _check_resumable(tmp_path, _run_identity(data, TrainConfig(epochs=5), 2))
    with pytest.raises(InputError, match="different lr"):
        _check_resumable(tmp_path, _run_identity(data, TrainConfig(epochs=5, lr=1e-3), 2))
    with pytest.raises(InputError, match="study_ids_sha256"):
        _check_resumable(tmp_path, _run_identity(pairs(["a", "b", "d"]), TrainConfig(epochs=5), 2))


def test_worker_cpu_share_leaves_half_a_cpu_free():
    from niclip_ray.runtime.session import worker_cpu_share

    assert worker_cpu_share(1, 1, total_cpus=2) == 1.0
    assert worker_cpu_share(2, 1, total_cpus=2) == 0.75
    assert worker_cpu_share(2, 2, total_cpus=2) == 0.375
    assert worker_cpu_share(4, 2, total_cpus=64) == 1.0
    assert worker_cpu_share(1, 1, total_cpus=2, node_cpus=0.5) == 0.5  # a worker runs on one node


def test_batch_must_split_evenly_across_workers_before_ray_starts(tmp_path):
    from niclip_ray.training.ray_train import ScalingOptions, run_folds

    with pytest.raises(ParameterError, match=r"^batch_size must be a multiple of the number of workers \(3\), got 8$"):
        run_folds(np.zeros((9, 2)), np.zeros((9, 3)), [], TrainConfig(batch_size=8), ScalingOptions(num_workers=3), tmp_path)
