"""Per-channel statistics of the teacher BEV features, for X-FD's optional standardisation.

The export stores, per sample, the sum and the sum of squares over the grid of each channel (two tiny
arrays, so a resumed or cluster export stays exact: no running state crosses samples or workers). The
student aggregates them over exactly the samples it trains on."""
from __future__ import annotations

import numpy as np

def feature_sums(bev_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) features -> the two per-channel sums of one sample (`LidarTeacherMaps.bev_features_sum`,
    `.bev_features_sqsum`), in float64."""
    f = np.asarray(bev_features, dtype=np.float64)
    return f.sum(axis=(1, 2)), np.square(f).sum(axis=(1, 2))


def channel_mean_std(sums: np.ndarray, sqsums: np.ndarray, cells_per_sample: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) per-sample sums -> per-channel mean and (population) standard deviation over all cells."""
    count = float(len(sums) * cells_per_sample)
    mean = np.asarray(sums, np.float64).sum(0) / count
    var = np.asarray(sqsums, np.float64).sum(0) / count - mean ** 2
    return mean, np.sqrt(np.maximum(var, 0.0))
