"""The built-in image teacher: torchvision's Mask R-CNN ResNet-FPN, weights from a local file.

With the default ResNet-50 backbone the model is torchvision's own (`maskrcnn_resnet50_fpn`), so
torchvision's COCO checkpoint file (`maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth`) or any checkpoint trained
with torchvision's detection recipe (e.g. on nuImages, 10 classes + background) loads unchanged.
ResNet-34/18 backbones (`backbone` option, torchvision's `resnet_fpn_backbone` + `MaskRCNN`) are for
teachers fitted on a CPU (`x3kd-cache fit-teacher image`, the demo). Nothing is ever downloaded.

mmdetection's Mask R-CNN ResNet-50-FPN checkpoints (mmdet3d's nuImages ones, `configs/nuimages/
mask-rcnn_r50_fpn_*_nuim.py`, and any mmdet `mask-rcnn_r50_fpn` file) load as they are: their names are
mapped onto torchvision's, mmdet's background-last class layout is turned background-first (class names
from the file's metadata), and the model then runs as mmdet does (`flavor: mmdet`): anchors without
torchvision's rounding, box deltas clamped on both sides, RoIAlign with `aligned=True` and adaptive
sampling on the level mmdet's `finest_scale` rule picks. Parity with mmdet itself is tested where the
`mmdet3d` extra is installed. Not covered: caffe-style ResNets (`mask-rcnn_r50_caffe_fpn`: the stride on
the 1x1 conv, BGR input), and Cascade / HTC heads (use `--image-teacher mmdet`).

We run the model's parts ourselves (transform → backbone → RPN → RoI heads) instead of `model(images)`
because torchvision's final `transform.postprocess` pastes every mask into a full-resolution image; the
RoI heads' output in eval mode is exactly what the cache keeps: boxes in the resized image, and the
28×28 sigmoid mask of each detection's predicted class.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN, MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES
from cache_schema.identity import file_sha256
from detection.weights import read_torch_file, state_dict_in
from detection.resnet import build_resnet
from teacher_export.teachers.image_classes import (COCO_TO_NUSCENES, NUIMAGES_CLASSES, NUIMAGES_TO_NUSCENES,
                                                   label_table, select_instances)
from teacher_export.teachers.image_protocol import ImageTeacherOutput

log = logging.getLogger(__name__)

# torchvision's COCO label space: 91 names (background and the 11 unused "N/A" ids included), read from
# the weights enum's metadata, which is part of torchvision and needs no download.
COCO_CLASSES: tuple[str, ...] = tuple(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
CLASS_PRESETS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "coco": (COCO_CLASSES, COCO_TO_NUSCENES),
    "nuimages": (("__background__",) + NUIMAGES_CLASSES, NUIMAGES_TO_NUSCENES),
}
_NUM_CLASSES_KEY = "roi_heads.box_predictor.cls_score.weight"
BACKBONES: tuple[str, ...] = ("resnet50", "resnet34", "resnet18")


@dataclass
class MaskRCNNConfig:
    """Options of the torchvision Mask R-CNN teacher (all JSON-able; stored in the cache's metadata).

    class_names: "coco", "nuimages" or the model's own class names, index 0 being the background.
    class_map: model class name → detection class of `target_classes`; None takes the preset's table
        (own class names: those that are target classes map to themselves). Detections of classes
        missing from the table are dropped.
    target_classes: the dataset's detection classes the labels index (the store's class table); None:
        nuScenes' ten. A Waymo export sets it to Waymo's.
    num_classes: None reads it from the checkpoint (random init: from `class_names`); when given it must
        agree with the checkpoint.
    min_size / max_size: torchvision's resize rule (shorter side to min_size, longer side at most
        max_size); None runs each image at its own size.
    detections_per_img: how many detections the RoI heads keep before class mapping drops some; keep
        it well above max_instances when many of the model's classes are unmapped (COCO).
    backbone: "resnet50" (torchvision's maskrcnn_resnet50_fpn, its parameter names), "resnet34" or
        "resnet18" (lighter, for teachers fitted on a CPU); the checkpoint must have been made with it.
    anchor_sizes: RPN anchor size per FPN level (5 values, pixels of the resized image); None keeps
        torchvision's (32, 64, 128, 256, 512). Smaller anchors suit small images (the demo's 352x198).
    rpn_pre_nms_top_n / rpn_post_nms_top_n: RPN proposals per FPN level before NMS / per image after
        (torchvision's test-time 1000 / 1000); fewer are faster.
    fpn_channels: width of the FPN, the RPN and the mask head convs, and of the box head's MLP
        (resnet18/34 only; resnet50 keeps torchvision's 256 / 1024). 256 is torchvision's; 64 makes a
        CPU training step several times cheaper.
    base_width: resnet18/34 only: channels of the backbone's stem and first stage (doubling per
        stage); 64 is torchvision's, narrower is the same network cheaper and smaller (the synthetic
        lab's teacher: 24, a checkpoint of a few MB).
    flavor: "torchvision" or "mmdet" (anchors, delta clamping and RoIAlign as mmdet runs them, for
        mmdet-trained weights); None: "mmdet" for an mmdet checkpoint, else "torchvision".
    """

    checkpoint: str | None = None
    random_init: bool = False
    seed: int = 0
    class_names: str | list[str] = "coco"
    class_map: dict[str, str] | None = None
    target_classes: list[str] | None = None
    num_classes: int | None = None
    score_threshold: float = 0.3
    nms_threshold: float = 0.5
    max_instances: int = 32
    detections_per_img: int = 100
    min_size: int | None = None
    max_size: int | None = None
    device: str = "cpu"
    backbone: str = "resnet50"
    anchor_sizes: list[int] | None = None
    rpn_pre_nms_top_n: int = 1000
    rpn_post_nms_top_n: int = 1000
    fpn_channels: int = 256
    base_width: int = 64
    flavor: str | None = None


# ---------------------------------------------------------------------------------- mmdet checkpoints

MMDET_KEY = "roi_head.bbox_head.fc_cls.weight"


def is_mmdet_maskrcnn(state_dict: dict[str, torch.Tensor]) -> bool:
    return MMDET_KEY in state_dict and "backbone.conv1.weight" in state_dict


def mmdet_meta(raw: Any) -> dict[str, Any]:
    """What an mmdet checkpoint records beside its weights (mmengine's `meta`: dataset_meta, cfg)."""
    meta = raw.get("meta") if isinstance(raw, dict) else None
    return meta if isinstance(meta, dict) else {}


def mmdet_class_names(meta: dict[str, Any]) -> tuple[str, ...] | None:
    """The class names an mmdet checkpoint's meta records (mmengine's dataset_meta.classes, mmdet 2's
    CLASSES), if any."""
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    return tuple(str(c) for c in classes) if classes else None


def check_mmdet_flavour(meta: dict[str, Any], path: str | Path) -> None:
    """Refuse what the weights alone cannot tell apart: a caffe-style ResNet has the same parameter
    names and shapes as a pytorch-style one but strides its 1x1 convs and reads BGR images."""
    cfg = str(meta.get("cfg") or meta.get("config") or "")
    if "style='caffe'" in cfg.replace('"', "'").replace(" ", ""):
        raise UserInputError(f"image checkpoint {path}: an mmdet caffe-style ResNet (style='caffe'); the built-in "
                             "Mask R-CNN runs pytorch-style ones: use --image-teacher mmdet with its config")


def from_mmdet(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmdet Mask R-CNN R50-FPN state_dict under torchvision's names and class layout: mmdet's
    classifier puts the background last and its box and mask layers have no background row;
    torchvision's has it first, everywhere."""
    out: dict[str, torch.Tensor] = {}
    renames = [("backbone.", "backbone.body."), ("neck.lateral_convs.", "backbone.fpn.inner_blocks."),
               ("neck.fpn_convs.", "backbone.fpn.layer_blocks."), ("rpn_head.rpn_conv.", "rpn.head.conv.0.0."),
               ("rpn_head.rpn_cls.", "rpn.head.cls_logits."), ("rpn_head.rpn_reg.", "rpn.head.bbox_pred."),
               ("roi_head.bbox_head.shared_fcs.0.", "roi_heads.box_head.fc6."),
               ("roi_head.bbox_head.shared_fcs.1.", "roi_heads.box_head.fc7."),
               ("roi_head.mask_head.upsample.", "roi_heads.mask_predictor.conv5_mask.")]
    for key, value in state_dict.items():
        if key.startswith(("roi_head.bbox_head.fc_", "roi_head.mask_head.conv_logits.")):
            continue
        name = key
        if key.startswith(("neck.lateral_convs.", "neck.fpn_convs.")):
            name = key.replace(".conv.", ".0.")
        elif key.startswith("roi_head.mask_head.convs."):
            index, rest = key.removeprefix("roi_head.mask_head.convs.").split(".conv.")
            name = f"roi_heads.mask_head.{index}.0.{rest}"
        for old, new in renames:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        out[name] = value
    head = "roi_head.bbox_head."
    for part in ("weight", "bias"):
        cls = state_dict[f"{head}fc_cls.{part}"]
        out[f"roi_heads.box_predictor.cls_score.{part}"] = torch.cat([cls[-1:], cls[:-1]])
        reg = state_dict[f"{head}fc_reg.{part}"]
        out[f"roi_heads.box_predictor.bbox_pred.{part}"] = torch.cat([reg.new_zeros((4, *reg.shape[1:])), reg])
        logits = state_dict[f"roi_head.mask_head.conv_logits.{part}"]
        out[f"roi_heads.mask_predictor.mask_fcn_logits.{part}"] = torch.cat(
            [logits.new_zeros((1, *logits.shape[1:])), logits])
    return out


class _UnroundedAnchors(AnchorGenerator):
    """mmdet's anchors: torchvision's sizes, ratios and order, without rounding the base anchors, and
    at each level's nominal stride (torchvision derives it from the padded image, e.g. 736 // 12 = 61
    instead of 64 on the top level of a 1280x720 image)."""

    def __init__(self, sizes, aspect_ratios, strides: tuple[int, ...] = (4, 8, 16, 32, 64)):
        super().__init__(sizes, aspect_ratios)
        self.strides = strides

    def forward(self, image_list, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        device = feature_maps[0].device
        self.set_cell_anchors(feature_maps[0].dtype, device)
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides]
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=torch.device("cpu")):
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        h_ratios = torch.sqrt(aspect_ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2


class _TwoSidedClampBoxCoder(torchvision.models.detection._utils.BoxCoder):
    """mmdet's DeltaXYWHBBoxCoder: log-size deltas clamped to +-log(1000/16), not only from above."""

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        rel_codes = rel_codes.clone()
        wx, wy, ww, wh = self.weights
        rel_codes[:, 2::4] = rel_codes[:, 2::4].clamp(min=-self.bbox_xform_clip * ww)
        rel_codes[:, 3::4] = rel_codes[:, 3::4].clamp(min=-self.bbox_xform_clip * wh)
        return super().decode_single(rel_codes, boxes)


class _MmdetRoIAlign(nn.Module):
    """mmdet's SingleRoIExtractor over FPN levels "0".."3": level floor(log2(sqrt(area) / 56 + 1e-6))
    clamped to 0..3, `roi_align(aligned=True, sampling_ratio=0)` (mmcv's RoIAlign) at 1 / stride."""

    def __init__(self, output_size: int, strides: tuple[int, ...] = (4, 8, 16, 32), finest_scale: float = 56.0):
        super().__init__()
        self.output_size = output_size
        self.strides = strides
        self.finest_scale = finest_scale

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(proposals)])
        feats = [features[str(level)] for level in range(len(self.strides))]
        out = feats[0].new_zeros((len(rois), feats[0].shape[1], self.output_size, self.output_size))
        if len(rois) == 0:
            return out
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6)).clamp(0, len(feats) - 1).long()
        for level, (feature, stride) in enumerate(zip(feats, self.strides)):
            index = torch.nonzero(levels == level).squeeze(1)
            if index.numel():
                out[index] = torchvision.ops.roi_align(feature, rois[index], self.output_size, 1.0 / stride,
                                                       sampling_ratio=0, aligned=True)
        return out


def _as_mmdet_runs(model: MaskRCNN) -> MaskRCNN:
    """Swap in the parts where mmdet's Mask R-CNN computes differently from torchvision's."""
    generator = model.rpn.anchor_generator
    model.rpn.anchor_generator = _UnroundedAnchors(generator.sizes, generator.aspect_ratios)
    model.rpn.box_coder = _TwoSidedClampBoxCoder(model.rpn.box_coder.weights)
    model.rpn.min_size = 1e-12  # mmdet keeps proposals of positive width and height
    model.roi_heads.box_coder = _TwoSidedClampBoxCoder(model.roi_heads.box_coder.weights)
    model.roi_heads.box_roi_pool = _MmdetRoIAlign(7)
    model.roi_heads.mask_roi_pool = _MmdetRoIAlign(14)
    return model


def build_maskrcnn(config: MaskRCNNConfig, num_classes: int, **train_options: Any) -> MaskRCNN:
    """The torchvision Mask R-CNN that `config` describes, randomly initialised (no weights are
    downloaded). `train_options` are extra `MaskRCNN` keyword arguments for training (e.g.
    rpn_pre_nms_top_n_train); the teacher and `fit-teacher image` build through here, so a fitted
    checkpoint always matches the teacher's structure."""
    if config.backbone not in BACKBONES:
        raise UserInputError(f"image teacher backbone {config.backbone!r}: use one of {', '.join(BACKBONES)}")
    kwargs: dict[str, Any] = dict(
        num_classes=num_classes,
        # 800/1333 are placeholders when images run at their own size: the teacher sets them per batch.
        min_size=config.min_size or 800, max_size=config.max_size or 1333,
        box_score_thresh=config.score_threshold, box_nms_thresh=config.nms_threshold,
        box_detections_per_img=config.detections_per_img,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n, rpn_post_nms_top_n_test=config.rpn_post_nms_top_n)
    if config.anchor_sizes is not None:
        sizes = [int(a) for a in config.anchor_sizes]
        if len(sizes) != 5 or min(sizes) < 1:
            raise UserInputError(f"anchor_sizes {config.anchor_sizes}: give 5 positive sizes, one per FPN level")
        # torchvision's aspect ratios; one size per level as in its default generator
        kwargs["rpn_anchor_generator"] = AnchorGenerator(tuple((a,) for a in sizes), ((0.5, 1.0, 2.0),) * 5)
    kwargs.update(train_options)
    c = int(config.fpn_channels)
    if config.flavor not in (None, "torchvision", "mmdet"):
        raise UserInputError(f"image teacher flavor {config.flavor!r}: use torchvision or mmdet")
    if config.backbone == "resnet50":
        if c != 256:
            raise UserInputError("fpn_channels: resnet50 keeps torchvision's 256 (its checkpoints' shapes)")
        # Exactly torchvision's model and parameter names, so its COCO file and nuImages checkpoints load.
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
        return _as_mmdet_runs(model) if config.flavor == "mmdet" else model
    if config.flavor == "mmdet":
        raise UserInputError("flavor mmdet: only with backbone resnet50 (mmdet's Mask R-CNN R50-FPN)")
    if c < 8:
        raise UserInputError(f"fpn_channels {c}: must be >= 8")
    # Without pretrained weights torchvision trains every layer with ordinary BatchNorm (what
    # maskrcnn_resnet50_fpn does for weights=None too); eval-mode BatchNorm then uses the fitted statistics.
    if c == 256 and int(config.base_width) == 64:
        backbone = resnet_fpn_backbone(backbone_name=config.backbone, weights=None, norm_layer=nn.BatchNorm2d,
                                       trainable_layers=5)
        return MaskRCNN(backbone, **kwargs)
    bw = int(config.base_width)
    if bw < 4:
        raise UserInputError(f"base_width {bw}: must be >= 4")
    resnet = build_resnet(int(config.backbone.removeprefix("resnet")), bw)
    widths = [bw, 2 * bw, 4 * bw, 8 * bw]  # BasicBlock ResNets' stage widths
    backbone = BackboneWithFPN(resnet, {f"layer{i}": str(i - 1) for i in range(1, 5)}, widths, c,
                               extra_blocks=LastLevelMaxPool(), norm_layer=None)
    num_classes = kwargs.pop("num_classes")
    return MaskRCNN(backbone, num_classes=None,
                    box_head=TwoMLPHead(c * 7 * 7, 4 * c), box_predictor=FastRCNNPredictor(4 * c, num_classes),
                    mask_head=MaskRCNNHeads(c, (c, c, c, c), 1), mask_predictor=MaskRCNNPredictor(c, c, num_classes),
                    **kwargs)


class MaskRCNNTeacher:
    """torchvision Mask R-CNN ResNet-FPN as an `ImageTeacher` (see `teachers.image_protocol`)."""

    name = "maskrcnn"

    def __init__(self, config: MaskRCNNConfig) -> None:
        self.cfg = config
        self.target_classes: tuple[str, ...] = tuple(config.target_classes) if config.target_classes \
            else NUSCENES_CLASSES
        self.max_instances = int(config.max_instances)
        self.device = self._check_device(config.device)
        if (config.min_size is None) != (config.max_size is None):
            raise UserInputError("min_size/max_size: give both or neither (neither = each image at its own size)")

        state_dict = None
        self.checkpoint_sha256: str | None = None
        if config.checkpoint is not None:
            # read once (weights and mmdet's meta); weights only: torchvision's train.py also pickles its
            # argparse args, and such a file is refused with a message to save the state_dict alone
            raw = read_torch_file(config.checkpoint, "image checkpoint")
            state_dict = state_dict_in(raw, config.checkpoint, "image checkpoint")
            self.checkpoint_sha256 = file_sha256(config.checkpoint)
            if is_mmdet_maskrcnn(state_dict):
                meta = mmdet_meta(raw)
                check_mmdet_flavour(meta, config.checkpoint)
                state_dict = from_mmdet(state_dict)
                config = self.cfg = replace(config, flavor=config.flavor or "mmdet")
                if config.class_names == "coco":  # the default: take the classes the file records
                    recorded = mmdet_class_names(meta)
                    n = int(state_dict[_NUM_CLASSES_KEY].shape[0])
                    if recorded and len(recorded) == n - 1:
                        config = self.cfg = replace(config, class_names=["__background__", *recorded])
                    elif n == len(NUIMAGES_CLASSES) + 1:
                        config = self.cfg = replace(config, class_names="nuimages")
                log.info("image teacher maskrcnn: mmdet checkpoint %s (%s flavour)", config.checkpoint, config.flavor)
        elif not config.random_init:
            raise UserInputError("image teacher maskrcnn has no weights: pass --image-checkpoint or --random-init")

        self.num_classes = self._resolve_num_classes(state_dict)
        self.class_names, class_map = self._resolve_classes()
        self.label_table = label_table(self.class_names, class_map, source="image teacher class table",
                                       targets=self.target_classes)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # random init is reproducible and leaves the caller's RNG alone
            self.model = build_maskrcnn(config, self.num_classes)
        if state_dict is not None:
            self._load(state_dict, config.checkpoint)
        self.model.eval().to(self.device)
        log.info("image teacher maskrcnn: %d classes, %s", self.num_classes,
                 f"checkpoint {config.checkpoint}" if config.checkpoint else "random init")

    # --- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _check_device(device: str) -> torch.device:
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise UserInputError(f"--device {device}: not a torch device") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: no CUDA device is available")
        return dev

    def _resolve_num_classes(self, state_dict: dict[str, torch.Tensor] | None) -> int:
        cfg = self.cfg
        if state_dict is None:
            if cfg.num_classes is not None:
                return int(cfg.num_classes)
            names = cfg.class_names if not isinstance(cfg.class_names, str) else self._preset(cfg.class_names)[0]
            return len(names)
        if _NUM_CLASSES_KEY not in state_dict:
            raise UserInputError(f"image checkpoint {cfg.checkpoint}: not a torchvision Mask R-CNN checkpoint "
                                 f"(no {_NUM_CLASSES_KEY})")
        found = int(state_dict[_NUM_CLASSES_KEY].shape[0])
        if cfg.num_classes is not None and int(cfg.num_classes) != found:
            raise UserInputError(f"image checkpoint {cfg.checkpoint}: has {found} classes, config says "
                                 f"num_classes={cfg.num_classes}")
        return found

    @staticmethod
    def _preset(name: str) -> tuple[tuple[str, ...], dict[str, str]]:
        if name not in CLASS_PRESETS:
            raise UserInputError(f"class_names {name!r}: unknown preset; use one of {sorted(CLASS_PRESETS)} "
                                 "or list the model's class names")
        return CLASS_PRESETS[name]

    def _resolve_classes(self) -> tuple[list[str], dict[str, str]]:
        cfg = self.cfg
        if isinstance(cfg.class_names, str):
            names, default_map = self._preset(cfg.class_names)
        else:
            # A user's own label space: names that already are target classes map to themselves.
            names = tuple(cfg.class_names)
            default_map = {c: c for c in names if c in self.target_classes}
        class_map = dict(cfg.class_map) if cfg.class_map is not None else dict(default_map)
        if len(names) != self.num_classes:
            raise UserInputError(f"class_names: {len(names)} names (background included) for a model with "
                                 f"{self.num_classes} classes")
        return list(names), class_map

    def _load(self, state_dict: dict[str, torch.Tensor], path: str) -> None:
        own = self.model.state_dict()
        # BatchNorm fills a missing num_batches_tracked itself (torchvision's COCO file has none).
        missing = sorted(k for k in own.keys() - state_dict.keys() if not k.endswith("num_batches_tracked"))
        unexpected = sorted(state_dict.keys() - own.keys())
        wrong_shape = sorted(k for k in own.keys() & state_dict.keys() if own[k].shape != state_dict[k].shape)
        problems = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape)) if v]
        if problems:
            raise UserInputError(f"image checkpoint {path}: does not fit torchvision Mask R-CNN "
                                 f"{self.cfg.backbone}-FPN with {self.num_classes} classes: {'; '.join(problems)} "
                                 "(is the backbone option the one it was trained with?)")
        self.model.load_state_dict(state_dict, strict=True)

    # --- the protocol ---------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        d = asdict(self.cfg)
        d.update(num_classes=self.num_classes, class_names=list(self.class_names),
                 checkpoint_sha256=self.checkpoint_sha256)
        return d

    def __call__(self, images: list[np.ndarray]) -> list[ImageTeacherOutput]:
        """Detections for each HxWx3 uint8 RGB image, in the input images' pixels."""
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {img.shape} {img.dtype}")
            by_size[img.shape[:2]].append(i)
        outputs: list[ImageTeacherOutput | None] = [None] * len(images)
        # One forward per image size: at native resolution the resize rule depends on the size, and the
        # cameras of one rig share a size anyway.
        with torch.inference_mode():
            for size, idx in by_size.items():
                for i, out in zip(idx, self._forward([images[i] for i in idx], size)):
                    outputs[i] = out
        return outputs  # type: ignore[return-value]

    def _forward(self, images: list[np.ndarray], size: tuple[int, int]) -> list[ImageTeacherOutput]:
        h, w = size
        model = self.model
        if self.cfg.min_size is None:
            model.transform.min_size = (min(h, w),)
            model.transform.max_size = max(h, w)
        tensors = [torch.from_numpy(img).to(self.device).permute(2, 0, 1).float().div_(255.0) for img in images]
        image_list, _ = model.transform(tensors)
        features = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
        detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)

        outputs = []
        for det, (rh, rw) in zip(detections, image_list.image_sizes):
            to_input = det["boxes"].new_tensor([w / rw, h / rh, w / rw, h / rh])
            out = select_instances(
                boxes=(det["boxes"] * to_input).cpu().numpy(),
                model_labels=det["labels"].cpu().numpy(),
                scores=det["scores"].cpu().numpy(),
                masks=det["masks"][:, 0].cpu().numpy(),
                table=self.label_table, score_threshold=self.cfg.score_threshold, max_instances=self.max_instances,
            )
            outputs.append(out)
        return outputs
