"""Waymo's 3D detection metrics in numpy: AP / APH at LEVEL_1 and LEVEL_2, and the camera-only track's
LET-3D-AP / LET-3D-APL (Hung et al., arXiv 2206.07705), with the official definitions.

Per frame and object type, predictions above each score cutoff are matched to ground truth by the
Hungarian algorithm maximising the summed (quantised) matching weight over the pairs that may match:
3D IoU at least the type's threshold; under LET, a prediction is first slid along its line of sight from
the sensor to where it is closest to the ground truth, the weight is that aligned IoU times the
longitudinal affinity 1 - |e_lon| / max(10% of the GT's range, 0.5 m), and the affinity must be positive.
A matched prediction is a TP (weighted by its heading accuracy 1 - |dheading| / pi for APH, by its
longitudinal affinity for APL); an unmatched one is an FP unless it overlaps a no-label zone; an unmatched
ground truth is an FN at the levels that include its difficulty (LEVEL_2 counts every box). AP is the
area under the P/R curve with precision made monotone and gaps in recall filled every 0.05. The test
suite holds this module to the official metric ops on fixtures (tests/fixtures/waymo).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from dataset_access.waymo.schema import BOX_TYPES, LEVEL_1, LEVEL_2

MAX_WEIGHT = 1_000_000  # matching weights are quantised to integers in [0, MAX_WEIGHT], as the official matcher does
_EPS = 1e-6
_MIN_DIM = 1e-2


@dataclass(frozen=True)
class LetConfig:
    """Longitudinal error tolerance: `tolerance` of the GT's range from `sensor` (the TOP LiDAR in the
    vehicle frame), at least `min_tolerance_m`."""

    tolerance: float = 0.1
    min_tolerance_m: float = 0.5
    sensor: tuple[float, float, float] = (1.43, 0.0, 2.18)


@dataclass(frozen=True)
class MetricConfig:
    """IoU threshold per box type, the score cutoffs and the recall step of the AP integral; `let` set
    for LET matching."""

    iou_thresholds: dict[int, float] = field(default_factory=lambda: {1: 0.7, 2: 0.5, 3: 0.5, 4: 0.5})
    score_cutoffs: tuple[float, ...] = tuple(i * 0.01 for i in range(100)) + (1.0,)
    recall_delta: float = 0.05
    let: LetConfig | None = None


# The 3D detection challenge, and the camera-only challenge's LET-3D-AP(L) (its lower IoU thresholds).
DETECTION_3D = MetricConfig()
CAMERA_ONLY_LET = MetricConfig(iou_thresholds={1: 0.5, 2: 0.3, 3: 0.3, 4: 0.3}, let=LetConfig())


def _corners(box: np.ndarray) -> np.ndarray:
    """(4, 2) BEV corners of (x, y, z, l, w, h, heading), counter-clockwise."""
    c, s = np.cos(box[6]), np.sin(box[6])
    dx = np.array([1, -1, -1, 1]) * box[3] / 2
    dy = np.array([1, 1, -1, -1]) * box[4] / 2
    return np.stack([box[0] + c * dx - s * dy, box[1] + s * dx + c * dy], axis=1)


def _clip(subject: np.ndarray, clipper: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon `subject` inside convex ccw polygon `clipper`."""
    out = subject
    for i in range(len(clipper)):
        if len(out) == 0:
            break
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        edge = b - a
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])
        nxt = []
        for j in range(len(out)):
            p, q = out[j], out[(j + 1) % len(out)]
            sp, sq = side[j], side[(j + 1) % len(out)]
            if sp >= 0:
                nxt.append(p)
            if (sp >= 0) != (sq >= 0):
                nxt.append(p + (q - p) * (sp / (sp - sq)))
        out = np.array(nxt).reshape(-1, 2)
    return out


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def iou_3d(a: np.ndarray, b: np.ndarray) -> float:
    """3D IoU of two upright boxes (x, y, z centre, length, width, height, heading)."""
    if min(a[3], a[4], a[5], b[3], b[4], b[5]) <= _MIN_DIM:
        return 0.0
    z_lo, z_hi = max(a[2] - a[5] / 2, b[2] - b[5] / 2), min(a[2] + a[5] / 2, b[2] + b[5] / 2)
    if z_lo > z_hi:
        return 0.0
    inter = _area(_clip(_corners(a), _corners(b))) * (z_hi - z_lo)
    union = a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter
    return 0.0 if union <= _EPS else float(np.clip(inter / union, 0.0, 1.0))


def longitudinal_affinity(pred: np.ndarray, gt: np.ndarray, let: LetConfig) -> float:
    """1 - |longitudinal error| / tolerance, clamped to [0, 1]; ranges from `let.sensor`."""
    p, g = pred[:3] - np.asarray(let.sensor), gt[:3] - np.asarray(let.sensor)
    g_range, p_range = max(float(np.linalg.norm(g)), _EPS), max(float(np.linalg.norm(p)), _EPS)
    cos = float(np.dot(p, g)) / g_range / p_range
    tolerance = max(let.tolerance * g_range, let.min_tolerance_m)
    return float(np.clip(1.0 - abs((p_range * cos - g_range) / tolerance), 0.0, 1.0))


def let_iou(pred: np.ndarray, gt: np.ndarray, let: LetConfig) -> float:
    """IoU after sliding `pred` along its line of sight to the point closest to `gt`'s centre."""
    sensor = np.asarray(let.sensor)
    p, g = pred.astype(np.float64).copy(), gt.astype(np.float64).copy()
    p[:3] -= sensor
    g[:3] -= sensor
    p[:3] *= float(np.dot(p[:3], g[:3])) / max(float(np.dot(p[:3], p[:3])), _EPS)
    return iou_3d(p, g)


def heading_accuracy(pred_heading: float, gt_heading: float) -> float:
    diff = abs(_wrap(pred_heading) - _wrap(gt_heading))
    if diff > np.pi:
        diff = 2 * np.pi - diff
    return float(np.clip(1.0 - diff / np.pi, 0.0, 1.0))


def _wrap(angle: float) -> float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def mean_average_precision(precisions: np.ndarray, recalls: np.ndarray, recall_delta: float) -> float:
    """Area under the P/R curve: the best precision at each recall, made monotone from high recall down,
    with points every `recall_delta` where recalls leave gaps; the curve's start (recall 0) takes the
    precision of its first real point."""
    if len(precisions) == 0:
        return 0.0
    best: dict[float, float] = {0.0: 1.0}
    for p, r in zip(np.float32(precisions), np.float32(recalls)):
        best[float(r)] = max(best.get(float(r), 0.0), float(p))
    curve = []  # (precision, recall), recall descending
    keys = sorted(best)
    last = keys[0]
    running = 0.0
    for r in reversed(keys):
        while last - r > recall_delta + 1e-6:
            last -= recall_delta
            curve.append((running, last))
        running = max(best[r], running)
        curve.append((running, r))
        last = r
    if len(curve) >= 2:
        curve[-1] = (curve[-2][0], curve[-1][1])
    return float(sum(0.5 * (curve[i - 1][1] - curve[i][1]) * (curve[i - 1][0] + curve[i][0])
                     for i in range(1, len(curve))))


@dataclass
class _Counts:
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    ha: np.ndarray
    la: np.ndarray


def _frame_weights(preds: np.ndarray, gts: np.ndarray, threshold: float, config: MetricConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(integer matching weights, longitudinal affinities), each (P, G); weight 0 where a pair may not match."""
    weights = np.zeros((len(preds), len(gts)), dtype=np.int64)
    affinity = np.ones((len(preds), len(gts)))
    reach = np.hypot(preds[:, 3], preds[:, 4])[:, None] / 2 + np.hypot(gts[:, 3], gts[:, 4])[None, :] / 2
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if config.let is not None:
                la = longitudinal_affinity(p, g, config.let)
                affinity[i, j] = la
                if la <= 0.0:
                    continue
                iou = let_iou(p, g, config.let)
                if iou >= threshold:
                    weights[i, j] = max(1, round(iou * la * MAX_WEIGHT))
            else:
                if np.hypot(p[0] - g[0], p[1] - g[1]) > reach[i, j]:
                    continue
                iou = iou_3d(p, g)
                if iou >= threshold:
                    weights[i, j] = max(1, round(iou * MAX_WEIGHT))
    return weights, affinity


def _count_frame(preds: np.ndarray, scores: np.ndarray, nlz: np.ndarray, gts: np.ndarray, difficulty: np.ndarray,
                 threshold: float, config: MetricConfig, counts: _Counts) -> None:
    weights, affinity = _frame_weights(preds, gts, threshold, config)
    for c, cutoff in enumerate(config.score_cutoffs):
        keep = np.flatnonzero(scores >= np.float32(cutoff))
        pd_match = np.full(len(keep), -1)
        gt_match = np.full(len(gts), -1)
        if len(keep) and len(gts):
            w = weights[keep]
            rows, cols = linear_sum_assignment(w, maximize=True)
            for r, g in zip(rows, cols):
                if w[r, g] > 0:
                    pd_match[r], gt_match[g] = g, r
        for level_index, level in enumerate((LEVEL_1, LEVEL_2)):
            for r, g in enumerate(pd_match):
                if g >= 0:
                    counts.tp[c, level_index] += 1
                    counts.ha[c, level_index] += heading_accuracy(preds[keep[r], 6], gts[g, 6])
                    counts.la[c, level_index] += affinity[keep[r], g] if config.let is not None else 1.0
                elif not nlz[keep[r]]:
                    counts.fp[c, level_index] += 1
            counts.fn[c, level_index] += int(np.sum((gt_match < 0) & (difficulty <= level)))


def detection_metrics(pred_boxes: np.ndarray, pred_types: np.ndarray, pred_scores: np.ndarray,
                      pred_frames: np.ndarray, gt_boxes: np.ndarray, gt_types: np.ndarray, gt_frames: np.ndarray,
                      gt_difficulty: np.ndarray, config: MetricConfig = DETECTION_3D,
                      pred_overlap_nlz: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Waymo metrics of predictions against ground truth, both as flat arrays: boxes (N, 7) x, y, z
    (centre), length, width, height, heading in each frame's vehicle frame; types (`schema.BOX_TYPES`);
    frames any per-frame id; GT difficulty 1 or 2 (0 counts as LEVEL_1). Returns {"VEHICLE_LEVEL_1": {"ap",
    "aph", "apl"}, ...} for every type that has ground truth or predictions."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 7)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 7)
    pred_types, gt_types = np.asarray(pred_types).astype(int), np.asarray(gt_types).astype(int)
    pred_frames, gt_frames = np.asarray(pred_frames), np.asarray(gt_frames)
    pred_scores = np.asarray(pred_scores, dtype=np.float32)
    gt_difficulty = np.asarray(gt_difficulty).astype(int)
    nlz = np.zeros(len(pred_boxes), bool) if pred_overlap_nlz is None else np.asarray(pred_overlap_nlz, bool)
    results = {}
    n_cut = len(config.score_cutoffs)
    for box_type in sorted(set(pred_types.tolist()) | set(gt_types.tolist())):
        if box_type not in config.iou_thresholds:
            continue
        counts = _Counts(*(np.zeros((n_cut, 2)) for _ in range(5)))
        p_sel, g_sel = pred_types == box_type, gt_types == box_type
        for frame in sorted(set(pred_frames[p_sel].tolist()) | set(gt_frames[g_sel].tolist())):
            p = np.flatnonzero(p_sel & (pred_frames == frame))
            g = np.flatnonzero(g_sel & (gt_frames == frame))
            _count_frame(pred_boxes[p], pred_scores[p], nlz[p], gt_boxes[g], gt_difficulty[g],
                         config.iou_thresholds[box_type], config, counts)
        for level_index, level_name in enumerate(("LEVEL_1", "LEVEL_2")):
            tp, fp, fn = counts.tp[:, level_index], counts.fp[:, level_index], counts.fn[:, level_index]
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
                curves = {name: np.where(tp + fp > 0, num / (tp + fp), 0.0)
                          for name, num in (("ap", tp), ("aph", counts.ha[:, level_index]),
                                            ("apl", counts.la[:, level_index]))}
            out = {}
            for name, precision in curves.items():
                precision = np.where(recall == 0.0, 1.0, precision)
                out[name] = mean_average_precision(precision, recall, config.recall_delta)
            results[f"{BOX_TYPES[box_type].upper()}_{level_name}"] = out
    return results
