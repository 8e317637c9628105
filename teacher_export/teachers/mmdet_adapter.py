"""Optional image teacher: any mmdetection instance-segmentation model, run by mmdet itself.

For the models the built-in Mask R-CNN does not reimplement: Cascade Mask R-CNN, HTC, other backbones
(mmdet3d ships the nuImages configs: `nuimages/cascade-mask-rcnn_r50_fpn_1x_nuim.py`,
`nuimages/htc_r50_fpn_1x_nuim.py`, ...). The model is built from its config (no pretrained weights
are fetched), its weights are read as data (`weights_only`) and loaded strictly, and each image runs at
its own size, normalised and padded as the config's data preprocessor says (mmdet 2-style configs,
such as mmdet3d's nuImages ones, keep the normalisation in `img_norm_cfg`). The 28x28 mask
probabilities are taken where mmdet's last mask head receives them, before it pastes them into the
image (for Cascade and HTC: the stages' average, as mmdet computes it), so the cache gets exactly the
model's masks, not a re-sampled paste.

Classes: `class_names` as the other image teachers take it, by default the names the checkpoint's
metadata records, else "nuimages" for 10 classes and "coco" for 80.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_schema.errors import UserInputError
from detection.weights import read_torch_file, state_dict_in
from teacher_export.teachers.image_classes import adapter_class_names, label_table, select_instances
from teacher_export.teachers.image_protocol import FrameworkImageTeacher, ImageTeacherOutput
from teacher_export.teachers.maskrcnn import mmdet_class_names

_MISSING = "mmdet is not installed: install the mmdet3d extra (see README 'Optional extras') to use --image-teacher mmdet"
IMAGENET_RGB = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


@dataclass
class MmdetConfig:
    """config_file: an mmdet config (a file, or a path inside the configs mmdet3d or mmdet ship, e.g.
    nuimages/htc_r50_fpn_1x_nuim.py); checkpoint: its weights; class_names: "coco", "nuimages" or the
    model's classes in label order (mmdet has no background label), default: the checkpoint's recorded
    classes; class_map: model class -> nuScenes class."""

    config_file: str | None = None
    checkpoint: str | None = None
    random_init: bool = False
    class_names: str | list[str] | None = None
    class_map: dict[str, str] | None = None
    score_threshold: float = 0.3
    max_instances: int = 32
    device: str = "cpu"
    seed: int = 0


class MmdetTeacher(FrameworkImageTeacher):
    """An mmdet two-stage detector with a mask head as an `ImageTeacher`."""

    name = "mmdet"
    config_example = "an mmdet instance-segmentation config, e.g. nuimages/htc_r50_fpn_1x_nuim.py"

    def __init__(self, config: MmdetConfig) -> None:
        try:
            from mmengine.config import Config
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
        except ImportError as e:
            raise UserInputError(_MISSING) from e
        self._accept(config)
        register_all_modules()
        path = _config_path(config.config_file)
        try:
            full = Config.fromfile(path)
        except Exception as e:  # noqa: BLE001  (mmengine raises assorted types for a foreign file)
            raise UserInputError(f"mmdet config {config.config_file}: cannot be read ({str(e).splitlines()[0][:160]})") from None
        model_cfg = full.model
        if not (model_cfg.get("roi_head") or {}).get("mask_head"):
            raise UserInputError(f"mmdet config {config.config_file}: no mask head; the image teacher needs an "
                                 "instance-segmentation model")
        model_cfg.pop("pretrained", None)  # nothing is downloaded: the weights come from the checkpoint
        model_cfg.pop("_scope_", None)
        _drop_pretrained_init(model_cfg)
        self.mean, self.std, self.to_rgb_order, self.pad_divisor = _normalisation(full)

        meta: dict[str, Any] = {}
        state_dict = None
        if config.checkpoint is not None:
            raw = read_torch_file(config.checkpoint, "image checkpoint")
            if isinstance(raw, dict) and isinstance(raw.get("meta"), dict):
                meta = raw["meta"]
            state_dict = state_dict_in(raw, config.checkpoint, "image checkpoint")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = MODELS.build(model_cfg)
            if state_dict is None:
                self.model.init_weights()
        if state_dict is not None:
            try:
                self.model.load_state_dict(state_dict, strict=True)
            except RuntimeError as e:
                raise UserInputError(f"image checkpoint {config.checkpoint}: does not fit {config.config_file} "
                                     f"({' '.join(str(e).split())[:200]})") from None
        self.device = torch.device(config.device)
        self.model.eval().to(self.device)

        num_classes = _num_classes(model_cfg)
        names, default_map = adapter_class_names(config.class_names, num_classes, teacher="mmdet",
                                                 where=f"{config.config_file} (its mask head's num_classes)",
                                                 coco_names=_coco_names, recorded=mmdet_class_names(meta))
        self.class_names = names
        self.label_table = label_table(names, config.class_map or default_map, source="image teacher class table")
        heads = self.model.roi_head.mask_head
        self._mask_head = heads[-1] if isinstance(heads, torch.nn.ModuleList) else heads
        self._captured: list[torch.Tensor] = []
        original = self._mask_head.predict_by_feat

        def capture(mask_preds, results_list, batch_img_metas, rcnn_test_cfg, rescale=False, activate_map=False):
            for preds, results in zip(mask_preds, results_list):
                probs = preds if activate_map else preds.sigmoid()
                chosen = probs[:, 0] if probs.shape[1] == 1 else probs[torch.arange(len(results.labels)), results.labels]
                self._captured.append(chosen.float())
            return original(mask_preds, results_list, batch_img_metas, rcnn_test_cfg, rescale=rescale,
                            activate_map=activate_map)

        self._mask_head.predict_by_feat = capture

    def __call__(self, images: list[np.ndarray]) -> list[ImageTeacherOutput]:
        from mmdet.structures import DetDataSample

        outputs = []
        mean = torch.tensor(self.mean, device=self.device)[:, None, None]
        std = torch.tensor(self.std, device=self.device)[:, None, None]
        with torch.inference_mode():
            for i, img in enumerate(images):
                if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {img.shape} {img.dtype}")
                h, w = img.shape[:2]
                x = torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1).float()
                if not self.to_rgb_order:
                    x = x.flip(0)  # a model trained on BGR
                hp, wp = -(-h // self.pad_divisor) * self.pad_divisor, -(-w // self.pad_divisor) * self.pad_divisor
                x = torch.nn.functional.pad((x - mean) / std, (0, wp - w, 0, hp - h))[None]
                sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                                     batch_input_shape=(hp, wp), pad_shape=(hp, wp)))
                self._captured.clear()
                pred = self.model.predict(x, [sample], rescale=False)[0].pred_instances
                masks = self._captured[0] if self._captured else x.new_zeros((0, 28, 28))
                outputs.append(select_instances(
                    boxes=pred.bboxes.cpu().numpy(), model_labels=pred.labels.cpu().numpy(),
                    scores=pred.scores.cpu().numpy(), masks=masks.cpu().numpy(), table=self.label_table,
                    score_threshold=self.cfg.score_threshold, max_instances=self.max_instances))
        return outputs


def _config_path(name: str) -> str:
    """A config file on disk, else one of the configs mmdet3d or mmdet ship inside their packages."""
    if Path(name).is_file():
        return str(name)
    import importlib

    for package in ("mmdet3d", "mmdet"):
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        bundled = Path(module.__file__).parent / ".mim" / "configs" / name
        if bundled.is_file():
            return str(bundled)
    raise UserInputError(f"mmdet config {name}: neither a file nor a config shipped with mmdet3d or mmdet")


def _drop_pretrained_init(cfg: Any) -> None:
    """Remove every `init_cfg=dict(type='Pretrained', ...)`: those download ImageNet weights."""
    if isinstance(cfg, dict):
        init = cfg.get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            cfg.pop("init_cfg")
        for value in cfg.values():
            _drop_pretrained_init(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _drop_pretrained_init(value)


def _normalisation(full: Any) -> tuple[tuple[float, ...], tuple[float, ...], bool, int]:
    """(mean, std, whether the model reads RGB, pad divisor): mmdet 3's data_preprocessor, else mmdet 2's
    img_norm_cfg (mmdet3d's nuImages configs), else ImageNet RGB statistics and 32."""
    pre = full.model.get("data_preprocessor") or {}
    if pre.get("mean") is not None:
        return (tuple(pre["mean"]), tuple(pre["std"]), bool(pre.get("bgr_to_rgb", False)),
                int(pre.get("pad_size_divisor", 32) or 1))
    norm = full.get("img_norm_cfg")
    if norm:
        return tuple(norm["mean"]), tuple(norm["std"]), bool(norm.get("to_rgb", True)), 32
    return IMAGENET_RGB[0], IMAGENET_RGB[1], True, 32


def _num_classes(model_cfg: Any) -> int:
    head = model_cfg["roi_head"]["mask_head"]
    head = head[-1] if isinstance(head, (list, tuple)) else head
    return int(head["num_classes"])


def _coco_names() -> list[str]:
    from mmdet.datasets import CocoDataset

    return list(CocoDataset.METAINFO["classes"])
