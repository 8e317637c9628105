"""The image-teacher protocol: camera images in, 2D instance detections (boxes, classes, scores, masks) out.

Every image teacher (the built-in torchvision Mask R-CNN, the optional detectron2 adapter) returns the
same `ImageTeacherOutput` per image, so the export and the cache never care which one ran. Masks are the
RoI mask head's 28×28 probabilities for the predicted class, not pasted into the image: pasting a mask is
cheap and happens when the student loads it (`student.masks.paste_masks`), while full-resolution masks
would dominate the cache size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES

log = logging.getLogger(__name__)

MASK_SIZE = 28  # side of the RoI mask head's output in Mask R-CNN (torchvision and detectron2 alike)
MIN_BOX_SIZE = 1e-2  # pixels; torchvision's postprocess_detections removes smaller boxes


@dataclass
class ImageTeacherOutput:
    """Detections of one image, sorted by decreasing score, at most `max_instances` of them.

    boxes: (M, 4) float32, x1 y1 x2 y2 in the input image's pixels (continuous coordinates: the image
        spans [0, W] × [0, H]); labels: (M,) int64 indices into `cache_schema.grid.NUSCENES_CLASSES`;
    scores: (M,) float32; masks: (M, 28, 28) float32 probabilities inside each box.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class PaddedInstances:
    """Detections of several images (e.g. the 6 cameras of a sample) padded to one fixed count K.

    This is the fixed-shape form the cache stores: rows at index >= counts[i] are padding, with
    label -1 and zeros elsewhere, so that a reader can ignore them without knowing `counts`.
    boxes (C, K, 4) float32, labels (C, K) int64, scores (C, K) float32, masks (C, K, 28, 28) float32,
    counts (C,) int64.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    counts: np.ndarray

    def unpad(self) -> list[ImageTeacherOutput]:
        return [ImageTeacherOutput(self.boxes[i, :n], self.labels[i, :n], self.scores[i, :n], self.masks[i, :n])
                for i, n in enumerate(self.counts.tolist())]


def pad_instances(outputs: Sequence[ImageTeacherOutput], max_instances: int) -> PaddedInstances:
    """Stack per-image detections into fixed-size arrays of `max_instances` rows per image."""
    c, k = len(outputs), int(max_instances)
    padded = PaddedInstances(
        boxes=np.zeros((c, k, 4), np.float32),
        labels=np.full((c, k), -1, np.int64),
        scores=np.zeros((c, k), np.float32),
        masks=np.zeros((c, k, MASK_SIZE, MASK_SIZE), np.float32),
        counts=np.zeros((c,), np.int64),
    )
    for i, out in enumerate(outputs):
        if len(out) > k:
            # Silently dropping detections would make the cache disagree with the teacher's config.
            raise ValueError(f"image {i} has {len(out)} detections, more than max_instances={k}")
        n = len(out)
        padded.boxes[i, :n] = out.boxes
        padded.labels[i, :n] = out.labels
        padded.scores[i, :n] = out.scores
        padded.masks[i, :n] = out.masks
        padded.counts[i] = n
    return padded


@runtime_checkable
class ImageTeacher(Protocol):
    """A 2D instance-segmentation teacher.

    `name` identifies the teacher in the store's metadata, `config` is the JSON-able dict that (with the
    checkpoint's sha256) reproduces it, `max_instances` bounds the detections per image. Calling it runs
    one batch under `torch.inference_mode()` on the teacher's device.
    """

    name: str
    max_instances: int

    @property
    def config(self) -> dict[str, Any]: ...

    def __call__(self, images: list[np.ndarray]) -> list[ImageTeacherOutput]: ...


# --- the class table: the teacher's own class names → nuScenes detection classes -------------------

# COCO has no construction_vehicle, trailer, barrier or traffic_cone: a COCO-trained teacher never
# produces those classes, and the student's X-IS loss simply sees no pseudo-labels for them. Train (or
# download yourself) a nuImages Mask R-CNN to cover all ten.
COCO_TO_NUSCENES: dict[str, str] = {
    "car": "car", "truck": "truck", "bus": "bus", "motorcycle": "motorcycle", "bicycle": "bicycle",
    "person": "pedestrian",
}
# nuImages' ten detection classes, in the order mmdetection's nuImages Mask R-CNN configs use; the names
# are the nuScenes detection names already, so the table is the identity.
NUIMAGES_CLASSES: tuple[str, ...] = (
    "car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
    "traffic_cone", "barrier",
)
NUIMAGES_TO_NUSCENES: dict[str, str] = {c: c for c in NUIMAGES_CLASSES}


def label_table(model_classes: Sequence[str], class_map: Mapping[str, str], source: str) -> np.ndarray:
    """Array mapping the model's label index → index into NUSCENES_CLASSES, -1 for classes to drop.

    `source` names the option the table came from, for the error message.
    """
    unknown_targets = sorted(set(class_map.values()) - set(NUSCENES_CLASSES))
    if unknown_targets:
        raise UserInputError(f"{source}: class map targets {unknown_targets} are not nuScenes detection classes "
                             f"{list(NUSCENES_CLASSES)}")
    unknown_sources = sorted(set(class_map) - set(model_classes))
    if unknown_sources:
        raise UserInputError(f"{source}: class map names {unknown_sources} are not among the model's classes")
    table = np.array([NUSCENES_CLASSES.index(class_map[c]) if c in class_map else -1 for c in model_classes],
                     dtype=np.int64)
    if (table < 0).all():
        raise UserInputError(f"{source}: no model class maps to a nuScenes class; the teacher would detect nothing")
    return table


def select_instances(boxes: np.ndarray, model_labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
                     table: np.ndarray, score_threshold: float, max_instances: int) -> ImageTeacherOutput:
    """Map the model's labels to nuScenes classes, drop unmapped ones, those under the threshold and
    boxes narrower or lower than `MIN_BOX_SIZE` pixels (torchvision's detector drops those itself;
    detectron2 does not, and X-IS cannot train on an empty pseudo-box), sort by score (stable, so ties
    keep the model's order) and keep the best `max_instances`."""
    labels = table[model_labels]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    sized = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIZE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIZE)
    keep = np.flatnonzero((labels >= 0) & (scores >= score_threshold) & sized)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_instances]
    return ImageTeacherOutput(
        boxes=boxes[keep].astype(np.float32).reshape(-1, 4),
        labels=labels[keep].astype(np.int64),
        scores=scores[keep].astype(np.float32),
        masks=masks[keep].astype(np.float32).reshape(-1, MASK_SIZE, MASK_SIZE),
    )


def build_image_teacher(name: str, **options: Any) -> ImageTeacher:
    """The image teacher called `name` ("maskrcnn" or "detectron2"), built from keyword options
    (the fields of `MaskRCNNConfig` or `Detectron2Config`)."""
    if name == "maskrcnn":
        from teacher_export.teachers.maskrcnn import MaskRCNNConfig as config_cls, MaskRCNNTeacher as teacher_cls
    elif name == "detectron2":
        from teacher_export.teachers.detectron2_adapter import (
            Detectron2Config as config_cls, Detectron2Teacher as teacher_cls,
        )
    else:
        raise UserInputError(f"--image-teacher: unknown image teacher {name!r}; choose maskrcnn or detectron2")
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserInputError(f"image teacher {name}: unknown options {unknown}; known: {sorted(known)}")
    return teacher_cls(config_cls(**options))
