"""X-IS: cross-task instance-segmentation distillation.

torchvision's Mask R-CNN parts (an RPN and RoI heads with box and mask branches) run on the student's
stride-16 perspective-view features of every camera image. Their targets are the cached image-teacher
detections with score >= threshold, moved into the augmented image with the image-augmentation
matrix. The heads exist only to shape the PV features: they live in the training criterion, never in
the inference model."""
from __future__ import annotations

import functools
import math
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import boxes as box_ops, roi_align
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from ..config import XISLossConfig


class OneLevelRoIAlign(nn.Module):
    """torchvision's RoIAlign (aligned=False, a fixed sampling ratio, one feature level: what
    `MultiScaleRoIAlign(["0"], output_size, sampling_ratio)` computes), by whichever of two exact
    rewrites does less arithmetic for the feature map at hand.

    Every output cell is a fixed linear combination of its sample points' bilinear taps, and the taps
    are separable: a row weight times a column weight. So pooling is either
    - a weighted gather: one `embedding_bag` of 4 x ratio^2 feature pixels per output cell over the
      features viewed as a [N * h * w, C] table, its backward the transposed sparse matrix (CSR) times
      the gradient: ~out^2 * 4 ratio^2 multiply-adds per RoI and channel, whatever the map's size; or
    - two dense products per RoI, [out, h] x [h, w] x [w, out] (row and column weight matrices): ~out
      * h * (w + out), no sort, no scatter, but every RoI reads (and copies) its image's whole map; on
      small maps (the tiny config's 4 x 11) this is 1.5-2.5x faster than the gather, on R50's 16 x 44
      2-14x slower, so it is taken only when its count is at most twice the gather's (dense products
      run more multiply-adds per second).
    On CPU torchvision's roi_align backward walks every sample point of every channel on its own; both
    rewrites are faster (BENCHMARKS.md "Where the KD overhead goes"). Values equal torchvision's to float
    rounding (tests/student/test_loss_terms.py). Called like MultiScaleRoIAlign by torchvision's
    RoIHeads: (features dict, boxes per image, image sizes)."""

    def __init__(self, output_size: int, sampling_ratio: int, method: str = "auto") -> None:
        super().__init__()
        if method not in ("auto", "gather", "separable"):
            raise ValueError(f"OneLevelRoIAlign method {method!r}: expected auto, gather or separable")
        self.output_size, self.sampling_ratio, self.method = int(output_size), int(sampling_ratio), method

    def method_for(self, feature_hw: tuple[int, int]) -> str:
        """The method this pool runs on an h x w feature map: `method`, or for "auto" the one with
        the fewer multiply-adds per RoI and channel, the dense products' count halved."""
        if self.method != "auto":
            return self.method
        (h, w), out, taps = feature_hw, self.output_size, 4 * self.sampling_ratio ** 2
        return "separable" if out * h * (w + out) <= 2 * out * out * taps else "gather"

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feat = features["0"]
        n, c, h, w = feat.shape
        # MultiScaleRoIAlign's scale: the feature/image size ratio rounded to a power of two
        scale = 2.0 ** round(math.log2(h / image_shapes[0][0]))
        out, ratio = self.output_size, self.sampling_ratio
        counts = [len(b) for b in boxes]
        total = sum(counts)
        if total == 0:
            return feat.new_zeros((0, c, out, out))
        image = torch.repeat_interleave(torch.arange(n, device=feat.device),
                                        torch.tensor(counts, device=feat.device))
        index, weight = _axis_taps(torch.cat(boxes).to(feat.dtype), h, w, out, scale, ratio)
        if self.method_for((h, w)) == "separable":
            rows = feat.new_zeros(total, out, h).scatter_add_(2, index[:, 0], weight[:, 0])
            cols = feat.new_zeros(total, out, w).scatter_add_(2, index[:, 1], weight[:, 1])
            per_roi = feat.index_select(0, image).reshape(total, c * h, w)
            pooled = torch.bmm(per_roi, cols.transpose(1, 2))  # [K, C * h, out_x]
            pooled = pooled.view(total, c, h, out).permute(0, 2, 3, 1).reshape(total, h, out * c)
            # channels-last like the gather's result: the heads' convolutions and flatten read it
            # without another reorder (an [K, out_y, C, out_x] layout cost them ~1 ms on tiny)
            return torch.bmm(rows, pooled).view(total, out, out, c).permute(0, 3, 1, 2)
        # [K, out_y, out_x, 2 ratio (y points x corners), 2 ratio (x)] taps, rows of the [N * h * w, C] table
        yi, xi = index[:, 0].view(total, out, 1, 2 * ratio, 1), index[:, 1].view(total, 1, out, 1, 2 * ratio)
        yw, xw = weight[:, 0].view(total, out, 1, 2 * ratio, 1), weight[:, 1].view(total, 1, out, 1, 2 * ratio)
        taps = ((image * (h * w)).view(total, 1, 1, 1, 1) + yi * w + xi).int()
        pooled = _WeightedRowSum.apply(feat.permute(0, 2, 3, 1).reshape(n * h * w, c),
                                       taps.reshape(total * out * out, -1), (yw * xw).reshape(total * out * out, -1))
        return pooled.view(total, out, out, c).permute(0, 3, 1, 2)


class _WeightedRowSum(torch.autograd.Function):
    """out[m] = sum_k weight[m, k] * table[index[m, k]]; gradient for the table only (the boxes that
    made the weights are detached proposals)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(index, weight)
        ctx.table_rows = table.shape[0]
        return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        index, weight = ctx.saved_tensors
        rows, taps = index.shape
        flat = index.reshape(-1)
        # The transposed gather as CSR: one row per table row, listing the outputs that read it. The
        # sort is most of this backward's cost, and the narrower the key the faster it runs (int16 ~2.5x
        # int64 here; feature tables of up to 32k pixels: six cameras at 256x704 are 4224).
        key = flat.to(torch.int16) if ctx.table_rows <= torch.iinfo(torch.int16).max else flat
        order = torch.argsort(key, stable=True).int()
        crow = torch.zeros(ctx.table_rows + 1, dtype=torch.int32, device=index.device)
        crow[1:] = torch.bincount(flat, minlength=ctx.table_rows).cumsum(0)
        readers = torch.div(order, taps, rounding_mode="floor")
        with warnings.catch_warnings():  # torch calls its CSR support "beta" (once per process)
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            transposed = torch.sparse_csr_tensor(crow, readers, weight.reshape(-1)[order].to(grad.dtype),
                                                 (ctx.table_rows, rows), check_invariants=False)
        return transposed @ grad.contiguous(), None, None


def _axis_taps(boxes: torch.Tensor, h: int, w: int, out: int, scale: float, ratio: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per RoI, axis (0 = y, 1 = x) and output row/column, the feature rows/columns its bilinear taps
    read and their weights: index (int64) and weight, each [K, 2, out, 2 * ratio] (ratio sample points
    x 2 corners). torchvision's sample points (ratio per bin, at (i + 0.5) / ratio of the bin) and its
    bilinear rule (a point beyond -1 or the size contributes 0, one inside [-1, 0] is moved to 0, one at
    the last row/column uses that row/column alone); each weight carries 1 / ratio, so a cell's
    row weight times column weight averages over its ratio^2 points. Rows and columns are handled
    together to keep the op count low: on small inputs this runs at per-op overhead."""
    k = boxes.shape[0]
    start = boxes[:, [1, 0]] * scale  # [K, 2]: y1, x1
    size = ((boxes[:, [3, 2]] * scale - start).clamp_min(1.0) / out)[..., None]  # bin height, width
    steps = torch.arange(out * ratio, device=boxes.device)
    # bin + (point + 0.5) * bin size / ratio, in torchvision's order of operations: far from the
    # origin (thousands of pixels) a regrouped sum rounds differently
    cell = torch.div(steps, ratio, rounding_mode="floor")
    v = start[..., None] + cell * size + ((steps % ratio) + 0.5) * size / ratio  # [K, 2, out * ratio]
    extent = torch.tensor([h, w], dtype=v.dtype, device=v.device)[:, None]
    inside = ((v >= -1.0) & (v <= extent)).to(v.dtype) / ratio
    v = v.clamp_min(0.0)
    low = v.floor()
    last = low >= extent - 1
    low = torch.minimum(low, extent - 1)
    frac = torch.where(last, 0.0, v - low)
    index = torch.stack([low, torch.where(last, low, low + 1)], -1).long()
    weight = torch.stack([(1 - frac) * inside, frac * inside], -1)
    return index.view(k, 2, out, 2 * ratio), weight.view(k, 2, out, 2 * ratio)


def _per_image(fn, count: int, device: torch.device) -> list:
    """[fn(0), ..., fn(count - 1)], on CPU spread over torch's intra-op thread count: the per-image
    ops this runs (torchvision's NMS above all) are single-threaded kernels that release the GIL."""
    threads = min(torch.get_num_threads(), count)
    if device.type != "cpu" or threads < 2:
        return [fn(i) for i in range(count)]
    return list(_thread_pool(threads).map(fn, range(count)))


@functools.cache
def _thread_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="x3kd-xis")


def _padded(rows: list[torch.Tensor], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image [k_i, ...] tensors stacked into [N, max k_i, ...] (padding = `fill`), and the
    [N, max k_i] mask of the real rows."""
    out = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=fill)
    lengths = torch.tensor([len(r) for r in rows], device=out.device)
    return out, torch.arange(out.shape[1], device=out.device) < lengths[:, None]


def _batched_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU [N, G, P] of boxes a [N, G, 4] and b [N, P, 4] (or [P, 4], shared), with the operations of
    torchvision's box_iou in its order, so that each value is torchvision's to the bit."""
    b = b.expand(a.shape[0], -1, -1) if b.dim() == 2 else b
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.max(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.min(a[:, :, None, 2:], b[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter)


def _batched_match(quality: torch.Tensor, real_gt: torch.Tensor, matcher) -> torch.Tensor:
    """torchvision's Matcher (with low-quality matches) for all images at once: quality [N, G, P] with
    padded ground-truth rows (real_gt [N, G] False) -> matches [N, P]: a ground-truth index,
    matcher.BELOW_LOW_THRESHOLD or matcher.BETWEEN_THRESHOLDS. An image without ground truth matches
    nothing (all below the low threshold)."""
    quality = quality.masked_fill(~real_gt[:, :, None], -1.0)  # a padded row never wins a max
    best, matches = quality.max(dim=1)
    all_matches = matches.clone()
    matches[best < matcher.low_threshold] = matcher.BELOW_LOW_THRESHOLD
    matches[(best >= matcher.low_threshold) & (best < matcher.high_threshold)] = matcher.BETWEEN_THRESHOLDS
    if matcher.allow_low_quality_matches:
        # each ground truth's best predictions (ties included) keep it, however low their overlap
        per_gt_best = quality.max(dim=2, keepdim=True).values
        rescue = ((quality == per_gt_best) & real_gt[:, :, None]).any(1)
        matches = torch.where(rescue, all_matches, matches)
    return matches


class _ThreadedProposalRPN(RegionProposalNetwork):
    """torchvision's RPN, with the per-image proposal filtering (clip to the image, drop degenerate and
    low-scoring boxes, NMS, keep the best post_nms_top_n) run for all camera images in parallel. On CPU
    the six NMS calls over 2000 proposals each were ~0.1 s of an R50 step, one core busy. The proposals
    are torchvision's, element for element (tests/student/test_loss_terms.py)."""

    def filter_proposals(self, proposals: torch.Tensor, objectness: torch.Tensor,
                         image_shapes: list[tuple[int, int]], num_anchors_per_level: list[int]
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(num_anchors_per_level) != 1:  # X-IS pools one feature level; keep torchvision's path otherwise
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        images = proposals.shape[0]
        if len(set(image_shapes)) != 1:
            return super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        objectness = objectness.detach().reshape(images, -1)
        logits, best = objectness.topk(min(self.pre_nms_top_n(), objectness.shape[1]), dim=1)
        boxes = box_ops.clip_boxes_to_image(proposals.gather(1, best[..., None].expand(-1, -1, 4)), image_shapes[0])
        scores = logits.sigmoid()
        # torchvision's two filters (remove_small_boxes, then the score threshold) as one mask
        wide = ((boxes[..., 2] - boxes[..., 0]) >= self.min_size) & ((boxes[..., 3] - boxes[..., 1]) >= self.min_size)
        candidates = wide & (scores >= self.score_thresh)

        def filter_one(i: int) -> tuple[torch.Tensor, torch.Tensor]:
            index = torch.where(candidates[i])[0]
            b, sc = boxes[i][index], scores[i][index]
            keep = box_ops.nms(b, sc, self.nms_thresh)[: self.post_nms_top_n()]
            return b[keep], sc[keep]

        kept = _per_image(filter_one, images, proposals.device)
        return [b for b, _ in kept], [sc for _, sc in kept]

    def assign_targets_to_anchors(self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
                                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """torchvision's anchor labels (1 object, 0 background, -1 ignored) and matched boxes, for all
        images in one IoU and one match (the anchors of same-size images are the same)."""
        if any(not torch.equal(a, anchors[0]) for a in anchors[1:]):
            return super().assign_targets_to_anchors(anchors, targets)
        gt, real = _padded([t["boxes"] for t in targets], 0.0)
        if gt.shape[1] == 0:  # no image has a pseudo-label: every anchor is background
            zeros = anchors[0].new_zeros(anchors[0].shape)
            return [anchors[0].new_zeros(len(anchors[0])) for _ in anchors], [zeros for _ in anchors]
        matches = _batched_match(_batched_box_iou(gt, anchors[0]), real, self.proposal_matcher)
        matched_boxes = gt.gather(1, matches.clamp(min=0)[..., None].expand(-1, -1, 4))
        labels = (matches >= 0).float()
        labels[matches == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
        return list(labels.unbind(0)), list(matched_boxes.unbind(0))


class _PseudoLabelRoIHeads(RoIHeads):
    """torchvision's RoIHeads with the training losses computed for what they read, no more: the mask
    logits of each positive RoI for its matched pseudo-label's class only (torchvision's predictor
    computes all K + 1 class maps and the loss keeps one: its 1x1 conv backward over the K unused maps
    was the largest single op of X-IS on the tiny config), and the mask targets of all images in one
    RoIAlign call instead of one per image. Sampling, matching and the five losses are torchvision's
    (values equal to float rounding: tests/student/test_loss_terms.py); inference is torchvision's."""

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]] | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)

        positive = [torch.where(lab > 0)[0] for lab in labels]
        mask_boxes = [p[i] for p, i in zip(proposals, positive)]
        matched = [m[i] for m, i in zip(matched_idxs, positive)]
        mask_features = self.mask_head(self.mask_roi_pool(features, mask_boxes, image_shapes))
        classes = torch.cat([t["labels"][m] for t, m in zip(targets, matched)])
        predictor = self.mask_predictor
        hidden = predictor.relu(predictor.conv5_mask(mask_features))
        logits_layer = predictor.mask_fcn_logits
        weight = logits_layer.weight[classes, :, 0, 0]  # [R, D]: each RoI's own class row of the 1x1 conv
        logits = torch.einsum("rdhw,rd->rhw", hidden, weight) + logits_layer.bias[classes][:, None, None]
        if logits.shape[0] == 0:
            loss_mask = logits.sum() * 0
        else:
            loss_mask = F.binary_cross_entropy_with_logits(logits, _mask_targets(targets, mask_boxes, matched,
                                                                                 logits.shape[-1]))
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask}

    def select_training_samples(self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
                                ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """torchvision's: the pseudo-labels join the proposals, each proposal is matched (one padded
        IoU and match for all images), torchvision's sampler draws the positives and negatives (the
        same random draws), and the sampled proposals get their box regression targets."""
        gt_boxes = [t["boxes"].to(proposals[0].dtype) for t in targets]
        proposals = [torch.cat((p, g)) for p, g in zip(proposals, gt_boxes)]
        gt, real_gt = _padded(gt_boxes, 0.0)
        if gt.shape[1] == 0:
            return super().select_training_samples([p[: len(p) - len(g)] for p, g in zip(proposals, gt_boxes)],
                                                   targets)
        boxes, real_box = _padded(proposals, 0.0)
        matches = _batched_match(_batched_box_iou(gt, boxes), real_gt, self.proposal_matcher)
        gt_labels, _ = _padded([t["labels"] for t in targets], 0)
        matched = matches.clamp(min=0)
        labels = gt_labels.gather(1, matched)
        labels[matches == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
        labels[matches == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1  # the sampler ignores them
        counts = [len(p) for p in proposals]
        labels = [lab[:n] for lab, n in zip(labels, counts)]
        sampled = self.subsample(labels)
        matched_boxes = gt.gather(1, matched[..., None].expand(-1, -1, 4))
        chosen = [p[i] for p, i in zip(proposals, sampled)]
        regression_targets = self.box_coder.encode([m[i] for m, i in zip(matched_boxes, sampled)], chosen)
        return (chosen, [m[i] for m, i in zip(matched, sampled)], [lab[i] for lab, i in zip(labels, sampled)],
                regression_targets)


def _mask_targets(targets: list[dict[str, torch.Tensor]], boxes: list[torch.Tensor], matched: list[torch.Tensor],
                  size: int) -> torch.Tensor:
    """[R, size, size]: each RoI's matched pseudo-label mask cropped to the RoI and resized
    (torchvision's rule, RoIAlign at scale 1), for the RoIs of all images at once."""
    masks = [t["masks"] for t in targets]
    first = torch.tensor([0] + [len(m) for m in masks[:-1]], device=boxes[0].device).cumsum(0)
    mask_index = torch.cat([f + m for f, m in zip(first, matched)])
    rois = torch.cat([mask_index[:, None].to(boxes[0].dtype), torch.cat(boxes)], 1)
    return roi_align(torch.cat(masks)[:, None].to(rois), rois, (size, size), 1.0)[:, 0]


class XISHeads(nn.Module):
    """RPN + RoI box/mask heads over one feature level ("0")."""

    def __init__(self, in_channels: int, num_classes: int, cfg: XISLossConfig) -> None:
        super().__init__()
        anchors = AnchorGenerator(sizes=(tuple(cfg.anchor_sizes),), aspect_ratios=(tuple(cfg.aspect_ratios),))
        self.rpn = _ThreadedProposalRPN(
            anchors, RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=cfg.rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": cfg.rpn_pre_nms_top_n, "testing": cfg.rpn_pre_nms_top_n},
            post_nms_top_n={"training": cfg.rpn_post_nms_top_n, "testing": cfg.rpn_post_nms_top_n},
            nms_thresh=0.7)
        mask_dim = cfg.mask_layers[-1]
        self.roi_heads = _PseudoLabelRoIHeads(
            box_roi_pool=OneLevelRoIAlign(7, 2),
            box_head=TwoMLPHead(in_channels * 7 * 7, cfg.representation_size),
            box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=cfg.box_batch_size_per_image,
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
            detections_per_img=100,
            mask_roi_pool=OneLevelRoIAlign(14, 2),
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


def xis_loss(heads: XISHeads, pv_features: torch.Tensor, images: torch.Tensor,
             targets: list[dict[str, torch.Tensor]], cfg: XISLossConfig) -> dict[str, torch.Tensor]:
    """`loss_xis` = cfg.weight * (RPN objectness + RPN box + classifier + box + mask losses).

    `cfg.empty_images` decides what an image without pseudo-labels teaches: "skip" (default) leaves it
    out, so X-IS learns only from what the teacher saw; "background" keeps it, so its every anchor and
    proposal is trained as background, which a weak or conservative teacher's silence does not justify
    (a teacher that puts nothing above its threshold would train "no object anywhere" on the features
    the detector needs). With no image to learn from, the term is a zero that keeps the graph: the PV
    features and every head parameter get a (zero) gradient, so data parallelism needs no search for
    unused parameters (and the heads' weight decay runs as in any other step)."""
    if cfg.empty_images == "skip":
        keep = [i for i, t in enumerate(targets) if len(t["boxes"])]
        if not keep:
            zero = (pv_features.sum() + sum(p.sum() for p in heads.parameters())) * 0.0
            return {"loss_xis": zero, "xis/images": zero.detach()}
        if len(keep) < len(targets):
            index = torch.tensor(keep, device=pv_features.device)
            pv_features, images = pv_features.index_select(0, index), images.index_select(0, index)
            targets = [targets[i] for i in keep]
    parts = heads(pv_features, images, targets)
    total = sum(parts.values())
    return {"loss_xis": cfg.weight * total, "xis/images": torch.tensor(float(len(targets))),
            **{f"xis/{k.removeprefix('loss_')}": v.detach() for k, v in parts.items()}}
