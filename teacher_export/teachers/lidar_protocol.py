"""The LiDAR-teacher protocol: what a LiDAR teacher is to the exporter, a callable from point clouds to
dense BEV maps + boxes (teachers are chosen by name in `teachers.registry`).

The dense maps are what the cache stores for the student's X-FD / X-AT / X-OD losses:
- `bev_features (C, H, W)`: the teacher's neck output (CenterPoint pillar02: 384 x 128 x 128);
- `heatmaps (K, H, W)`: per-class sigmoid probabilities, K = 10, in `NUSCENES_CLASSES` order;
- `regression (10, H, W)`: the head's regression outputs in `REGRESSION_CHANNELS` order. CenterPoint
  predicts one regression set per task group (6 groups for nuScenes); at each cell we keep the set
  of the group whose best class probability is highest at that cell (first group on ties). The
  cache thus stores one 10-channel map instead of 60 channels, and where any object is likely the
  kept values are the ones that group would decode a box from. `dim_*` are the raw head outputs:
  log sizes when the head was trained with mmdet3d's `norm_bbox=True` (recorded in the config).
Plus the teacher's decoded `boxes (M, 9)` in the `cache_schema.boxes` convention, `scores (M,)` and
`labels (M,)` (indices into `NUSCENES_CLASSES`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cache_schema.grid import BevGrid
from cache_schema.layout import RegressionEncoding


@dataclass
class LidarTeacherOutput:
    """One sample's teacher outputs, all float32 numpy except `labels` (int64)."""

    bev_features: np.ndarray  # (C, H, W)
    heatmaps: np.ndarray      # (K, H, W) probabilities, NUSCENES_CLASSES order
    regression: np.ndarray    # (10, H, W) REGRESSION_CHANNELS order
    boxes: np.ndarray         # (M, 9) cache_schema.boxes convention
    scores: np.ndarray        # (M,)
    labels: np.ndarray        # (M,) indices into NUSCENES_CLASSES


@runtime_checkable
class LidarTeacher(Protocol):
    """A LiDAR teacher: `name` (registry name), `config` (JSON-able, recorded in the store),
    `bev_channels` (C of `bev_features`), `grid` (the BEV grid of every dense map),
    `regression_encoding` (how its regression map encodes boxes: the store records it)."""

    name: str
    config: dict[str, Any]
    bev_channels: int
    grid: BevGrid
    regression_encoding: RegressionEncoding

    def __call__(self, points: list[np.ndarray], decode: bool = True) -> list[LidarTeacherOutput]:
        """One (N_i, 5) float32 cloud (x, y, z, intensity, time lag) per sample -> one output each.
        With `decode=False` the boxes/scores/labels are left empty: the cache stores only the dense
        maps, and box decoding + NMS can cost more than the network on CPU."""
        ...
