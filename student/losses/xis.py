"""X-IS: cross-task instance-segmentation distillation.

torchvision's Mask R-CNN parts (an RPN and RoI heads with box and mask branches) run on the student's
stride-16 perspective-view features of every camera image. Their targets are the cached image-teacher
detections with score >= threshold, moved into the augmented image with the image-augmentation
matrix. The heads exist only to shape the PV features: they live in the training criterion, never in
the inference model."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from ..augment import transform_boxes_2d
from ..config import XISLossConfig
from ..masks import paste_masks


class XISHeads(nn.Module):
    """RPN + RoI box/mask heads over one feature level ("0")."""

    def __init__(self, in_channels: int, num_classes: int, cfg: XISLossConfig) -> None:
        super().__init__()
        anchors = AnchorGenerator(sizes=(tuple(cfg.anchor_sizes),), aspect_ratios=(tuple(cfg.aspect_ratios),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=cfg.rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": cfg.rpn_pre_nms_top_n, "testing": cfg.rpn_pre_nms_top_n},
            post_nms_top_n={"training": cfg.rpn_post_nms_top_n, "testing": cfg.rpn_post_nms_top_n},
            nms_thresh=0.7)
        mask_dim = cfg.mask_layers[-1]
        self.roi_heads = RoIHeads(
            box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
            box_head=TwoMLPHead(in_channels * 7 * 7, cfg.representation_size),
            box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=cfg.box_batch_size_per_image,
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
            detections_per_img=100,
            mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
            mask_head=MaskRCNNHeads(in_channels, tuple(cfg.mask_layers), 1),
            mask_predictor=MaskRCNNPredictor(mask_dim, mask_dim, num_classes + 1))

    def forward(self, features: torch.Tensor, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]
                ) -> dict[str, torch.Tensor]:
        """features [M, C, h, w], images [M, 3, H, W] (for the image size only), one target dict per
        image (boxes [k, 4], labels [k] in 1..K, masks [k, H, W]). Returns torchvision's five losses."""
        sizes = [tuple(images.shape[-2:])] * images.shape[0]
        image_list = ImageList(images, sizes)
        feats = OrderedDict([("0", features)])
        proposals, rpn_losses = self.rpn(image_list, feats, targets)
        _, roi_losses = self.roi_heads(feats, proposals, sizes, targets)
        return {**rpn_losses, **roi_losses}


def xis_targets(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor,
                ida: torch.Tensor, image_hw: tuple[int, int], score_threshold: float, min_size: float = 2.0
                ) -> list[dict[str, torch.Tensor]]:
    """Pseudo ground truth per camera image from the image teacher's cached detections.

    boxes [M_img, k, 4] (original pixels), labels [M_img, k] (-1 = padding), scores [M_img, k],
    masks [M_img, k, S, S], ida [M_img, 3, 3]. Keeps detections with score >= threshold whose box
    stays at least `min_size` pixels wide and high inside the augmented image; labels become 1-based
    (0 is torchvision's background)."""
    out = []
    for i in range(boxes.shape[0]):
        keep = (labels[i] >= 0) & (scores[i] >= score_threshold)
        moved = transform_boxes_2d(boxes[i][keep].float(), ida[i], image_hw)
        big = ((moved[:, 2] - moved[:, 0]) >= min_size) & ((moved[:, 3] - moved[:, 1]) >= min_size)
        src_boxes = boxes[i][keep][big]
        out.append({"boxes": moved[big],
                    "labels": labels[i][keep][big].long() + 1,
                    "masks": paste_masks(masks[i][keep][big], src_boxes, image_hw, ida[i])})
    return out


def xis_loss(heads: XISHeads, pv_features: torch.Tensor, images: torch.Tensor,
             targets: list[dict[str, torch.Tensor]], cfg: XISLossConfig) -> dict[str, torch.Tensor]:
    """`loss_xis` = cfg.weight * (RPN objectness + RPN box + classifier + box + mask losses)."""
    parts = heads(pv_features, images, targets)
    total = sum(parts.values())
    return {"loss_xis": cfg.weight * total, **{f"xis/{k.removeprefix('loss_')}": v.detach() for k, v in parts.items()}}
