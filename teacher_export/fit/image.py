"""Fit the built-in Mask R-CNN on a split's camera images, with GT from the projected 3D boxes.

The label space is the dataset's detection classes behind a background class (nuScenes: `class_names` =
["__background__", *NUSCENES_CLASSES]; Waymo: its four), so the teacher's class map is the identity. The model is built
by `teacher_export.teachers.maskrcnn.build_maskrcnn` from the same `MaskRCNNConfig` the teacher will
get (`FitResult.teacher_options`), so the saved state_dict loads into it strictly.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES, ClassSetup
from detection.weights import save_atomic
from dataset_access.images import read_rgb
from dataset_access.samples import SampleInfo
from dataset_access.open import open_split
from teacher_export.fit.options import (
    FitOptions, FitResult, loss_ends, make_optimizer, optimizer_step, recalibrate_batchnorm, shuffled_batches,
)
from dataset_access.projection import CameraTargets, project_boxes
from teacher_export.teachers.maskrcnn import MaskRCNNConfig, build_maskrcnn

log = logging.getLogger(__name__)
PRECISE_BN_IMAGES = 16

CLASS_NAMES: list[str] = ["__background__", *NUSCENES_CLASSES]  # nuScenes' label space
# MaskRCNN keyword arguments that only matter in training (fewer proposals and RoIs: CPU speed).
TRAIN_KEYS = ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "box_batch_size_per_image",
              "rpn_batch_size_per_image")


@dataclass
class LabelledImage:
    """One training image: its file (relative to the dataroot) and its projected instances."""

    path: str
    targets: CameraTargets


def labelled_images(samples: Sequence[SampleInfo], indices: list[int]) -> list[LabelledImage]:
    """Every camera image of the chosen samples that shows at least one GT box."""
    out = []
    for i in tqdm(indices, desc="project GT", unit="sample", leave=False):
        s = samples[i]
        for cam in s.cameras:
            t = project_boxes(s.gt_boxes, s.gt_labels, s.lidar_to_camera(cam.name), s.intrinsics(cam.name),
                              cam.image_size)
            if len(t.labels):
                out.append(LabelledImage(s.image_path(cam.name), t))
    return out


def teacher_config(options: FitOptions, classes: tuple[str, ...] = NUSCENES_CLASSES
                   ) -> tuple[MaskRCNNConfig, dict[str, Any]]:
    """The teacher's MaskRCNNConfig from `options.image_options` (MaskRCNNConfig fields plus the
    training-only TRAIN_KEYS), with the label space of the dataset's `classes`; and the training-only
    arguments."""
    names = ["__background__", *classes]
    opts = dict(options.image_options)
    train = {k: int(opts.pop(k)) for k in TRAIN_KEYS if k in opts}
    for k in ("checkpoint", "random_init", "class_map", "num_classes", "device", "target_classes"):
        opts.pop(k, None)
    if "class_names" in opts and list(opts["class_names"]) != names:
        raise UserInputError(f"fit-teacher image: class_names must be {names} (the dataset's classes)")
    opts["class_names"] = names
    if tuple(classes) != NUSCENES_CLASSES:
        opts["target_classes"] = list(classes)
    try:
        cfg = MaskRCNNConfig(**opts)
    except TypeError as e:
        raise UserInputError(f"fit-teacher image: bad image option ({e})") from None
    return cfg, train


def fit_image_teacher(options: FitOptions) -> FitResult:
    """Fine-tune (from random init: no pretrained weights here) a Mask R-CNN on the split's camera
    images and save its state_dict to `options.out`. Deterministic on CPU for a given seed."""
    samples = open_split(options.dataroot, options.version, options.split, num_sweeps=0)
    cfg, train_kwargs = teacher_config(options, getattr(samples, "class_setup", ClassSetup()).classes)
    device = options.torch_device()
    n = len(samples) if options.limit is None else min(len(samples), options.limit)
    images = labelled_images(samples, list(range(n)))
    if not images:
        raise UserInputError(f"{options.dataroot}: no camera image of split {options.split!r} shows a GT box")

    torch.manual_seed(options.seed)
    model = build_maskrcnn(cfg, len(cfg.class_names), **train_kwargs).to(device).train()
    total = options.total_steps(len(images))
    opt, sched = make_optimizer([p for p in model.parameters() if p.requires_grad], options, total)
    batches = shuffled_batches(len(images), options.batch_size, options.seed)
    losses: list[float] = []
    root = Path(options.dataroot)
    t0 = time.perf_counter()
    bar = tqdm(range(total), desc=f"fit maskrcnn-{cfg.backbone}", unit="step")
    def load(item: LabelledImage) -> torch.Tensor:
        return torch.from_numpy(read_rgb(root / item.path)).to(device).permute(2, 0, 1).float() / 255.0

    for _ in bar:
        batch = [images[i] for i in next(batches)]
        tensors, targets = [], []
        for item in batch:
            tensors.append(load(item))
            t = item.targets
            targets.append({"boxes": torch.from_numpy(t.boxes).to(device),
                            "labels": torch.from_numpy(t.labels + 1).to(device),  # 0 is the background
                            "masks": torch.from_numpy(t.masks).to(device)})
        if cfg.min_size is None:
            # each image at its own size, as the teacher runs it
            h, w = tensors[0].shape[1:]
            model.transform.min_size = (min(h, w),)
            model.transform.max_size = max(h, w)
        terms = model(tensors, targets)
        losses.append(optimizer_step(sum(terms.values()), model, opt, sched, options.grad_clip))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", mask=f"{terms['loss_mask'].item():.3f}",
                        cls=f"{terms['loss_classifier'].item():.3f}")
    # Precise BN: only the backbone has BatchNorm (the FPN and the heads have none).
    step = options.batch_size
    recalibrate_batchnorm(model.backbone, [
        lambda c=images[i:i + step]: model.backbone(model.transform([load(item) for item in c])[0].tensors)
        for i in range(0, min(len(images), PRECISE_BN_IMAGES), step)])
    seconds = time.perf_counter() - t0

    out_path = Path(options.out)
    save_atomic({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out_path)
    first, last = loss_ends(losses)
    log.info("image teacher fit: %d steps on %d images, loss %.3f -> %.3f, %s", total, len(images), first, last,
             out_path)
    teacher_options = {k: v for k, v in asdict(cfg).items()
                       if k not in ("checkpoint", "random_init", "device", "seed") and v != getattr(MaskRCNNConfig, k, None)}
    teacher_options["class_names"] = list(cfg.class_names)
    return FitResult(str(out_path), total, seconds, first, last, losses, teacher_options)
