"""What one training/eval step of the student consumes.

All geometry travels with the data (torchvision-detection style): the model never guesses how an image
was resized or how the BEV was rotated; it reads the matrices that were applied.

Frames: the BEV grid, the GT boxes and every teacher map live in the sample's LiDAR frame *after* the
BEV augmentation `bda` (x forward, y left, z up; see cache_schema/boxes.py). Pixel coordinates put the
centre of pixel column i at u = i.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

import torch

from cache_schema import BevGrid
from cache_schema.grid import ClassSetup
from detection.bev_aug import teacher_validity
from detection.centerpoint_coder import augment_teacher_maps, teacher_task_map, warp_task_map


@dataclass
class TeacherTargets:
    """Cached teacher outputs for a batch.

    The LiDAR teacher's maps (bev_features, heatmaps, regression) are in the batch's BEV-augmented frame
    when `in_augmented_frame`; the dataset yields them as cached (False), and `StudentBatch.
    with_teacher_in_augmented_frame` moves them, with `valid` and `reg_task`, for the whole batch on
    its device: the trainer does so as the batch arrives there, the criterion for any batch that comes
    unmoved. (Per sample in the loader workers, the 384-channel feature warp alone was a fifth of a
    BEVDepth sample's loader time; on the accelerator it is one batched grid_sample.)

    bev_features:  [B, C_T, H, W] LiDAR-teacher BEV feature.
    heatmaps:      [B, K, H, W] sigmoid class probabilities, classes in `StudentConfig.classes` order.
    regression:    [B, 10, H, W] reg_x, reg_y, height, log dim_l, log dim_w, log dim_h, rot_sin,
                   rot_cos, vel_x, vel_y, at each cell from the task group whose heatmap is highest there.
    inst_boxes:    [B, N, M, 4] image-teacher boxes, xyxy in ORIGINAL (un-augmented) image pixels.
    inst_labels:   [B, N, M] class index into `classes`, -1 = padding.
    inst_scores:   [B, N, M] detection scores.
    inst_masks:    [B, N, M, 28, 28] mask probabilities inside each box.
    valid:         [B, 1, H, W] 1 where the BEV-augmented teacher maps hold teacher data, 0 where the
                   augmentation brought in area outside the teacher's grid (`detection.bev_aug.teacher_validity`).
    reg_task:      [B, H, W] long, the task group each regression cell was written from, warped with the
                   regression (`detection.centerpoint_coder.warp_task_map`), so X-OD reads the student's matching group.
    Any field may be None when the cache lacks it; the loss that needs it must then be switched off.
    """

    bev_features: torch.Tensor | None = None
    heatmaps: torch.Tensor | None = None
    regression: torch.Tensor | None = None
    inst_boxes: torch.Tensor | None = None
    inst_labels: torch.Tensor | None = None
    inst_scores: torch.Tensor | None = None
    inst_masks: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    reg_task: torch.Tensor | None = None
    in_augmented_frame: bool = True


@dataclass
class StudentBatch:
    """One batch of B samples: N cameras each for the camera student, radar points for the radar
    student (the other sensor's fields are None).

    images:       [B, N, 3, H, W] normalised, augmented camera images.
    intrinsics:   [B, N, 3, 3] camera matrix of the AUGMENTED image (= ida @ K_original).
    cam2lidar:    [B, N, 4, 4] camera -> LiDAR frame of the sample (before BEV augmentation).
    ida:          [B, N, 3, 3] image augmentation: original pixel (u, v, 1) -> augmented pixel.
    bda:          [B, 4, 4] BEV augmentation: LiDAR frame -> augmented LiDAR frame.
    prev_images, prev_intrinsics, prev_cam2lidar: the previous key frame's cameras (a two-key-frame
                  student, `model.key_frames: 2`), augmented with the same `ida` per camera; prev_cam2lidar
                  maps them into THIS sample's LiDAR frame (ego motion compensated), so both frames'
                  frusta pool onto one grid.
    radar_points: B tensors [P_b, 7] (cache_schema.layout.RADAR_POINT_FEATURES), already BEV-augmented.
    gt_boxes:     B tensors [M_b, 9] in the box convention, already BEV-augmented ([] when the run reads
                  no GT: KD-only).
    gt_labels:    B tensors [M_b] class indices into `classes`.
    depth_targets:[B, N, h, w] LiDAR depth in metres on the stride-16 feature grid of the augmented
                  image (0 = no point there); see `student.targets.depth_image_to_feature_grid`.
    teacher:      cached teacher outputs, or None when training without distillation.
    det_targets:  CenterPoint targets per task group (`detection.det_targets.TaskTargets`), built by the
                  dataset workers from the augmented GT; required when the det loss is on.
    xis_targets:  X-IS pseudo ground truth per camera image (B * N dicts of boxes, labels, masks in the
                  augmented image; `student.targets.xis_targets`), built by the dataset workers; required
                  when X-IS is on.
    indices:      the cache sample index of each batch element (bookkeeping: logs, DDP checks).
    """

    images: torch.Tensor | None = None
    intrinsics: torch.Tensor | None = None
    cam2lidar: torch.Tensor | None = None
    ida: torch.Tensor | None = None
    bda: torch.Tensor | None = None
    prev_images: torch.Tensor | None = None
    prev_intrinsics: torch.Tensor | None = None
    prev_cam2lidar: torch.Tensor | None = None
    radar_points: list[torch.Tensor] | None = None
    gt_boxes: list[torch.Tensor] = field(default_factory=list)
    gt_labels: list[torch.Tensor] = field(default_factory=list)
    depth_targets: torch.Tensor | None = None
    teacher: TeacherTargets | None = None
    det_targets: list | None = None
    xis_targets: list[dict[str, torch.Tensor]] | None = None
    indices: list[int] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.bda.shape[0])

    def with_teacher_in_augmented_frame(self, grid: BevGrid, classes: ClassSetup) -> "StudentBatch":
        """This batch with its LiDAR-teacher maps warped by `bda` (bilinear features and heatmaps, nearest
        re-expressed regression), `valid` (where the warped maps hold teacher data) and `reg_task` (the
        task group each regression cell was written from, warped alike), all batched on the maps' device.
        The batch itself when there is nothing to move."""
        t = self.teacher
        if t is None or t.in_augmented_frame:
            return self
        maps = (t.bev_features, t.heatmaps, t.regression)
        if all(m is None for m in maps):
            return replace(self, teacher=replace(t, in_augmented_frame=True))
        bda = self.bda.to(next(m for m in maps if m is not None).device)
        features, heatmaps, regression = augment_teacher_maps(bda, grid, *maps)
        task = (warp_task_map(teacher_task_map(t.heatmaps, classes), bda, grid) if t.heatmaps is not None
                else None)
        return replace(self, teacher=replace(t, bev_features=features, heatmaps=heatmaps, regression=regression,
                                             valid=teacher_validity(bda, grid), reg_task=task,
                                             in_augmented_frame=True))

    def to(self, device: torch.device | str) -> "StudentBatch":
        """A copy with every tensor moved to `device`."""
        def mv(v):
            if isinstance(v, torch.Tensor):
                return v.to(device, non_blocking=True)
            if isinstance(v, list):
                return [mv(x) for x in v]
            if isinstance(v, dict):
                return {k: mv(x) for k, x in v.items()}
            if is_dataclass(v) and not isinstance(v, type):  # TeacherTargets, TaskTargets
                return replace(v, **{f.name: mv(getattr(v, f.name)) for f in fields(v)})
            return v
        return replace(self, **{f.name: mv(getattr(self, f.name)) for f in fields(self)})
