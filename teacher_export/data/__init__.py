"""Datasets: the nuScenes sample reader and the synthetic nuScenes-format generator."""
from teacher_export.data.nuscenes import (CAMERA_NAMES, CameraInfo, NuScenesSamples, SampleInfo, SweepInfo,
                                          load_points)

__all__ = ["CAMERA_NAMES", "CameraInfo", "NuScenesSamples", "SampleInfo", "SweepInfo", "load_points"]
