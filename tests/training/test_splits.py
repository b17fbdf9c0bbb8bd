"""k-fold splits: disjoint, covering, seeded, validation carved from training only."""

import numpy as np
import pytest

from niclip_ray.errors import InputError
from niclip_ray.training.splits import kfold_splits


def test_parts_are_disjoint_and_test_folds_partition_rows():
    n = 103
    splits = kfold_splits(n, 5, seed=3, val_fraction=0.1)
    tests = np.concatenate([s.test for s in splits])
    assert sorted(tests.tolist()) == list(range(n))
    for s in splits:
        parts = [set(s.train), set(s.val), set(s.test)]
        assert sum(map(len, parts)) == n
        assert set().union(*parts) == set(range(n))
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(s.val) == round(0.1 * (n - len(s.test)))


def test_seeded_and_shuffled():
    a, b, c = kfold_splits(60, 3, seed=1), kfold_splits(60, 3, seed=1), kfold_splits(60, 3, seed=2)
    assert all(np.array_equal(x.test, y.test) and np.array_equal(x.val, y.val) for x, y in zip(a, b))
    assert not np.array_equal(a[0].test, c[0].test)
    # shuffled: the first test fold is not the contiguous block the reference's KFold gives
    assert not np.array_equal(a[0].test, np.arange(20))


def test_too_few_rows_or_folds_is_an_input_error():
    with pytest.raises(InputError, match="too few"):
        kfold_splits(8, 3)
    with pytest.raises(InputError, match="folds"):
        kfold_splits(100, 1)
