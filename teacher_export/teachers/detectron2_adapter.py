"""Optional image teacher: a detectron2 Mask R-CNN, for users who already have detectron2 and a model.

detectron2 is not on the package registry: users build it from source (its install guide); this
project's CI installs a wheel built that way (`../shared/wheels`) so the adapter is tested. It is
deliberately thin: it feeds images at their own size, calls `GeneralizedRCNN.inference(...,
do_postprocess=False)` (which returns boxes in the input's pixels and the 28×28 mask probabilities
before detectron2 pastes them) and maps classes with the same table as the built-in teacher.

The model's label space must be named: `class_names` is "coco" (detectron2's own 80 COCO thing
classes, from its dataset metadata), "nuimages" (the ten nuImages classes) or the model's class names in
label order; by default it is taken from the config's `MODEL.ROI_HEADS.NUM_CLASSES` (80 → coco, 10 →
nuimages). A class list whose length differs from the model's is refused in one line.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache_schema.errors import UserInputError
from teacher_export.teachers.image_classes import adapter_class_names, label_table, select_instances
from teacher_export.teachers.image_protocol import FrameworkImageTeacher, ImageTeacherOutput

_MISSING = ("detectron2 is not installed and is not on the package registry: build it from source "
            "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) to use --image-teacher detectron2")


@dataclass
class Detectron2Config:
    """config_file: a detectron2 Mask R-CNN YAML config, a file or a name in detectron2's model zoo
    (e.g. COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml, shipped inside detectron2);
    checkpoint: its weights (.pth or .pkl); class_names: "coco", "nuimages" or the model's classes in
    label order (detectron2 has no background label), default from MODEL.ROI_HEADS.NUM_CLASSES;
    class_map: model class → nuScenes class, default: COCO's table for "coco", else names that are
    nuScenes classes map to themselves."""

    config_file: str | None = None
    checkpoint: str | None = None
    random_init: bool = False
    class_names: str | list[str] | None = None
    class_map: dict[str, str] | None = None
    score_threshold: float = 0.3
    max_instances: int = 32
    device: str = "cpu"


class Detectron2Teacher(FrameworkImageTeacher):
    """A detectron2 GeneralizedRCNN with a mask head as an `ImageTeacher`."""

    name = "detectron2"
    config_example = "a detectron2 Mask R-CNN YAML, e.g. COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"

    def __init__(self, config: Detectron2Config) -> None:
        try:
            import torch  # noqa: F401
            from detectron2.checkpoint import DetectionCheckpointer
            from detectron2.config import get_cfg
            from detectron2.modeling import build_model
        except ImportError as e:
            raise UserInputError(_MISSING) from e
        self._accept(config)
        config_path = _config_path(config.config_file)
        d2cfg = get_cfg()
        try:
            d2cfg.merge_from_file(config_path)
        except Exception as e:  # yacs raises assorted errors for an unreadable or foreign config
            raise UserInputError(f"detectron2 config {config.config_file}: cannot be read "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        if not d2cfg.MODEL.MASK_ON:
            raise UserInputError(f"detectron2 config {config.config_file}: MODEL.MASK_ON is false; the image teacher "
                                 "needs a Mask R-CNN (instance masks)")
        names, default_map = adapter_class_names(
            config.class_names, int(d2cfg.MODEL.ROI_HEADS.NUM_CLASSES), teacher="detectron2",
            where=f"{config.config_file} (MODEL.ROI_HEADS.NUM_CLASSES)", coco_names=_coco_names)
        self.class_names = names
        self.label_table = label_table(names, config.class_map or default_map, source="image teacher class table")
        d2cfg.MODEL.DEVICE = config.device
        d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = config.score_threshold
        self.input_format = d2cfg.INPUT.FORMAT
        self.model = build_model(d2cfg).eval()
        if config.checkpoint is not None:
            try:
                DetectionCheckpointer(self.model).load(config.checkpoint)
            except Exception as e:
                raise UserInputError(f"image checkpoint {config.checkpoint}: detectron2 cannot load it ({e})") from e

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


def _config_path(name: str) -> str:
    """A config file on disk, else a name in detectron2's bundled model zoo."""
    from pathlib import Path

    if Path(name).is_file():
        return str(name)
    import detectron2

    # detectron2 ships its model-zoo configs inside the package (detectron2.model_zoo itself needs
    # pkg_resources, which current setuptools no longer provides, so the file is found directly).
    bundled = Path(detectron2.__file__).parent / "model_zoo" / "configs" / name
    if not bundled.is_file():
        raise UserInputError(f"detectron2 config {name}: neither a file nor a config in detectron2's model zoo")
    return str(bundled)


def _coco_names() -> list[str]:
    from detectron2.data import MetadataCatalog
    import detectron2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)

    return list(MetadataCatalog.get("coco_2017_train").thing_classes)
