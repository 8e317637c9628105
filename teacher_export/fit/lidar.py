"""Fit the built-in CenterPoint on a split's LiDAR points and GT boxes.

The training targets and the loss are the student's (`student.targets.build_det_targets`,
`detection.det_loss.det_loss`): the same CenterPoint encoding the teacher's box coder decodes
(centre offset within the cell, gravity-centre z, log l/w/h, (sin, cos) yaw, velocity), so the one
definition serves both. The checkpoint is mmdet3d-shaped (`{'state_dict', 'meta'}`) and loads
strictly into `CenterPointTeacher(checkpoint=..., config=...)`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cache_schema.errors import UserInputError
from cache_schema.grid import ClassSetup
from detection.bev_aug import BevAugConfig, augment_boxes, sample_bev_aug
from detection.weights import save_atomic
from detection.det_loss import DetLossConfig, det_loss
from detection.det_targets import build_det_targets
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.open import open_split
from dataset_access.waymo.samples import WaymoSamples
from teacher_export.fit.options import (
    FitOptions, FitResult, loss_ends, make_optimizer, optimizer_step, recalibrate_batchnorm, shuffled_batches,
)
from teacher_export.teachers.centerpoint.model import CenterPoint, point_features
from teacher_export.teachers.centerpoint.teacher import resolve_config
from detection.voxelize import Voxels, hard_voxelize

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "centerpoint-pillar02-small"
PRECISE_BN_SAMPLES = 32


def start_heatmaps_at_prior(model: CenterPoint, std: float = 1e-3) -> None:
    """Make every heatmap start at sigmoid(init_bias) ~ 0.1 everywhere by shrinking the last heatmap
    conv's weights. The shared head's Kaiming init (mmdet3d's) gives logits of std ~5 at the start,
    and a fit of a few dozen steps would spend most of them undoing that."""
    for task in model.pts_bbox_head.task_heads:
        torch.nn.init.normal_(task.heatmap[-1].weight, std=std)


def _load_split(options: FitOptions) -> tuple[NuScenesSamples | WaymoSamples, list[int]]:
    samples = open_split(options.dataroot, options.version, options.split, num_sweeps=options.num_sweeps)
    n = len(samples) if options.limit is None else min(len(samples), options.limit)
    if n == 0:
        raise UserInputError(f"{options.dataroot}: split {options.split!r} has no samples")
    return samples, list(range(n))


def _batch_voxels(per_sample: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Voxels:
    """Per-sample `hard_voxelize` results -> one batch, the sample index prefixed to the coordinates."""
    return Voxels(torch.cat([v for v, _, _ in per_sample]),
                  torch.cat([torch.nn.functional.pad(c, (1, 0), value=i) for i, (_, c, _) in enumerate(per_sample)]),
                  torch.cat([n for _, _, n in per_sample]))


def fit_lidar_teacher(options: FitOptions) -> FitResult:
    """Train CenterPoint (`options.config`, default the small pillar02) on `options.split` and save it
    to `options.out`. Deterministic on CPU for a given seed."""
    name, model_config = resolve_config(options.config or DEFAULT_CONFIG)
    device = options.torch_device()
    samples, indices = _load_split(options)

    if model_config["pts_middle_encoder"].get("type") == "SparseEncoder" and device.type == "cpu":
        # spconv 2.3.8's backward asks torch.cuda for a stream even for CPU tensors (RuntimeError without
        # a GPU), so sparse convolutions train on CUDA only; their forward (export) runs on CPU.
        raise UserInputError(f"fit-teacher lidar --config {options.config}: a voxel CenterPoint trains only on a GPU "
                             "(spconv's backward needs CUDA); use --device cuda, or export with a trained checkpoint")
    torch.manual_seed(options.seed)
    model = CenterPoint.from_mmdet3d_config(model_config).to(device).train()
    start_heatmaps_at_prior(model)
    head = model.pts_bbox_head
    data_classes = getattr(samples, "class_setup", ClassSetup()).classes
    if sorted(head.class_names) != sorted(data_classes):
        raise UserInputError(f"CenterPoint config {name}: head classes {list(head.class_names)} are not the "
                             f"data's detection classes {list(data_classes)}")
    classes = ClassSetup(tuple(data_classes), tuple(tuple(t) for t in head.tasks))
    grid = model.grid
    train_cfg = (model_config.get("train_cfg") or {}).get("pts") or {}
    loss_cfg = DetLossConfig(
        gaussian_overlap=float(train_cfg.get("gaussian_overlap", 0.1)), min_radius=int(train_cfg.get("min_radius", 2)),
        code_weights=tuple(float(w) for w in train_cfg.get("code_weights", DetLossConfig.code_weights)))

    # Points are read once (the splits fitted here are small). Without augmentation every cloud is also
    # voxelized once instead of every step (voxelization cost as much as the network's forward pass).
    in_channels = point_features(model_config)
    v = model.voxel_layer
    points, voxels, boxes, labels = [], [], [], []
    for i in tqdm(indices, desc="read points", unit="sample", leave=False):
        s = samples[i]
        p = samples.load_points(s, options.num_sweeps)
        if p.shape[1] < in_channels:
            raise UserInputError(f"CenterPoint config {name}: wants {in_channels} point features, the data has {p.shape[1]}")
        p = torch.from_numpy(np.ascontiguousarray(p[:, :in_channels])).to(device)
        if options.augment:
            points.append(p)
        else:
            voxels.append(hard_voxelize(p, v.voxel_size, v.point_cloud_range, v.max_num_points, v.max_voxels))
        boxes.append(torch.from_numpy(s.gt_boxes.astype(np.float32)).to(device))
        labels.append(torch.from_numpy(s.gt_labels.astype(np.int64)).to(device))
    aug_rng = np.random.default_rng([options.seed, 1])

    def step_inputs(batch: list[int]) -> tuple[Voxels, list[torch.Tensor]]:
        """Voxels and GT boxes of a batch, each sample under its own random augmentation when fitting
        with `augment` (the student's `bev_aug` draw and box transform: one definition of both)."""
        if not options.augment:
            return _batch_voxels([voxels[b] for b in batch]), [boxes[b] for b in batch]
        per_sample, moved = [], []
        for b in batch:
            bda = sample_bev_aug(BevAugConfig(), aug_rng).to(device)
            p = points[b].clone()
            p[:, :3] = p[:, :3] @ bda[:3, :3].T + bda[:3, 3]
            per_sample.append(hard_voxelize(p, v.voxel_size, v.point_cloud_range, v.max_num_points, v.max_voxels))
            moved.append(augment_boxes(boxes[b], bda))
        return _batch_voxels(per_sample), moved
    if device.type == "cpu":
        # the 2D part only (the voxel variant's sparse 3D convs keep their own weight layout)
        for part in (model.pts_backbone, model.pts_neck, model.pts_bbox_head):
            part.to(memory_format=torch.channels_last)

    total = options.total_steps(len(indices))
    opt, sched = make_optimizer(model.parameters(), options, total)
    batches = shuffled_batches(len(indices), options.batch_size, options.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(total), desc=f"fit {name}", unit="step")
    for _ in bar:
        batch = next(batches)
        batch_voxels, batch_boxes = step_inputs(batch)
        out = model.forward_voxels(batch_voxels, len(batch))
        targets = build_det_targets(batch_boxes, [labels[b] for b in batch],
                                    grid, classes, loss_cfg.gaussian_overlap, loss_cfg.min_radius)
        terms = det_loss(out.head, targets, loss_cfg)
        losses.append(optimizer_step(terms["loss_det"], model, opt, sched, options.grad_clip))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", hm=f"{float(terms['det/heatmap']):.3f}",
                        reg=f"{float(terms['det/reg']):.3f}")
    # Precise BN over (up to) PRECISE_BN_SAMPLES samples, in training batches, un-augmented (as exported).
    chunks = [list(range(len(indices)))[i:i + options.batch_size]
              for i in range(0, min(len(indices), PRECISE_BN_SAMPLES), options.batch_size)]

    def plain_voxels(c: list[int]) -> Voxels:
        if not options.augment:
            return _batch_voxels([voxels[b] for b in c])
        return _batch_voxels([hard_voxelize(points[b], v.voxel_size, v.point_cloud_range, v.max_num_points,
                                            v.max_voxels) for b in c])

    recalibrate_batchnorm(model, [lambda c=c: model.forward_voxels(plain_voxels(c), len(c)) for c in chunks])
    seconds = time.perf_counter() - t0

    meta = {"x3kd_fit_teacher": {
        "config_name": name, "dataroot": str(options.dataroot), "version": options.version, "split": options.split,
        "samples": len(indices), "steps": total, "lr": options.lr, "batch_size": options.batch_size,
        "seed": options.seed, "num_sweeps": options.num_sweeps, "augment": options.augment,
        "final_loss": losses[-1] if losses else None},
        # mmdet3d keeps the config as text in meta; ours is the model dict as JSON
        "config": json.dumps(model_config)}
    out_path = Path(options.out)
    state = {k: t.detach().cpu().contiguous() for k, t in model.state_dict().items()}
    save_atomic({"state_dict": state, "meta": meta}, out_path)
    first, last = loss_ends(losses)
    log.info("LiDAR teacher fit: %d steps, loss %.3f -> %.3f, %s", total, first, last, out_path)
    return FitResult(str(out_path), total, seconds, first, last, losses,
                     {"lidar_teacher": name if name != "centerpoint" else "centerpoint-pillar02",
                      "lidar_config": str(Path(options.config).resolve()) if name == "centerpoint" else None})
