"""Teachers by name, the one registry of both kinds, for the export config (`--lidar-teacher NAME`,
`--image-teacher NAME`).

A LiDAR entry is called as `factory(checkpoint=..., device=..., random_init=...)` and returns a
`LidarTeacher` (`lidar_protocol`); the mmdet3d adapter also takes `config=` (an mmdet3d config file).
An image teacher is built from its config dataclass's fields and returns an `ImageTeacher`
(`image_protocol`). Implementations are imported when chosen, so the optional ones (mmdet3d, mmdet, detectron2,
spconv) cost nothing until asked for, and no implementation imports this module back.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from cache_schema.errors import UserInputError
from detection.device import torch_device
from teacher_export.teachers.image_protocol import ImageTeacher
from teacher_export.teachers.lidar_protocol import LidarTeacher


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
    # the synthetic lab's teacher: +-25.6 m grid (64x64 cells of 0.8 m), 96 channels (fit-teacher --preset lab)
    "centerpoint-pillar02-lab": partial(_builtin, "centerpoint-pillar02-lab"),
    # Waymo's classes (vehicle; pedestrian, cyclist; sign), +-51.2 m in 64x64 cells of 1.6 m, for synthetic
    # Waymo data (fit-teacher lidar --version waymo-v2 --config centerpoint-pillar04-waymo-small)
    "centerpoint-pillar04-waymo-small": partial(_builtin, "centerpoint-pillar04-waymo-small"),
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


def build_image_teacher(name: str, **options: Any) -> ImageTeacher:
    """The image teacher called `name` ("maskrcnn", "mmdet" or "detectron2"), built from keyword options
    (the fields of `MaskRCNNConfig`, `MmdetConfig` or `Detectron2Config`)."""
    if name == "maskrcnn":
        from teacher_export.teachers.maskrcnn import MaskRCNNConfig as config_cls, MaskRCNNTeacher as teacher_cls
    elif name == "mmdet":
        from teacher_export.teachers.mmdet_adapter import MmdetConfig as config_cls, MmdetTeacher as teacher_cls
    elif name == "detectron2":
        from teacher_export.teachers.detectron2_adapter import (
            Detectron2Config as config_cls, Detectron2Teacher as teacher_cls,
        )
    else:
        raise UserInputError(f"--image-teacher: unknown image teacher {name!r}; choose maskrcnn, mmdet or detectron2")
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserInputError(f"image teacher {name}: unknown options {unknown}; known: {sorted(known)}")
    return teacher_cls(config_cls(**options))
