"""Run-directory bookkeeping of the cross-validated run (no Ray)."""

import numpy as np
import pytest

from niclip_ray.errors import InputError
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
