"""Open a split of either dataset by its version: `waymo-v2` is a Waymo Open Dataset v2 Parquet root,
anything else a nuScenes version (v1.0-mini, v1.0-trainval, ...). Both hand out `SampleInfo`s and read
points, radar and images the same way, so the export, teacher fitting and evaluation take either."""
from __future__ import annotations

import os

from dataset_access.nuscenes.radar import DEFAULT_RADAR_SWEEPS
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.waymo.samples import WaymoSamples, is_waymo_version


def open_split(dataroot: str | os.PathLike, version: str, split: str, *, num_sweeps: int = 9,
               gt_filter: str = "training", num_radar_sweeps: int = DEFAULT_RADAR_SWEEPS,
               eval_config: str = "detection_cvpr_2019") -> NuScenesSamples | WaymoSamples:
    """The split's samples (`NuScenesSamples` or `WaymoSamples`, which has no radar)."""
    if is_waymo_version(version):
        return WaymoSamples(dataroot, split, num_sweeps=num_sweeps, gt_filter=gt_filter)
    return NuScenesSamples(dataroot, version, split, num_sweeps=num_sweeps, gt_filter=gt_filter,
                           num_radar_sweeps=num_radar_sweeps, eval_config=eval_config)
