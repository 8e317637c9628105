"""The image-teacher protocol: camera images in, 2D instance detections (boxes, classes, scores, masks)
out, and the fixed-shape padding the cache stores them in (teachers are chosen by name in
`teachers.registry`; class tables are `teachers.image_classes`).

Every image teacher (the built-in torchvision Mask R-CNN, the optional detectron2 adapter) returns the
same `ImageTeacherOutput` per image, so the export and the cache never care which one ran. Masks are the
RoI mask head's 28×28 probabilities for the predicted class, not pasted into the image: pasting a mask is
cheap and happens when the student loads it (`detection.masks.paste_masks`), while full-resolution masks
would dominate the cache size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

MASK_SIZE = 28  # side of the RoI mask head's output in Mask R-CNN (torchvision and detectron2 alike)


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


class FrameworkImageTeacher:
    """What the image teachers that run another framework's model (detectron2, mmdet) share: a config
    file naming the model, weights or an explicit random init, and the config they record in the store's
    provenance (with the class names resolved)."""

    name: str
    config_example: str  # shown when no config file is given
    class_names: list[str]

    def _accept(self, config: Any) -> None:
        from cache_schema.errors import UserInputError

        if config.config_file is None:
            raise UserInputError(f"image teacher {self.name}: needs image_options.config_file ({self.config_example})")
        if config.checkpoint is None and not config.random_init:
            raise UserInputError(f"image teacher {self.name} has no weights: pass --image-checkpoint or --random-init")
        self.cfg = config
        self.max_instances = int(config.max_instances)

    @property
    def config(self) -> dict[str, Any]:
        d = asdict(self.cfg)
        d["class_names"] = list(self.class_names)
        return d
