"""`CenterPointTeacher`: the built-in LiDAR teacher (see `teacher_export.teachers.lidar_protocol`)."""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES, BevGrid
from cache_schema.layout import REGRESSION_HEADS
from cache_schema.layout import REGRESSION_CHANNELS, RegressionEncoding
from detection.centerpoint_coder import Detections, join_regression
from teacher_export.teachers.centerpoint.checkpoint import load_checkpoint
from teacher_export.teachers.centerpoint.configs import CONFIGS, get_config
from teacher_export.teachers.centerpoint.model import CenterPoint, point_features
from teacher_export.teachers.lidar_protocol import LidarTeacherOutput

log = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0


def output_classes(class_names: Sequence[str]) -> tuple[str, ...]:
    """The order a teacher with head classes `class_names` writes its heatmaps and labels in: nuScenes'
    detection classes in NUSCENES_CLASSES order (whatever the task grouping), any other class table
    (Waymo's) in the head's own order."""
    if sorted(class_names) == sorted(NUSCENES_CLASSES):
        return NUSCENES_CLASSES
    return tuple(class_names)


def class_permutation(class_names: Sequence[str]) -> list[int]:
    """Index into `class_names` for every class of `output_classes(class_names)` (reordering heatmaps)."""
    return [list(class_names).index(c) for c in output_classes(class_names)]


def assemble_outputs(bev: Tensor, head: Sequence[Mapping[str, Tensor]], detections: Sequence[Detections],
                     class_names: Sequence[str]) -> list[LidarTeacherOutput]:
    """Batched neck output + per-task head outputs + decoded boxes (labels indexing `class_names`)
    -> one `LidarTeacherOutput` per sample, dense maps reduced as `teacher_export.teachers.lidar_protocol` says."""
    perm = class_permutation(class_names)
    order = output_classes(class_names)
    probs = [h["heatmap"].float().sigmoid() for h in head]                      # per task (B, k_t, H, W)
    heatmaps = torch.cat(probs, 1)[:, perm]
    best_task = torch.stack([p.max(1).values for p in probs], 1).argmax(1)      # (B, H, W)
    regs = torch.stack([join_regression(h).float() for h in head], 1)  # (B, T, 10, H, W)
    idx = best_task[:, None, None].expand(-1, 1, regs.shape[2], -1, -1)
    regression = regs.gather(1, idx).squeeze(1)
    to_ours = torch.as_tensor([order.index(c) for c in class_names])
    out = []
    for i, det in enumerate(detections):
        out.append(LidarTeacherOutput(
            bev_features=bev[i].float().cpu().numpy(),
            heatmaps=heatmaps[i].cpu().numpy(),
            regression=regression[i].cpu().numpy(),
            boxes=det.boxes.float().cpu().numpy().reshape(-1, 9),
            scores=det.scores.float().cpu().numpy(),
            labels=to_ours[det.labels.cpu()].numpy().astype(np.int64)))
    return out


def resolve_config(config: str | Path | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(config, Mapping):
        return "centerpoint", json.loads(json.dumps(config))
    if str(config) in CONFIGS:
        return str(config), get_config(str(config))
    if isinstance(config, str) and config.lstrip().startswith("{"):
        try:
            return "centerpoint", json.loads(config)
        except json.JSONDecodeError as e:
            raise UserInputError(f"CenterPoint config: inline JSON is invalid ({e})") from None
    p = Path(config)
    if p.suffix == ".json" and p.is_file():
        try:
            return "centerpoint", json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise UserInputError(f"CenterPoint config {p}: not valid JSON ({e})") from None
    raise UserInputError(f"CenterPoint config {str(config)[:200]!r}: neither a known name ({', '.join(sorted(CONFIGS))}) "
                         "nor a .json file with an mmdet3d model dict")


def _shipped_configs_fitting(checkpoint: str | Path) -> list[str]:
    """Shipped config names whose model has exactly the checkpoint's keys and shapes (for the error
    that says which teacher a checkpoint belongs to). Voxel configs are tried only where spconv is."""
    from teacher_export.teachers.centerpoint.checkpoint import read_state_dict, strip_prefix

    try:
        sd = read_state_dict(checkpoint)
    except UserInputError:
        return []
    fits = []
    for name in sorted(CONFIGS):
        try:
            with torch.device("meta"):
                own = CenterPoint.from_mmdet3d_config(get_config(name)).state_dict()
        except (UserInputError, RuntimeError, NotImplementedError):
            continue
        keys = strip_prefix(sd, set(own))
        if set(keys) == set(own) and all(keys[k].shape == own[k].shape for k in own):
            fits.append(name)
    return fits


class CenterPointTeacher:
    """The plain-PyTorch CenterPoint as a `LidarTeacher`.

    `checkpoint`: an mmdet3d CenterPoint checkpoint matching `config` (a shipped config name such as
    'centerpoint-pillar02', an mmdet3d `model` dict, its JSON text, or a .json file holding one). Without a
    checkpoint the teacher refuses unless `random_init=True` (tests, demos), which seeds the
    initialisation so random-init teachers are reproducible.
    """

    def __init__(self, checkpoint: str | Path | None = None, config: str | Path | Mapping[str, Any] = "centerpoint-pillar02",
                 device: str | torch.device = "cpu", random_init: bool = False):
        self.name, model_config = resolve_config(config)
        if checkpoint is None and not random_init:
            raise UserInputError(f"LiDAR teacher {self.name}: no checkpoint given; pass an mmdet3d CenterPoint "
                                 "checkpoint file, or --random-init for a randomly initialised teacher")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = CenterPoint.from_mmdet3d_config(model_config)
        heads = model.pts_bbox_head.common_heads
        for k, channels in REGRESSION_HEADS:
            if heads.get(k, (None,))[0] != len(channels):
                raise UserInputError(f"LiDAR teacher {self.name}: head output '{k}' must have {len(channels)} channels "
                                     f"for the 10-channel regression map (config has {heads.get(k)})")
        class_permutation(model.pts_bbox_head.class_names)
        if checkpoint is not None:
            try:
                load_checkpoint(model, checkpoint)
            except UserInputError as e:
                fits = [n for n in _shipped_configs_fitting(checkpoint) if n != self.name]
                if fits:
                    raise UserInputError(f"{e}; it fits --lidar-teacher {' / '.join(fits)}") from None
                raise
            log.info("LiDAR teacher %s: loaded %s", self.name, checkpoint)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.grid: BevGrid = model.grid
        self.bev_channels: int = model.pts_neck.out_channels
        self.in_channels: int = point_features(model_config)
        # CenterPoint's coder: cell-fraction offsets, gravity-centre z, sin/cos, LiDAR-frame velocity;
        # log sizes when trained with mmdet3d's norm_bbox (all shipped configs)
        self.regression_encoding = RegressionEncoding(dims="log" if model.coder.norm_bbox else "metres")
        self.config: dict[str, Any] = {
            "name": self.name, "implementation": "x3kd plain-PyTorch CenterPoint",
            "model_config": model_config, "random_init": checkpoint is None,
            "heatmap_classes": list(output_classes(model.pts_bbox_head.class_names)),
            "regression_channels": list(REGRESSION_CHANNELS),
            "dim_is_log": model.coder.norm_bbox,
        }

    def __call__(self, points: list[np.ndarray], decode: bool = True) -> list[LidarTeacherOutput]:
        if len(points) == 0:
            return []
        tensors = []
        for i, p in enumerate(points):
            p = np.asarray(p)
            if p.ndim != 2 or p.shape[1] != self.in_channels:
                raise ValueError(f"sample {i}: expected points of shape (N, {self.in_channels}), got {p.shape}")
            tensors.append(torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)).to(self.device))
        with torch.inference_mode():
            out = self.model(tensors)
            dets = self.model.decode(out.head) if decode else [Detections.empty(self.device)] * len(tensors)
            return assemble_outputs(out.bev_features, out.head, dets, self.model.pts_bbox_head.class_names)
