"""Optional image teacher: a detectron2 Mask R-CNN, for users who already have detectron2 and a model.

detectron2 is not installable from this project's package registry, so nothing here is tested in CI;
it is deliberately thin. It feeds images at their own size, calls `GeneralizedRCNN.inference(...,
do_postprocess=False)` (which returns boxes in the input's pixels and the 28×28 mask probabilities
before detectron2 pastes them) and maps classes with the same table as the built-in teacher.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES
from teacher_export.teachers.image_base import ImageTeacherOutput, label_table, select_instances

_MISSING = ("detectron2 is not installable from this package registry; install it yourself "
            "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) to use --image-teacher detectron2")


@dataclass
class Detectron2Config:
    """config_file: a detectron2 Mask R-CNN YAML config; checkpoint: its weights (.pth or .pkl);
    class_names: the model's classes in label order (detectron2 has no background label);
    class_map: model class → nuScenes class, default: names that are nuScenes classes map to themselves."""

    config_file: str | None = None
    checkpoint: str | None = None
    random_init: bool = False
    class_names: list[str] | None = None
    class_map: dict[str, str] | None = None
    score_threshold: float = 0.3
    max_instances: int = 32
    device: str = "cpu"


class Detectron2Teacher:
    """A detectron2 GeneralizedRCNN with a mask head as an `ImageTeacher`."""

    name = "detectron2"

    def __init__(self, config: Detectron2Config) -> None:
        try:
            import torch  # noqa: F401
            from detectron2.checkpoint import DetectionCheckpointer
            from detectron2.config import get_cfg
            from detectron2.modeling import build_model
        except ImportError as e:
            raise UserInputError(_MISSING) from e
        if config.config_file is None or not config.class_names:
            raise UserInputError("image teacher detectron2: needs config_file and class_names")
        if config.checkpoint is None and not config.random_init:
            raise UserInputError("image teacher detectron2 has no weights: pass --image-checkpoint or --random-init")
        self.cfg = config
        self.max_instances = int(config.max_instances)
        class_map = config.class_map or {c: c for c in config.class_names if c in NUSCENES_CLASSES}
        self.label_table = label_table(config.class_names, class_map, source="image teacher class table")

        d2cfg = get_cfg()
        try:
            d2cfg.merge_from_file(config.config_file)
        except Exception as e:  # yacs raises assorted errors for an unreadable or foreign config
            raise UserInputError(f"detectron2 config {config.config_file}: cannot be read ({e})") from e
        d2cfg.MODEL.DEVICE = config.device
        d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = config.score_threshold
        self.input_format = d2cfg.INPUT.FORMAT
        self.model = build_model(d2cfg).eval()
        if config.checkpoint is not None:
            try:
                DetectionCheckpointer(self.model).load(config.checkpoint)
            except Exception as e:
                raise UserInputError(f"image checkpoint {config.checkpoint}: detectron2 cannot load it ({e})") from e

    @property
    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def __call__(self, images: list[np.ndarray]) -> list[ImageTeacherOutput]:
        import torch

        with torch.inference_mode():
            inputs = []
            for img in images:
                chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
                if self.input_format == "BGR":
                    chw = chw.flip(0)
                inputs.append({"image": chw, "height": img.shape[0], "width": img.shape[1]})
            raw = self.model.inference(inputs, do_postprocess=False)
        return [select_instances(
            boxes=r.pred_boxes.tensor.cpu().numpy(), model_labels=r.pred_classes.cpu().numpy(),
            scores=r.scores.cpu().numpy(), masks=r.pred_masks[:, 0].cpu().numpy(), table=self.label_table,
            score_threshold=self.cfg.score_threshold, max_instances=self.max_instances) for r in raw]
