"""The CenterPoint coder: the one owner of the 10-channel regression layout.

The layout (`cache_schema.layout.REGRESSION_HEADS`: reg_x reg_y | z | log l, log w, log h | sin yaw,
cos yaw | vx vy, offsets in cells from the cell's corner, z of the gravity centre) is what the CenterHead
predicts, what the LiDAR teacher writes into the cache and what the det loss and X-OD compare. Here it is
encoded from boxes (`encode_boxes`, the targets), decoded to boxes (`decode_detections`, mmdet3d's
`CenterHead.predict_by_feat` with `CenterPointBBoxCoder`: sigmoid heatmap -> top-k peaks -> boxes ->
score threshold and centre range -> NMS -> at most `post_max_size` -> centre range), split into and
joined from head outputs, and moved by a BEV augmentation (`warp_regression_maps`, with the validity
rule of `detection.bev_aug.teacher_validity`).

Boxes come out in THE box convention of `cache_schema.boxes` (x, y, z_gravity_centre, l, w, h, yaw,
vx, vy): CenterPoint regresses the gravity-centre height, so no shift is needed here (mmdet3d's own
`predict` moves z to the box bottom afterwards; compare with `z - h / 2` when talking to mmdet3d).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

from cache_schema.errors import UserInputError
from cache_schema.grid import BevGrid, ClassSetup
from cache_schema.layout import REGRESSION_CHANNELS, REGRESSION_HEADS

from detection.bev_aug import gather_cells, linear_scale, source_cells, warp_bev_maps
from detection.nms import circle_nms, nms_rotated


@dataclass(frozen=True)
class DecodeConfig:
    """How head outputs become boxes at test time (mmdet3d's CenterPointBBoxCoder options and
    `test_cfg`; `detection.centerpoint_coder.BoxCoderConfig` adds the BEV grid to them).

    `max_num` peaks per task group are decoded; `coder_score_threshold` / `coder_post_center_range`
    filter them; then per task group `score_threshold`, NMS (`nms_type` "rotate": rotated BEV IoU >=
    `nms_thr` over the best `pre_max_size`; "circle": CenterPoint's circle NMS with the squared-distance
    bound `min_radius` per task group), at most `post_max_size` kept, and `post_center_limit_range`.
    The defaults are mmdet3d's nuScenes CenterPoint test config."""

    max_num: int = 500
    coder_score_threshold: float | None = 0.1
    coder_post_center_range: tuple[float, ...] | None = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    score_threshold: float = 0.1
    nms_type: str = "rotate"
    nms_thr: float = 0.2
    pre_max_size: int = 1000
    post_max_size: int = 83
    post_center_limit_range: tuple[float, ...] | None = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    min_radius: tuple[float, ...] = (4, 12, 10, 1, 0.85, 0.175)

    def __post_init__(self) -> None:
        if self.nms_type not in ("rotate", "circle"):
            raise UserInputError(f"config model.test.nms_type: {self.nms_type!r} is not 'rotate' or 'circle'")


# metres: decoded box sizes are clamped to it (the longest nuScenes objects, articulated buses and
# trailers, are ~20 m)
MAX_BOX_SIZE = 40.0


@dataclass
class Detections:
    """Boxes of one sample: `boxes (M, 9)` in the cache_schema box convention, `scores (M,)`,
    `labels (M,)` int64 indices into the head's concatenated class list."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> "Detections":
        return cls(torch.zeros(0, 9, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.long, device=device))


@dataclass(frozen=True)
class BoxCoderConfig(DecodeConfig):
    """The test-time decoding options (`DecodeConfig`, mmdet3d's `bbox_coder` and `test_cfg`) on the
    BEV grid the head's maps cover. `norm_bbox`: the head predicts log sizes."""

    grid: BevGrid = field(default_factory=BevGrid)
    norm_bbox: bool = True

    @classmethod
    def on_grid(cls, grid: BevGrid, options: DecodeConfig) -> "BoxCoderConfig":
        """The student's coder: its config's `test` options on its grid."""
        return cls(grid=grid, **{f.name: getattr(options, f.name) for f in fields(DecodeConfig)})

    @classmethod
    def from_mmdet3d(cls, bbox_coder: Mapping, test_cfg: Mapping, grid: BevGrid, norm_bbox: bool = True
                     ) -> "BoxCoderConfig":
        """Build from the `pts_bbox_head.bbox_coder` and `test_cfg.pts` dicts of an mmdet3d config whose
        voxel layer spans `grid`; a bbox_coder on another grid is a `UserInputError`."""
        def opt_tuple(v):
            return None if v is None or len(v) == 0 else tuple(float(x) for x in v)
        thr = test_cfg.get("nms_thr", 0.2)
        if isinstance(thr, (list, tuple)):
            raise UserInputError("CenterPoint model config: per-task nms_thr lists are not supported; use one float")
        coder_grid = (tuple(float(v) for v in bbox_coder["pc_range"][:2]),
                      tuple(float(v) for v in bbox_coder["voxel_size"][:2]), int(bbox_coder["out_size_factor"]))
        if coder_grid != (grid.point_cloud_range[:2], grid.voxel_size[:2], grid.out_size_factor):
            raise UserInputError(f"CenterPoint model config: bbox_coder pc_range/voxel_size/out_size_factor "
                                 f"{coder_grid} do not match the voxel layer's grid {grid.to_json()}")
        return cls(
            grid=grid,
            max_num=int(bbox_coder.get("max_num", 100)),
            coder_score_threshold=bbox_coder.get("score_threshold"),
            coder_post_center_range=opt_tuple(bbox_coder.get("post_center_range")),
            norm_bbox=bool(norm_bbox),
            score_threshold=float(test_cfg.get("score_threshold", 0.0)),
            nms_type=str(test_cfg.get("nms_type", "rotate")),
            nms_thr=float(thr),
            pre_max_size=int(test_cfg.get("pre_max_size", 1000)),
            post_max_size=int(test_cfg.get("post_max_size", 83)),
            post_center_limit_range=opt_tuple(test_cfg.get("post_center_limit_range")),
            min_radius=tuple(float(v) for v in test_cfg.get("min_radius", ())),
        )


# --------------------------------------------------------------------------- the layout

def join_regression(outputs: Mapping[str, Tensor]) -> Tensor:
    """A task group's head outputs [B, c, H, W] per REGRESSION_HEADS name -> [B, 10, H, W] in the layout."""
    return torch.cat([outputs[name] for name, _ in REGRESSION_HEADS], 1)


def split_regression(regression: Tensor) -> dict[str, Tensor]:
    """[..., 10, H, W] in the layout -> the head outputs it is made of, by REGRESSION_HEADS name."""
    parts = torch.split(regression, [len(channels) for _, channels in REGRESSION_HEADS], dim=-3)
    return {name: part for (name, _), part in zip(REGRESSION_HEADS, parts)}


def encode_boxes(boxes: Tensor, grid: BevGrid) -> tuple[Tensor, Tensor, Tensor]:
    """For boxes [M, 9] (cache_schema.boxes convention): (integer centre cells [M, 2] as (col, row),
    their regression targets [M, 10] in the layout, mask [M] of centres on the grid)."""
    h, w = grid.shape
    gx, gy = grid.cell_coords(boxes[:, 0], boxes[:, 1])
    ix, iy = torch.floor(gx), torch.floor(gy)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    target = torch.stack([
        gx - ix, gy - iy, boxes[:, 2],
        *boxes[:, 3:6].clamp_min(1e-6).log().unbind(1),
        boxes[:, 6].sin(), boxes[:, 6].cos(), boxes[:, 7], boxes[:, 8]], 1)
    return torch.stack([ix, iy], 1).long(), target, inside


# --------------------------------------------------------------------------- decoding

def _topk(heat: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top-k over classes and cells: scores, flat cell index, class, row, column (each (B, k)).

    Two-stage like mmdet3d (top-k per class, then over the classes' candidates), so ties and the
    order of equal scores resolve as they do there."""
    b, c, h, w = heat.shape
    k_cls = min(k, h * w)
    scores_c, inds_c = torch.topk(heat.reshape(b, c, -1), k_cls)
    k_all = min(k, c * k_cls)
    scores, ind = torch.topk(scores_c.reshape(b, -1), k_all)
    classes = torch.div(ind, k_cls, rounding_mode="floor")
    inds = inds_c.reshape(b, -1).gather(1, ind)
    ys = torch.div(inds, w, rounding_mode="floor").to(heat.dtype)
    xs = (inds % w).to(heat.dtype)
    return scores, inds, classes, ys, xs


def _gather(feat: Tensor, inds: Tensor) -> Tensor:
    """feat (B, C, H, W), inds (B, K) flat cell indices -> (B, K, C)."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return flat.gather(2, inds[:, None, :].expand(b, c, inds.shape[1])).permute(0, 2, 1)


def decode_task(out: Mapping[str, Tensor], cfg: BoxCoderConfig) -> list[Detections]:
    """Peaks of one task group's outputs -> boxes per sample (before NMS), labels within the group."""
    heat = out["heatmap"].sigmoid()
    k = cfg.max_num
    scores, inds, classes, ys, xs = _topk(heat, k)
    k = scores.shape[1]
    if "reg" in out:
        reg = _gather(out["reg"], inds)
        xs = xs[..., None] + reg[..., 0:1]
        ys = ys[..., None] + reg[..., 1:2]
    else:
        xs = xs[..., None] + 0.5
        ys = ys[..., None] + 0.5
    rot = _gather(out["rot"], inds)
    yaw = torch.atan2(rot[..., 0:1], rot[..., 1:2])
    hei = _gather(out["height"], inds)
    dim = _gather(out["dim"], inds)
    # A young or diverged head can predict any log size: exp() of it gave boxes of 1e10 m, which no
    # metric or picture survives. Nothing on a road is larger than MAX_BOX_SIZE.
    dim = dim.clamp(max=math.log(MAX_BOX_SIZE)).exp() if cfg.norm_bbox else dim.clamp(0.0, MAX_BOX_SIZE)
    xs, ys = cfg.grid.metric_coords(xs, ys)
    parts = [xs, ys, hei, dim, yaw]
    if "vel" in out:
        parts.append(_gather(out["vel"], inds))
    boxes = torch.cat(parts, dim=2)

    mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if cfg.coder_post_center_range is not None:
        rng = torch.tensor(cfg.coder_post_center_range, dtype=boxes.dtype, device=boxes.device)
        mask &= (boxes[..., :3] >= rng[:3]).all(2) & (boxes[..., :3] <= rng[3:]).all(2)
    if cfg.coder_score_threshold:
        mask &= scores > cfg.coder_score_threshold
    return [Detections(boxes[i, mask[i]], scores[i, mask[i]], classes[i, mask[i]].long())
            for i in range(scores.shape[0])]


def _range_mask(boxes: Tensor, rng: Sequence[float] | None) -> Tensor:
    if rng is None:
        return torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    r = torch.tensor(rng, dtype=boxes.dtype, device=boxes.device)
    return (boxes[:, :3] >= r[:3]).all(1) & (boxes[:, :3] <= r[3:]).all(1)


def _nms_task(det: Detections, task_id: int, cfg: BoxCoderConfig) -> Detections:
    keep = det.scores >= cfg.score_threshold if cfg.score_threshold > 0 else torch.ones_like(det.scores, dtype=torch.bool)
    boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
    if cfg.nms_type == "circle":
        sel = circle_nms(boxes[:, :2], scores, cfg.min_radius[task_id], cfg.post_max_size)
    else:
        # mmdet3d keeps only the best pre_max_size before NMS
        pre = scores.argsort(descending=True)[:cfg.pre_max_size]
        bev = boxes[pre][:, [0, 1, 3, 4, 6]]
        sel = pre[nms_rotated(bev, scores[pre], cfg.nms_thr, cfg.post_max_size)]
    boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
    m = _range_mask(boxes, cfg.post_center_limit_range)
    return Detections(boxes[m], scores[m], labels[m])


def decode_detections(outputs: Sequence[Mapping[str, Tensor]], cfg: BoxCoderConfig) -> list[Detections]:
    """All task groups' head outputs (`CenterHead.forward`) -> one `Detections` per sample, labels
    indexing the concatenated class list of the groups (`CenterHead.class_names`)."""
    per_task = [decode_task(o, cfg) for o in outputs]
    offsets = np.cumsum([0] + [o["heatmap"].shape[1] for o in outputs])
    result = []
    for i in range(len(per_task[0])):
        dets = [_nms_task(per_task[t][i], t, cfg) for t in range(len(outputs))]
        result.append(Detections(
            torch.cat([d.boxes for d in dets]),
            torch.cat([d.scores for d in dets]),
            torch.cat([d.labels + int(offsets[t]) for t, d in enumerate(dets)])))
    return result


def decode_probability_maps(heatmaps: np.ndarray, regression: np.ndarray, grid: BevGrid, score_threshold: float = 0.3,
                       max_boxes: int = 200):
    """Boxes decoded from a (K, H, W) probability heatmap and its (10, H, W) regression map
    (cache_schema.layout.REGRESSION_CHANNELS) (a teacher's cached maps): peaks above
    `score_threshold`, rotated NMS. Returns `Detections` (labels index the heatmap's classes)."""
    heat = torch.as_tensor(np.asarray(heatmaps, np.float32)).clamp(1e-6, 1 - 1e-6)
    reg = torch.as_tensor(np.asarray(regression, np.float32))
    outputs = {"heatmap": torch.logit(heat)[None], **split_regression(reg[None])}
    cfg = BoxCoderConfig(grid=grid, max_num=max_boxes,
                         coder_score_threshold=score_threshold, score_threshold=score_threshold,
                         nms_type="rotate", post_max_size=max_boxes, coder_post_center_range=None,
                         post_center_limit_range=None)
    return decode_detections([outputs], cfg)[0]


# --------------------------------------------------------------------------- under a BEV augmentation

def warp_task_map(task: torch.Tensor, bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Move a per-cell task-group index map [B, H, W] (long) with the same nearest-cell rule as the
    regression maps, so the task a regression cell is read from is the one it was written from."""
    qj, qi, _ = source_cells(bda, grid)
    return gather_cells(task[:, None].float(), qj, qi)[:, 0].round().long()


def teacher_task_map(heatmaps: torch.Tensor, classes: ClassSetup) -> torch.Tensor:
    """[..., K, H, W] class heatmaps -> [..., H, W] task-group index of the best class at each cell:
    the group the LiDAR teacher took each cell's regression from (teacher_export's CenterPoint)."""
    task_of = torch.tensor([next(t for t, task in enumerate(classes.tasks) if c in task) for c in classes.classes],
                           device=heatmaps.device)
    return task_of[heatmaps.argmax(-3)]


def warp_regression_maps(reg: torch.Tensor, bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Move CenterPoint regression maps [B, 10, H, W] into the augmented frame.

    Each output cell takes the channels of the source cell it lands in (nearest, not interpolated:
    neighbouring cells may describe different objects), then re-expresses them: the object centre
    (source cell corner + offset) is moved by `bda` and the new offset is taken from the output cell's
    corner; height follows bda's z row; log-dims gain log(scale); (cos, sin) of yaw and the velocity go
    through the linear xy part. Cells whose source lies outside the grid become 0."""
    b, c, h, w = reg.shape
    if c != len(REGRESSION_CHANNELS):
        raise ValueError(f"regression maps need {len(REGRESSION_CHANNELS)} channels, got {c}")
    qj, qi, valid = source_cells(bda, grid)
    src = split_regression(gather_cells(reg, qj, qi))
    bda = bda.to(reg.dtype)
    # Object centre in metres in the original frame.
    ox, oy = grid.metric_coords(qj + src["reg"][:, 0], qi + src["reg"][:, 1])
    oz = src["height"][:, 0]
    m = bda[:, :3, :, None, None]
    nx = m[:, 0, 0] * ox + m[:, 0, 1] * oy + m[:, 0, 2] * oz + m[:, 0, 3]
    ny = m[:, 1, 0] * ox + m[:, 1, 1] * oy + m[:, 1, 2] * oz + m[:, 1, 3]
    nz = m[:, 2, 0] * ox + m[:, 2, 1] * oy + m[:, 2, 2] * oz + m[:, 2, 3]
    nj, ni = grid.cell_coords(nx, ny)
    out_j = torch.arange(w, device=reg.device, dtype=reg.dtype).view(1, 1, w)
    out_i = torch.arange(h, device=reg.device, dtype=reg.dtype).view(1, h, 1)
    lin = m[:, :2, :2]
    sin, cos = src["rot"][:, 0], src["rot"][:, 1]
    hc = lin[:, 0, 0] * cos + lin[:, 0, 1] * sin
    hs = lin[:, 1, 0] * cos + lin[:, 1, 1] * sin
    norm = torch.sqrt(hc ** 2 + hs ** 2).clamp_min(1e-12) / torch.sqrt(sin ** 2 + cos ** 2)
    vx, vy = src["vel"][:, 0], src["vel"][:, 1]
    out = join_regression({
        "reg": torch.stack([nj - out_j, ni - out_i], 1),
        "height": nz[:, None],
        "dim": src["dim"] + torch.log(linear_scale(bda))[:, None, None, None],
        "rot": torch.stack([hs / norm, hc / norm], 1),
        "vel": torch.stack([lin[:, 0, 0] * vx + lin[:, 0, 1] * vy, lin[:, 1, 0] * vx + lin[:, 1, 1] * vy], 1),
    })
    return out * valid[:, None].to(out.dtype)  # no teacher data where the source left the grid


def augment_teacher_maps(bda: torch.Tensor, grid: BevGrid, bev_features: torch.Tensor | None = None,
                         heatmaps: torch.Tensor | None = None, regression: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Apply one BEV augmentation to the cached teacher maps (batched [B, C, H, W] with bda [B, 4, 4],
    or single [C, H, W] with bda [4, 4]). Returns (bev_features, heatmaps, regression)."""
    single = bda.dim() == 2
    bda_b = bda[None] if single else bda

    def run(x, fn):
        if x is None:
            return None
        y = fn(x[None] if single else x, bda_b, grid)
        return y[0] if single else y

    return run(bev_features, warp_bev_maps), run(heatmaps, warp_bev_maps), run(regression, warp_regression_maps)
