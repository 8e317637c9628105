"""An image teacher's class table: the model's own class names -> nuScenes detection classes, and the
selection of its detections that the cache keeps (mapped, above threshold, best first)."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES

from .image_protocol import MASK_SIZE, ImageTeacherOutput

MIN_BOX_SIZE = 1e-2  # pixels; torchvision's postprocess_detections removes smaller boxes

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


def label_table(model_classes: Sequence[str], class_map: Mapping[str, str], source: str,
                targets: Sequence[str] = NUSCENES_CLASSES) -> np.ndarray:
    """Array mapping the model's label index → index into `targets` (the dataset's detection classes,
    nuScenes' by default), -1 for classes to drop.

    `source` names the option the table came from, for the error message.
    """
    targets = tuple(targets)
    unknown_targets = sorted(set(class_map.values()) - set(targets))
    if unknown_targets:
        raise UserInputError(f"{source}: class map targets {unknown_targets} are not the detection classes "
                             f"{list(targets)}")
    unknown_sources = sorted(set(class_map) - set(model_classes))
    if unknown_sources:
        raise UserInputError(f"{source}: class map names {unknown_sources} are not among the model's classes")
    table = np.array([targets.index(class_map[c]) if c in class_map else -1 for c in model_classes],
                     dtype=np.int64)
    if (table < 0).all():
        raise UserInputError(f"{source}: no model class maps to a detection class; the teacher would detect nothing")
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


def adapter_class_names(given: str | Sequence[str] | None, num_classes: int, *, teacher: str, where: str,
                        coco_names: Callable[[], Sequence[str]], recorded: Sequence[str] | None = None
                        ) -> tuple[list[str], dict[str, str]]:
    """An external image teacher's class names in label order (no background label) and the default map to
    nuScenes classes. `given`: "coco", "nuimages" or the names; None takes `recorded` (what the weights
    file records) when it has `num_classes` names, else "coco" for 80 classes and "nuimages" for 10.
    `coco_names` gives the framework's own COCO names (only called for "coco"); `where` names the
    model's class count in errors (its config file and key)."""
    if given is None:
        given = list(recorded) if recorded and len(recorded) == num_classes else \
            {80: "coco", len(NUIMAGES_CLASSES): "nuimages"}.get(num_classes)
        if given is None:
            raise UserInputError(f"image teacher {teacher}: {where} has {num_classes} classes; name them with "
                                 "image_options.class_names")
    if given == "coco":
        names, default_map = [str(c) for c in coco_names()], dict(COCO_TO_NUSCENES)
    elif given == "nuimages":
        names, default_map = list(NUIMAGES_CLASSES), {c: c for c in NUIMAGES_CLASSES}
    elif isinstance(given, str):
        raise UserInputError(f"image teacher {teacher}: class_names {given!r} is not 'coco', 'nuimages' or a list")
    else:
        names = [str(c) for c in given]
        default_map = {c: c for c in names if c in NUSCENES_CLASSES}
    if len(names) != num_classes:
        raise UserInputError(f"image teacher {teacher}: {where} has {num_classes} classes but class_names has "
                             f"{len(names)}; name the model's classes in label order, or use 'coco' / 'nuimages'")
    return names, default_map
