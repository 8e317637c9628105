"""Class-balanced grouping and sampling: equal class shares, a pure function of labels and seed."""
import numpy as np
import pytest

from cache_schema.views import GroundTruth
from student.data.cbgs import cbgs_indices


def _labels(rng, n=400, k=8):
    # class 0 in every sample (cars), class 3 in 5% of them, class 7 never
    labels = np.full((n, k), -1)
    labels[:, 0] = 0
    labels[rng.random(n) < 0.05, 1] = 3
    labels[rng.random(n) < 0.5, 2] = 5
    return labels


def test_every_present_class_gets_an_equal_share_of_the_epoch():
    labels = _labels(np.random.default_rng(0))
    picked = cbgs_indices(labels, num_classes=10, seed=0)
    memberships = sum(int((labels == c).any(1).sum()) for c in (0, 3, 5))
    # each present class is drawn memberships / num_classes times, from its own samples
    assert len(picked) == 3 * (memberships // 10)
    # the rare class is now in a far larger share of the epoch than of the dataset
    assert (labels[picked] == 3).any(1).mean() > 3 * (labels == 3).any(1).mean()
    assert not (labels[picked] == 7).any()


def test_cbgs_is_a_pure_function_of_labels_and_seed():
    labels = _labels(np.random.default_rng(1))
    a, b = cbgs_indices(labels, 10, seed=5), cbgs_indices(labels, 10, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cbgs_indices(labels, 10, seed=6))


def test_without_any_gt_the_epoch_is_the_dataset():
    np.testing.assert_array_equal(cbgs_indices(np.full((5, 3), -1), 10, 0), np.arange(5))


def test_the_dataset_serves_the_balanced_epoch(train_cache, synthetic_dataroot):
    from student.data.dataset import CacheDataset, DataConfig, open_cache
    from student.train_config import load_train_config
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML).student
    reader = open_cache(train_cache, cfg, dataroot=synthetic_dataroot)
    plain = CacheDataset(reader, synthetic_dataroot, cfg, DataConfig(), seed=0)
    balanced = CacheDataset(reader, synthetic_dataroot, cfg, DataConfig(cbgs=True), seed=0)
    labels = np.asarray(reader.column(GroundTruth, "labels"))
    assert balanced.indices == [int(i) for i in cbgs_indices(labels, len(cfg.classes), 0)]
    assert set(balanced.indices) <= set(plain.indices) and len(balanced) > len(plain)
    # a sample the epoch repeats gets its own augmentation each time
    repeated = next(idx for idx in balanced.indices if balanced.indices.count(idx) > 1)
    i, j = [p for p, idx in enumerate(balanced.indices) if idx == repeated][:2]
    assert not np.allclose(balanced[(0, i)]["bda"], balanced[(0, j)]["bda"])
    with pytest.raises(Exception, match="cbgs"):
        CacheDataset(reader.select([g for g in reader.groups if g != "gt"]), synthetic_dataroot, cfg,
                     DataConfig(cbgs=True), seed=0)
