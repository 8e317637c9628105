"""The streaming training dataset: cache samples + the dataroot's JPEGs -> augmented float32 tensors.

`CacheDataset` reads only the cache groups the enabled losses need, decodes the six camera images,
draws one image augmentation per camera and one BEV augmentation per sample, and applies the BEV
augmentation to everything that lives on the BEV grid (GT boxes, cached teacher maps). Augmentation is
drawn from a generator seeded by (seed, epoch, sample index), so a sample looks the same whichever
worker, rank or resumed run loads it. `collate` stacks samples into a `StudentBatch`.

The reader inside pickles to its URL, so the dataset works in fork and spawn DataLoader workers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cache_schema import CacheReader
from cache_schema.errors import UserInputError

from ..batch import StudentBatch, TeacherTargets
from detection.bev_aug import BevAugConfig, augment_boxes, augment_radar_points, sample_bev_aug
from ..config import StudentConfig, term_on
from detection.det_targets import build_det_targets, merge_det_targets
from ..image_aug import ImageAugConfig
from ..targets import depth_image_to_feature_grid, xis_targets
from cache_schema.views import (Calib, DepthTargets, GroundTruth, ImageTeacherDetections, LidarTeacherMaps,
                                RadarPoints, SampleMeta)

from .cameras import load_camera_inputs, previous_frame_inputs
from .cbgs import cbgs_indices

log = logging.getLogger(__name__)

FEATURE_STRIDE = 16


@dataclass(frozen=True)
class DataConfig:
    """Loading and augmentation settings (the `data:` block of a training config).

    image_aug.final_size is always the student's `image_size`; the value given here is ignored."""

    batch_size: int = 1  # per process
    num_workers: int = 0
    prefetch_factor: int = 2  # batches each worker loads ahead
    multiprocessing_context: str | None = None  # None = the platform default ("fork" on Linux), or "spawn"
    augment: bool = True  # False: the deterministic test-time image transform and no BEV augmentation
    # True: image_aug.resize_lim multiplies the resize that fits the image width to the final width
    # (one config for cameras of any resolution); False: absolute factors, as BEVDepth's configs.
    resize_relative: bool = False
    # Class-balanced grouping and sampling (BEVDepth's *_cbgs configs): an epoch is the expanded,
    # class-balanced sample list of `student.data.cbgs` (~4.5x the samples on nuScenes train)
    cbgs: bool = False
    image_aug: ImageAugConfig = field(default_factory=ImageAugConfig)
    bev_aug: BevAugConfig = field(default_factory=BevAugConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserInputError(f"config data.batch_size: must be >= 1, got {self.batch_size}")
        if self.prefetch_factor < 1:
            raise UserInputError(f"config data.prefetch_factor: must be >= 1, got {self.prefetch_factor}")
        if self.num_workers < 0:
            raise UserInputError(f"config data.num_workers: must be >= 0, got {self.num_workers}")
        if self.multiprocessing_context not in (None, "fork", "spawn", "forkserver"):
            raise UserInputError(f"config data.multiprocessing_context: {self.multiprocessing_context!r} is not "
                                 "fork, spawn or forkserver")


def needed_groups(cfg: StudentConfig) -> tuple[str, ...]:
    """The cache groups the student's input and its enabled loss terms read: meta always; calib for
    the cameras, radar for the radar student; gt only for the detection loss, so a KD-only run (the
    paper's radar setting) never reads a ground-truth array."""
    lc = cfg.losses
    groups = [SampleMeta.GROUP, RadarPoints.GROUP if cfg.modality == "radar" else Calib.GROUP]
    if term_on(lc.det):
        groups.append(GroundTruth.GROUP)
    if term_on(lc.ds):
        groups.append(DepthTargets.GROUP)
    if term_on(lc.xfd) or term_on(lc.xat) or term_on(lc.xod):
        groups.append(LidarTeacherMaps.GROUP)
    if term_on(lc.xis):
        groups.append(ImageTeacherDetections.GROUP)
    return tuple(groups)


# the loss terms that read each optional cache group: what to switch off when a store lacks it
_SWITCHES = {GroundTruth.GROUP: ("loss.det",), DepthTargets.GROUP: ("loss.ds",),
             LidarTeacherMaps.GROUP: ("loss.xfd", "loss.xat", "loss.xod"), ImageTeacherDetections.GROUP: ("loss.xis",)}


def open_cache(url: str, cfg: StudentConfig, indices: Sequence[int] | None = None,
               storage_options: dict | None = None, dataroot: str | Path | None = None) -> CacheReader:
    """Open the cache for training `cfg`: check grid, classes, cameras, teacher width and that the
    groups the losses need exist and every sample used is done; with `dataroot`, that its camera
    images are the ones the cache was exported from. Every refusal is a one-line UserInputError."""
    reader = CacheReader(url, storage_options=storage_options)
    cfg.check_store(reader.config, url)
    if dataroot is not None and cfg.modality == "camera":
        reader.check_dataroot(dataroot)
    groups = needed_groups(cfg)
    missing = [g for g in groups if g not in reader.config.groups]
    if missing:
        switches = sorted({s for g in missing for s in _SWITCHES.get(g, ())})
        raise UserInputError(f"{url}: this store has no {', '.join(missing)} group, which "
                             f"{' and '.join(switches) or 'the student'} read; set "
                             + " ".join(f"{s}.enabled=false" for s in switches)
                             + " (--set), or export with what they need")
    done = reader.done_mask
    used = np.arange(len(reader)) if indices is None else np.asarray(indices, dtype=np.int64)
    if used.size and (used.min() < 0 or used.max() >= len(reader)):
        raise UserInputError(f"{url}: sample indices outside 0..{len(reader) - 1}")
    not_done = used[~done[used]]
    if not_done.size:
        raise UserInputError(f"{url}: {not_done.size} of {used.size} samples are not exported yet (first: "
                             f"index {int(not_done[0])}); finish the export (it resumes) before training")
    return reader.select(groups)


def previous_key_frames(reader: CacheReader) -> np.ndarray:
    """For every sample of the store, the index of its previous key frame (`meta/prev_token`, schema
    1.3); the sample itself where that frame is the scene's first or not in this store (an export of part
    of a split). An older store is a one-line error."""
    try:
        tokens = reader.select([SampleMeta.GROUP]).column(SampleMeta, "prev_token")
    except KeyError:
        raise UserInputError(f"{reader.url}: a two-key-frame student (model.key_frames: 2) needs each sample's "
                             f"previous key frame, which exports of schema 1.3 record (this store is "
                             f"{reader.meta.schema_version}); re-export, or set model.key_frames: 1") from None
    own = {t: i for i, t in enumerate(reader.tokens) if t}
    return np.array([own.get(t, i) for i, t in enumerate(tokens)], dtype=np.int64)


class CacheDataset(Dataset):
    """Training samples of a cache: `dataset[i]` is a dict of float32 tensors for cache sample
    `indices[i]` (all samples by default), augmented with the draw of epoch `self.epoch`;
    `dataset[(epoch, i)]` names the epoch itself, which is how the trainer's sampler asks, so that
    persistent DataLoader workers (which hold copies of the dataset) need no epoch updates."""

    def __init__(self, reader: CacheReader, dataroot: str | Path | None, cfg: StudentConfig, data: DataConfig,
                 *, indices: Sequence[int] | None = None, seed: int = 0) -> None:
        self.reader = reader
        self.dataroot = str(dataroot) if dataroot is not None else None
        self.cfg = cfg
        self.data = data
        self.image_aug = replace(data.image_aug, final_size=tuple(cfg.image_size))
        self.indices = list(range(len(reader))) if indices is None else [int(i) for i in indices]
        self.seed = int(seed)
        if data.cbgs:
            if GroundTruth.GROUP not in reader.groups:
                raise UserInputError("config data.cbgs: class-balanced sampling needs the GT labels, which a KD-only "
                                     "run does not read; switch cbgs off or the det loss on")
            labels = np.asarray(reader.column(GroundTruth, "labels"))[self.indices]
            self.indices = [self.indices[p] for p in cbgs_indices(labels, len(cfg.classes), self.seed)]
        self.epoch = 0
        if cfg.modality == "camera" and (self.dataroot is None or not Path(self.dataroot).is_dir()):
            raise UserInputError(f"{self.dataroot}: dataroot not found (the camera student reads its JPEGs)")
        self.prev_index: np.ndarray | None = None
        if cfg.modality == "camera" and cfg.key_frames == 2:
            self.prev_index = previous_key_frames(reader)
            self.calib_reader = reader.select([SampleMeta.GROUP, Calib.GROUP])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        index = self.indices[i]
        s = self.reader[index]
        # by position, so that a sample CBGS repeats in an epoch gets a fresh draw each time
        rng = np.random.default_rng([self.seed, epoch, i])
        train = self.data.augment
        out: dict[str, Any] = {"index": index}
        if self.cfg.modality == "radar":
            bda = sample_bev_aug(self.data.bev_aug, rng, train=train)
            points = torch.from_numpy(np.asarray(s.radar.present(), dtype=np.float32))
            out.update(bda=bda, radar_points=augment_radar_points(points, bda))
        else:
            cams = load_camera_inputs(self.dataroot, s.calib, self.image_aug, rng, train, self.data.resize_relative)
            bda = sample_bev_aug(self.data.bev_aug, rng, train=train)
            out.update(images=cams.images, intrinsics=cams.intrinsics, cam2lidar=cams.cam2lidar, ida=cams.ida, bda=bda)
            if self.prev_index is not None:
                prev = self.calib_reader[int(self.prev_index[index])].calib
                out.update(previous_frame_inputs(self.dataroot, prev, s.calib, cams))
        if s.gt is not None:
            boxes, labels = s.gt.present()
            out.update(gt_boxes=augment_boxes(torch.from_numpy(np.asarray(boxes, dtype=np.float32)), bda),
                       gt_labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)))
        det = self.cfg.losses.det
        if term_on(det):
            # CenterPoint targets here, in the worker: their per-object loop is host work the step
            # would otherwise wait for (and sync the GPU for) every step.
            out["det_targets"] = build_det_targets([out["gt_boxes"]], [out["gt_labels"]], self.cfg.grid,
                                                   self.cfg.class_setup, det.gaussian_overlap, det.min_radius)
        if s.depth is not None:
            h, w = self.cfg.image_size
            depth = torch.from_numpy(np.asarray(s.depth.depth, dtype=np.float32))
            out["depth_targets"] = depth_image_to_feature_grid(
                depth, cams.ida, self.reader.config.depth_stride, (h // FEATURE_STRIDE, w // FEATURE_STRIDE),
                FEATURE_STRIDE)
        teacher = s.lidar_teacher
        if teacher is not None:
            # as cached: the step moves them into the augmented frame on its device, for the whole batch
            # (StudentBatch.with_teacher_in_augmented_frame)
            out.update({name: torch.from_numpy(np.asarray(m, dtype=np.float32)) for name, m in
                        (("bev_features", teacher.bev_features), ("heatmaps", teacher.heatmaps),
                         ("regression", teacher.regression))})
        inst = s.image_teacher
        if inst is not None:
            out.update(inst_boxes=torch.from_numpy(np.asarray(inst.boxes, dtype=np.float32)),
                       inst_labels=torch.from_numpy(np.asarray(inst.labels, dtype=np.int64)),
                       inst_scores=torch.from_numpy(np.asarray(inst.scores, dtype=np.float32)),
                       # Stored as probability x 255 in uint8.
                       inst_masks=torch.from_numpy(np.asarray(inst.masks, dtype=np.float32) / 255.0))
            xis = self.cfg.losses.xis
            if term_on(xis):
                # X-IS pseudo ground truth here, in the worker, like the detection targets: selecting
                # and pasting per camera image is host work with data-dependent shapes.
                out["xis_targets"] = xis_targets(out["inst_boxes"], out["inst_labels"], out["inst_scores"],
                                                 out["inst_masks"], cams.ida, tuple(self.cfg.image_size),
                                                 xis.score_threshold)
        return out


_TEACHER_KEYS = ("bev_features", "heatmaps", "regression", "inst_boxes", "inst_labels", "inst_scores", "inst_masks")
_LIDAR_TEACHER_KEYS = ("bev_features", "heatmaps", "regression")


def collate(samples: list[dict[str, Any]]) -> StudentBatch:
    """Stack `CacheDataset` samples into one `StudentBatch` (GT boxes stay per-sample lists)."""
    def stack(key):
        return torch.stack([s[key] for s in samples]) if key in samples[0] else None

    teacher = None
    if any(k in samples[0] for k in _TEACHER_KEYS):
        teacher = TeacherTargets(**{k: stack(k) for k in _TEACHER_KEYS},
                                 in_augmented_frame=not any(k in samples[0] for k in _LIDAR_TEACHER_KEYS))
    has_gt = "gt_boxes" in samples[0]
    return StudentBatch(
        images=stack("images"), intrinsics=stack("intrinsics"), cam2lidar=stack("cam2lidar"), ida=stack("ida"),
        prev_images=stack("prev_images"), prev_intrinsics=stack("prev_intrinsics"),
        prev_cam2lidar=stack("prev_cam2lidar"),
        bda=stack("bda"), gt_boxes=[s["gt_boxes"] for s in samples] if has_gt else [],
        gt_labels=[s["gt_labels"] for s in samples] if has_gt else [],
        radar_points=[s["radar_points"] for s in samples] if "radar_points" in samples[0] else None,
        xis_targets=[t for s in samples for t in s["xis_targets"]] if "xis_targets" in samples[0] else None,
        depth_targets=stack("depth_targets"), teacher=teacher, indices=[int(s["index"]) for s in samples],
        det_targets=merge_det_targets([s["det_targets"] for s in samples]) if "det_targets" in samples[0] else None)
