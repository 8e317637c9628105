"""Class-balanced grouping and sampling (CBGS, Zhu et al. 2019), as mmdet3d's `CBGSDataset` and
BEVDepth's `*_cbgs` configs use it: every class gets an equal share of the epoch.

For each class, the samples that contain it; a class present in a fraction f of those (sample, class)
memberships is drawn `1 / (num_classes * f)` times its sample count, with replacement, so rare classes
(bicycles, construction vehicles) are seen as often as cars. The expanded sample list is a pure function
of the labels and the seed: every DDP rank builds the same one, and an exact `--resume` finds it again.
"""
from __future__ import annotations

import numpy as np


def cbgs_indices(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Sample positions (into the rows of `labels`) of one class-balanced epoch.

    labels: (N, K) class index of each sample's boxes, -1 padded (the cache's `gt/labels`). Classes
    with no sample are left out (mmdet3d would divide by zero); their share is not redistributed, as
    there (the fraction is 1 / num_classes for every class)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero((labels == c).any(axis=1)) for c in range(num_classes)]
    total = sum(len(m) for m in members)
    if total == 0:
        return np.arange(len(labels))  # no GT at all (a KD-only cache): nothing to balance
    out = []
    for m in members:
        if len(m):
            ratio = (1.0 / num_classes) / (len(m) / total)
            out.append(rng.choice(m, int(len(m) * ratio)))
    return np.concatenate(out).astype(np.int64)
