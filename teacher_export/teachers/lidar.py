"""LiDAR teachers by name, for the export config (`--lidar-teacher NAME`).

Every entry is called as `factory(checkpoint=..., device=..., random_init=...)` and returns a
`LidarTeacher`; the mmdet3d adapter also takes `config=` (an mmdet3d config file).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from cache_schema.errors import UserInputError
from student.device import torch_device
from teacher_export.teachers.base import LidarTeacher


def _mmdet3d_centerpoint(**kwargs: Any) -> LidarTeacher:
    from teacher_export.teachers.mmdet3d_adapter import Mmdet3dCenterPointTeacher
    return Mmdet3dCenterPointTeacher(**kwargs)


def _builtin(default_config: str, **kwargs: Any) -> LidarTeacher:
    from teacher_export.teachers.centerpoint.teacher import CenterPointTeacher
    return CenterPointTeacher(config=kwargs.pop("config", None) or default_config, **kwargs)


LIDAR_TEACHERS: dict[str, Callable[..., LidarTeacher]] = {
    "centerpoint-pillar02": partial(_builtin, "centerpoint-pillar02"),
    # narrow channels, same grid: what `x3kd-cache fit-teacher lidar` fits for the demo
    "centerpoint-pillar02-small": partial(_builtin, "centerpoint-pillar02-small"),
    # the voxel teachers distillation papers use; sparse 3D convolutions through spconv (optional)
    "centerpoint-voxel01": partial(_builtin, "centerpoint-voxel01"),
    "centerpoint-voxel0075": partial(_builtin, "centerpoint-voxel0075"),
    "mmdet3d-centerpoint": _mmdet3d_centerpoint,
}


def build_lidar_teacher(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                        random_init: bool = False, **kwargs: Any) -> LidarTeacher:
    """The LiDAR teacher registered as `name`; a `UserInputError` for an unknown name."""
    if name not in LIDAR_TEACHERS:
        raise UserInputError(f"--lidar-teacher {name!r}: unknown; choose one of {', '.join(sorted(LIDAR_TEACHERS))}")
    torch_device(device)
    return LIDAR_TEACHERS[name](checkpoint=checkpoint, device=device, random_init=random_init, **kwargs)
