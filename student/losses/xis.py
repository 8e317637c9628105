"""X-IS: cross-task instance-segmentation distillation.

torchvision's Mask R-CNN parts (an RPN and RoI heads with box and mask branches) run on the student's
stride-16 perspective-view features of every camera image. Their targets are the cached image-teacher
detections with score >= threshold, moved into the augmented image with the image-augmentation
matrix. The heads exist only to shape the PV features: they live in the training criterion, never in
the inference model."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from ..image_aug import transform_boxes_2d
from ..config import XISLossConfig
from ..masks import paste_masks


class SparseRoIAlign(nn.Module):
    """torchvision's RoIAlign (aligned=False, a fixed sampling ratio, one feature level: what
    `MultiScaleRoIAlign(["0"], output_size, sampling_ratio)` computes), as one sparse matrix product.

    Every output cell is a fixed linear combination of at most 4 x ratio^2 feature pixels (bilinear
    weights of its sample points, averaged), so the pooled features of all RoIs of a batch are
    W @ F with W sparse [R * s * s, N * h * w] and F the features [N * h * w, C]; the backward pass is
    W^T @ grad. On CPU this is 3-4x faster than torchvision's roi_align backward, which walks every
    sample point of every channel on its own (~1 s of an R50 training step; bench/student_step.py). The
    values equal torchvision's to float rounding (tests/student/test_loss_terms.py). Called like
    MultiScaleRoIAlign by torchvision's RoIHeads: (features dict, boxes per image, image sizes)."""

    def __init__(self, output_size: int, sampling_ratio: int) -> None:
        super().__init__()
        self.output_size, self.sampling_ratio = int(output_size), int(sampling_ratio)

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feat = features["0"]
        n, c, h, w = feat.shape
        # MultiScaleRoIAlign's scale: the feature/image size ratio rounded to a power of two
        scale = 2.0 ** round(math.log2(h / image_shapes[0][0]))
        out = self.output_size
        counts = [len(b) for b in boxes]
        total = sum(counts)
        if total == 0:
            return feat.new_zeros((0, c, out, out))
        image = torch.repeat_interleave(torch.arange(n, device=feat.device),
                                        torch.tensor(counts, device=feat.device))
        rows, cols, vals = _interpolation_entries(torch.cat(boxes).to(feat.dtype), image, h, w, out, scale,
                                                  self.sampling_ratio)
        matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (total * out * out, n * h * w),
                                         check_invariants=False)
        pooled = torch.sparse.mm(matrix, feat.permute(0, 2, 3, 1).reshape(n * h * w, c))
        return pooled.view(total, out, out, c).permute(0, 3, 1, 2)


def _interpolation_entries(boxes: torch.Tensor, image: torch.Tensor, h: int, w: int, out: int, scale: float,
                           ratio: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """COO entries of the RoIAlign matrix: torchvision's sample points (ratio x ratio per bin, at
    (i + 0.5) / ratio of the bin) and its bilinear rule (a point beyond -1 or the size contributes 0,
    one inside [-1, 0] is moved to 0, one at the last row/column uses that row/column alone)."""
    k = boxes.shape[0]
    x1, y1, x2, y2 = (boxes[:, i] * scale for i in range(4))
    steps = torch.arange(out * ratio, device=boxes.device)
    offset = torch.div(steps, ratio, rounding_mode="floor") + ((steps % ratio) + 0.5) / ratio  # in bins
    xs = x1[:, None] + offset[None] * ((x2 - x1).clamp_min(1.0) / out)[:, None]  # [K, out * ratio]
    ys = y1[:, None] + offset[None] * ((y2 - y1).clamp_min(1.0) / out)[:, None]

    def corners(v: torch.Tensor, size: int):
        inside = (v >= -1.0) & (v <= size)
        v = v.clamp_min(0.0)
        low = v.floor().long()
        last = low >= size - 1
        low = low.clamp_max(size - 1)
        high = torch.where(last, low, low + 1)
        frac = torch.where(last, torch.zeros_like(v), v - low.to(v.dtype))
        return (low, 1 - frac), (high, frac), inside

    *x_corners, x_inside = corners(xs, w)
    *y_corners, y_inside = corners(ys, h)
    inside = (y_inside[:, :, None] & x_inside[:, None, :]).to(boxes.dtype)
    s = out * ratio
    cell = torch.div(steps, ratio, rounding_mode="floor")
    rows = (torch.arange(k, device=boxes.device)[:, None, None] * out * out + cell[None, :, None] * out
            + cell[None, None, :]).expand(k, s, s).reshape(-1)
    base = (image * (h * w))[:, None, None]
    cols, vals = [], []
    for yi, wy in y_corners:
        for xi, wx in x_corners:
            cols.append((base + yi[:, :, None] * w + xi[:, None, :]).reshape(-1))
            vals.append((wy[:, :, None] * wx[:, None, :] * inside).reshape(-1) / (ratio * ratio))
    return rows.repeat(4), torch.cat(cols), torch.cat(vals)


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
            box_roi_pool=SparseRoIAlign(7, 2),
            box_head=TwoMLPHead(in_channels * 7 * 7, cfg.representation_size),
            box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=cfg.box_batch_size_per_image,
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
            detections_per_img=100,
            mask_roi_pool=SparseRoIAlign(14, 2),
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
    """`loss_xis` = cfg.weight * (RPN objectness + RPN box + classifier + box + mask losses).

    `cfg.empty_images` decides what an image without pseudo-labels teaches: "skip" (default) leaves it
    out, so X-IS learns only from what the teacher saw; "background" keeps it, so its every anchor and
    proposal is trained as background, which a weak or conservative teacher's silence does not justify
    (a teacher that puts nothing above its threshold would train "no object anywhere" on the features
    the detector needs). With no image to learn from, the term is a zero that keeps the graph."""
    if cfg.empty_images == "skip":
        keep = [i for i, t in enumerate(targets) if len(t["boxes"])]
        if not keep:
            zero = pv_features.sum() * 0.0
            return {"loss_xis": zero, "xis/images": zero.detach()}
        if len(keep) < len(targets):
            index = torch.tensor(keep, device=pv_features.device)
            pv_features, images = pv_features.index_select(0, index), images.index_select(0, index)
            targets = [targets[i] for i in keep]
    parts = heads(pv_features, images, targets)
    total = sum(parts.values())
    return {"loss_xis": cfg.weight * total, "xis/images": torch.tensor(float(len(targets))),
            **{f"xis/{k.removeprefix('loss_')}": v.detach() for k, v in parts.items()}}
