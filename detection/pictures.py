"""Pictures: what the teachers cached and what the student predicts, drawn headless with matplotlib.

Used by `x3kd-cache show` (one cached sample), `x3kd-student eval --render` (predictions) and the
TensorBoard images of `x3kd-student train` (student.tensorboard_images). Figures are built on matplotlib's Agg canvas directly, never
through pyplot, so nothing here needs a display or changes the caller's backend.

Pixel conventions (the tests hold pictures to them):
- A BEV picture shows the grid's x to the right and y up (nuScenes' LIDAR_TOP looks along +y, so the
  ego drives up the picture), `scale` pixels per BEV cell; the point (x, y) lands in pixel
  (row, col) = (floor((y_max - y) / cell_y * scale), floor((x - x_min) / cell_x * scale)).
- A camera picture is the image at its own resolution; integer image coordinates are pixel centres
  (the intrinsics' convention), so a point projecting to (u, v) lands in pixel (round(v), round(u)).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cache_schema.boxes import BOX_EDGES, box_corners
from cache_schema.grid import BevGrid
from cache_schema.views import CacheSample, Calib
from detection.centerpoint_coder import decode_probability_maps

_DPI = 100
GT_COLOR = (0.1, 0.95, 0.2)
PRED_COLOR = (0.15, 0.55, 1.0)
TEACHER_COLOR = (1.0, 0.25, 0.85)
RADAR_COLOR = (0.2, 0.95, 0.95)
# nuScenes' usual six-camera mosaic: front row left to right, then the back row.
MOSAIC_ORDER: tuple[tuple[str, ...], ...] = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))
NEAR_PLANE = 0.1


def class_color(label: int) -> tuple[float, float, float]:
    """A distinct colour per class index (matplotlib's tab10)."""
    import matplotlib

    return tuple(matplotlib.colormaps["tab10"](int(label) % 10)[:3])


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "magma") -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through a matplotlib colormap over [vmin, vmax]."""
    import matplotlib

    t = (np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12)
    return (matplotlib.colormaps[cmap](np.clip(t, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def feature_rgb(features: np.ndarray) -> np.ndarray:
    """(C, H, W) feature map -> (H, W, 3) uint8: its three principal components as R, G, B, each
    stretched between its 1st and 99th percentile. Cells of similar features get similar colours."""
    c = features.shape[0]
    x = np.asarray(features, np.float64).reshape(c, -1).T
    x = x - x.mean(0)
    _, vecs = np.linalg.eigh(x.T @ x)
    comps = x @ vecs[:, ::-1][:, :3]
    if comps.shape[1] < 3:
        comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = np.percentile(comps, 1, axis=0), np.percentile(comps, 99, axis=0)
    rgb = np.clip((comps - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return (rgb.reshape(*features.shape[1:], 3) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------- canvases ---

class Picture:
    """A figure whose one axes fills it exactly, so data coordinates map to known pixels."""

    def __init__(self, width_px: int, height_px: int) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.size = (int(height_px), int(width_px))
        self.figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()

    def pixels(self) -> np.ndarray:
        """The picture as (H, W, 3) uint8."""
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()

    def save(self, path: str | Path) -> Path:
        return save_png(self.pixels(), path)


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(p)
    return p


@dataclass(frozen=True)
class BevView:
    """A picture of the BEV grid at `scale` pixels per cell."""

    grid: BevGrid
    scale: int = 4

    @property
    def extent(self) -> tuple[float, float, float, float]:
        r = self.grid.point_cloud_range
        return (r[0], r[3], r[1], r[4])

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.grid.shape
        return (h * self.scale, w * self.scale)

    def pixel_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the pixel that shows the point (x, y)."""
        x0, x1, y0, y1 = self.extent
        h, w = self.size
        return (int(np.floor((y1 - y) / (y1 - y0) * h)), int(np.floor((x - x0) / (x1 - x0) * w)))

    def picture(self, background: np.ndarray | None = None) -> Picture:
        """A BEV picture over `background`: (H, W, 3) uint8 in grid cells (row = y index), or None."""
        h, w = self.size
        pic = Picture(w, h)
        x0, x1, y0, y1 = self.extent
        if background is None:
            background = np.zeros((*self.grid.shape, 3), np.uint8)
        # origin "lower": row i of a BEV map covers y in [y_min + i*cell, y_min + (i+1)*cell).
        pic.ax.imshow(background, extent=self.extent, origin="lower", interpolation="nearest")
        pic.ax.set_xlim(x0, x1)
        pic.ax.set_ylim(y0, y1)
        return pic


def draw_bev_boxes(ax, boxes: np.ndarray, color=GT_COLOR, labels: Sequence[str] | None = None,
                   linewidth: float = 1.5, linestyle: str = "-", alpha: float = 1.0) -> None:
    """Outlines of (M, >=7) boxes seen from above, with a line from the centre to the front face, and
    `labels` beside them where they do not cover a label already on the picture (dense scenes keep
    the first ones: the caller orders boxes by what matters most, e.g. by score)."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        return
    boxes = np.atleast_2d(boxes)
    placed = getattr(ax, "_x3kd_label_pixels", [])
    for i, corners in enumerate(box_corners(boxes)):
        ring = corners[[0, 1, 3, 2, 0], :2]
        ax.plot(ring[:, 0], ring[:, 1], color=color, linewidth=linewidth, linestyle=linestyle, alpha=alpha)
        front = corners[[1, 3], :2].mean(0)
        ax.plot([boxes[i, 0], front[0]], [boxes[i, 1], front[1]], color=color, linewidth=linewidth, alpha=alpha)
        if labels is not None:
            at = (corners[:4, 0].max(), corners[:4, 1].max())
            px, py = ax.transData.transform(at)
            # a 6-point label is ~8 px high and ~4 px per character wide at 100 dpi
            width = 4.2 * len(labels[i])
            if any(abs(py - qy) < 9 and px < qx + qw and qx < px + width for qx, qy, qw in placed):
                continue
            placed.append((px, py, width))
            ax.text(*at, labels[i], color=color, fontsize=6, alpha=alpha)
    ax._x3kd_label_pixels = placed


def draw_bev_centres(ax, centres: np.ndarray, color=TEACHER_COLOR) -> None:
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=20, c=[color], linewidths=1.2)


def draw_bev_radar(ax, points: np.ndarray, arrow_seconds: float = 0.5) -> None:
    """Radar points (N, >=6: x, y, z, rcs, vx_comp, vy_comp, ...) seen from above: cyan dots, and for
    each a line showing how far its compensated Doppler velocity carries it in `arrow_seconds`."""
    points = np.asarray(points, np.float64)
    if not points.size:
        return
    ax.scatter(points[:, 0], points[:, 1], s=4, c=[RADAR_COLOR], linewidths=0)
    ends = points[:, :2] + arrow_seconds * points[:, 4:6]
    for p, e in zip(points, ends):
        ax.plot([p[0], e[0]], [p[1], e[1]], color=RADAR_COLOR, linewidth=0.6)


def camera_picture(image: np.ndarray) -> Picture:
    """A picture of an (H, W, 3) uint8 image at its own resolution, pixel centres at integers."""
    h, w = image.shape[:2]
    pic = Picture(w, h)
    pic.ax.imshow(image, interpolation="nearest")
    pic.ax.set_xlim(-0.5, w - 0.5)
    pic.ax.set_ylim(h - 0.5, -0.5)
    return pic


DEPTH_RANGE_M = 60.0  # depth pictures colour 0..60 m


def draw_depth_points(ax, depth: np.ndarray, stride: int, max_depth: float = DEPTH_RANGE_M, cmap: str = "turbo"
                      ) -> None:
    """The cached sparse LiDAR depth targets as dots coloured by depth. Cell (r, c) of a stride-s map
    covers pixels [r*s, (r+1)*s) x [c*s, (c+1)*s), so its dot sits at the centre of that block."""
    rows, cols = np.nonzero(np.asarray(depth) > 0)
    if len(rows) == 0:
        return
    u = cols * stride + (stride - 1) / 2
    v = rows * stride + (stride - 1) / 2
    size_pt = max(2.0, stride * 0.8) * 72 / _DPI
    ax.scatter(u, v, c=np.asarray(depth)[rows, cols], cmap=cmap, vmin=0, vmax=max_depth, s=size_pt ** 2,
               marker="s", linewidths=0)


def project_box_edges(boxes: np.ndarray, lidar_to_camera: np.ndarray, intrinsics: np.ndarray) -> list[np.ndarray]:
    """Per box, its visible edges as (E, 2, 2) pixel segments: each of the 12 edges clipped to the part
    in front of the camera's near plane, then projected. Boxes wholly behind give (0, 2, 2)."""
    t = np.asarray(lidar_to_camera, np.float64)
    k = np.asarray(intrinsics, np.float64)
    out = []
    for corners in box_corners(boxes) if len(boxes) else []:
        cam = corners @ t[:3, :3].T + t[:3, 3]
        segs = []
        for a, b in BOX_EDGES:
            pa, pb = cam[a], cam[b]
            if pa[2] < NEAR_PLANE and pb[2] < NEAR_PLANE:
                continue
            if pa[2] < NEAR_PLANE or pb[2] < NEAR_PLANE:
                f = (NEAR_PLANE - pa[2]) / (pb[2] - pa[2])
                cut = pa + f * (pb - pa)
                pa, pb = (cut, pb) if pa[2] < NEAR_PLANE else (pa, cut)
            uv = np.stack([pa, pb]) @ k.T
            segs.append(uv[:, :2] / uv[:, 2:3])
        out.append(np.asarray(segs).reshape(-1, 2, 2))
    return out


def draw_camera_boxes(ax, boxes: np.ndarray, lidar_to_camera: np.ndarray, intrinsics: np.ndarray,
                      color=GT_COLOR, linewidth: float = 1.2) -> None:
    """3D boxes (LiDAR frame) projected into a camera picture as wireframes."""
    from matplotlib.collections import LineCollection

    segs = [s for s in project_box_edges(boxes, lidar_to_camera, intrinsics) if len(s)]
    if segs:
        ax.add_collection(LineCollection(np.concatenate(segs), colors=[color], linewidths=linewidth))


def draw_instances(ax, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
                   image_hw: tuple[int, int], class_names: Sequence[str], alpha: float = 0.45) -> None:
    """Image-teacher detections: 28x28 masks pasted into their boxes (detection.masks.paste_masks, the
    same pasting X-IS trains on), box outlines and "class score" captions. Boxes are xyxy in
    continuous pixels (pixel j spans [j, j+1)); padding rows (label -1) are skipped."""
    from matplotlib.patches import Rectangle

    from detection.masks import paste_masks

    keep = np.asarray(labels) >= 0
    boxes, labels, scores, masks = (np.asarray(v)[keep] for v in (boxes, labels, scores, masks))
    if len(boxes) == 0:
        return
    pasted = paste_masks(masks.astype(np.float32) / (255.0 if masks.dtype == np.uint8 else 1.0), boxes, image_hw)
    overlay = np.zeros((*image_hw, 4))
    for m, label in zip(pasted, labels):
        on = m > 0.5
        overlay[on, :3] = class_color(label)
        overlay[on, 3] = alpha
    ax.imshow(overlay, interpolation="nearest", extent=(-0.5, image_hw[1] - 0.5, image_hw[0] - 0.5, -0.5))
    for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
        color = class_color(label)
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.2))
        ax.text(x1 - 0.5, y1 - 1.5, f"{class_names[int(label)]} {float(score):.2f}", color=color, fontsize=6,
                verticalalignment="bottom")


def mosaic(tiles: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Camera pictures of one size laid out as nuScenes shows them (front row, back row; other camera
    names in extra rows). Returns the mosaic and each camera's (row, col) pixel origin in it."""
    names = list(tiles)
    rows = [[n for n in row if n in tiles] for row in MOSAIC_ORDER]
    rest = [n for n in names if all(n not in r for r in MOSAIC_ORDER)]
    rows += [rest[i:i + 3] for i in range(0, len(rest), 3)]
    rows = [r for r in rows if r]
    h, w = next(iter(tiles.values())).shape[:2]
    out = np.zeros((h * len(rows), w * max(len(r) for r in rows), 3), np.uint8)
    origins = {}
    for i, row in enumerate(rows):
        for j, name in enumerate(row):
            out[i * h:(i + 1) * h, j * w:(j + 1) * w] = tiles[name]
            origins[name] = (i * h, j * w)
    return out, origins


def caption(pic: Picture, text: str) -> None:
    pic.ax.text(0.01, 0.99, text, transform=pic.ax.transAxes, color="white", fontsize=7, verticalalignment="top",
                bbox={"facecolor": "black", "alpha": 0.5, "linewidth": 0, "pad": 1})


# BEV pictures are drawn at least this many pixels wide by default: labels of a dense scene fit, titles fit
DEFAULT_BEV_PIXELS = 640
EGO_COLOR = (1.0, 1.0, 1.0)
EGO_SIZE = (1.9, 4.6)  # width (x), length (y) in metres: a nuScenes car; LIDAR_TOP looks along +y


def default_scale(grid: BevGrid) -> int:
    """Pixels per BEV cell for a picture at least DEFAULT_BEV_PIXELS wide (at least 4)."""
    return max(4, -(-DEFAULT_BEV_PIXELS // max(grid.shape)))


def bev_furniture(pic: Picture, view: BevView, legend: Sequence[tuple[str, tuple, str]] = ()) -> None:
    """What makes a BEV picture readable on its own: the ego car at the origin (white, its front the
    triangle, driving up the picture), a metre scale bar at the lower left, and a legend (label, colour,
    line style: "-" a line, "--" dashed, "x" a marker, "o" a dot) at the upper right."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon, Rectangle

    ax = pic.ax
    w, length = EGO_SIZE
    ax.add_patch(Rectangle((-w / 2, -length / 2), w, length, fill=False, edgecolor=EGO_COLOR, linewidth=1.2))
    ax.add_patch(Polygon([(-w / 2, length / 2 - 1.0), (w / 2, length / 2 - 1.0), (0.0, length / 2)], closed=True,
                         facecolor=EGO_COLOR, edgecolor=EGO_COLOR))
    x0, x1, y0, y1 = view.extent
    span = x1 - x0
    bar = 10.0 if span >= 40 else 5.0 if span >= 15 else 1.0
    bx, by = x0 + 0.04 * span, y0 + 0.04 * (y1 - y0)
    ax.plot([bx, bx + bar], [by, by], color=EGO_COLOR, linewidth=2.0, solid_capstyle="butt")
    ax.text(bx + bar / 2, by + 0.01 * (y1 - y0), f"{bar:g} m", color=EGO_COLOR, fontsize=7,
            horizontalalignment="center", verticalalignment="bottom")
    if legend:
        handles = [Line2D([], [], color=c, linestyle="none" if s in ("x", "o") else s,
                          marker=s if s in ("x", "o") else None, label=label) for label, c, s in legend]
        ax.legend(handles=handles, loc="upper right", fontsize=6, framealpha=0.6, facecolor="black",
                  labelcolor="white", edgecolor="none")


def colour_bar(width: int, vmax: float, cmap: str, unit: str, label: str, height: int = 44) -> np.ndarray:
    """(height, width, 3) uint8: a horizontal colour bar from 0 to `vmax` with ticks in `unit` and a
    label, to put under a mosaic of pictures coloured by `cmap` over that range."""
    pic = Picture(width, height)
    pic.figure.patch.set_facecolor("black")
    ax = pic.ax
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    left, right = 0.08 * width, 0.92 * width
    ax.imshow(np.linspace(0, 1, 256)[None], cmap=cmap, aspect="auto", extent=(left, right, 16, 4))
    step = 10.0 if vmax >= 40 else 5.0 if vmax >= 10 else 1.0
    for v in np.arange(0, vmax + 1e-9, step):
        x = left + (right - left) * v / vmax
        ax.plot([x, x], [16, 19], color="white", linewidth=0.8)
        ax.text(x, 20, f"{v:g}", color="white", fontsize=7, horizontalalignment="center", verticalalignment="top")
    ax.text(right + 6, 10, unit, color="white", fontsize=7, verticalalignment="center")
    ax.text(width / 2, height - 2, label, color="white", fontsize=7, horizontalalignment="center",
            verticalalignment="bottom")
    return pic.pixels()



# ------------------------------------------------------------------------------ whole pictures ---

def _read_rgb(dataroot: str | Path | None, relative: str, image_hw: tuple[int, int]) -> np.ndarray:
    """The camera JPEG as (H, W, 3) uint8, or a grey canvas of the cached image size without a dataroot."""
    if dataroot is None:
        return np.full((*image_hw, 3), 96, np.uint8)
    from dataset_access.images import read_rgb

    return read_rgb(Path(dataroot) / relative)


def render_cache_sample(sample: CacheSample, config, out_dir: str | Path, dataroot: str | Path | None = None,
                        score_threshold: float = 0.3, scale: int | None = None) -> list[Path]:
    """PNGs of one cached sample (`CacheReader[i]` with every group) into `out_dir`:

    bev_teacher_heatmap.png   teacher class heatmaps (max over classes), GT boxes (green), boxes decoded
                              from the teacher's heatmap + regression maps (magenta, dashed, x = centre)
    bev_teacher_features.png  teacher BEV features, three principal components as RGB, GT boxes
    bev_gt.png                GT boxes alone (a store without a LiDAR teacher)
    bev_radar.png             the cached multi-sweep radar points (cyan, lines = 0.5 s of compensated
                              Doppler velocity) over the teacher heatmap, GT green (stores with radar)
    cameras_depth.png         each camera with its cached LiDAR depth targets (turbo: near blue, far
                              red; the colour bar under the cameras is in metres)
    cameras_teacher.png       each camera with the image teacher's masks, boxes, classes and scores and
                              the GT boxes projected (green)
    `sample` is `CacheReader[i]` with every group. Camera pictures show the JPEGs when `dataroot` is
    given, a grey canvas otherwise. BEV pictures carry the ego car, a metre scale and a legend; `scale`
    (pixels per cell) defaults to a picture ~640 pixels wide."""
    out = Path(out_dir)
    grid, classes = config.grid, config.classes.classes
    view = BevView(grid, scale or default_scale(grid))
    gt, gt_labels = sample.gt.present()
    gt_names = [classes[int(k)] for k in gt_labels]
    written = []
    teacher = sample.lidar_teacher
    gt_entry = (f"GT ({len(gt)})", GT_COLOR, "-")
    if teacher is not None:
        heat = np.asarray(teacher.heatmaps)
        pic = view.picture(colorize(heat.max(0), 0.0, 1.0))
        draw_bev_boxes(pic.ax, gt, GT_COLOR, gt_names)
        dets = decode_probability_maps(heat, teacher.regression, grid, score_threshold)
        draw_bev_boxes(pic.ax, dets.boxes.numpy(), TEACHER_COLOR, linestyle="--")
        draw_bev_centres(pic.ax, dets.boxes[:, :2].numpy())
        caption(pic, "teacher heatmap, max over classes (0..1)")
        bev_furniture(pic, view, [gt_entry, (f"teacher boxes >= {score_threshold:g} ({len(dets)})", TEACHER_COLOR,
                                             "--")])
        written.append(pic.save(out / "bev_teacher_heatmap.png"))
        pic = view.picture(feature_rgb(np.asarray(teacher.bev_features)))
        draw_bev_boxes(pic.ax, gt, GT_COLOR)
        caption(pic, "teacher BEV features, 3 principal components as RGB")
        bev_furniture(pic, view, [gt_entry])
        written.append(pic.save(out / "bev_teacher_features.png"))
    else:
        pic = view.picture()
        draw_bev_boxes(pic.ax, gt, GT_COLOR, gt_names)
        caption(pic, "GT boxes (the store has no LiDAR teacher)")
        bev_furniture(pic, view, [gt_entry])
        written.append(pic.save(out / "bev_gt.png"))
    if sample.radar is not None:
        radar = sample.radar.present()
        pic = view.picture(colorize(np.asarray(teacher.heatmaps).max(0), 0.0, 1.0) if teacher is not None else None)
        draw_bev_boxes(pic.ax, gt, GT_COLOR)
        draw_bev_radar(pic.ax, radar)
        caption(pic, "radar points over the teacher heatmap" if teacher is not None else "radar points")
        bev_furniture(pic, view, [gt_entry, (f"radar points ({len(radar)}), line: 0.5 s of Doppler", RADAR_COLOR,
                                             "o")])
        written.append(pic.save(out / "bev_radar.png"))

    calib = sample.calib
    lidar_to_cams = np.linalg.inv(calib.camera_to_lidar())
    image_hw = tuple(config.image_size)
    depth_tiles, teacher_tiles = {}, {}
    for i, name in enumerate(config.cameras):
        image = _read_rgb(dataroot, calib.image_paths[i], image_hw)
        if sample.depth is not None:
            pic = camera_picture(image)
            draw_depth_points(pic.ax, sample.depth.depth[i], config.depth_stride)
            caption(pic, f"{name}: LiDAR depth targets")
            depth_tiles[name] = pic.pixels()
        pic = camera_picture(image)
        inst = sample.image_teacher
        if inst is not None:
            draw_instances(pic.ax, inst.boxes[i], inst.labels[i], inst.scores[i], inst.masks[i], image_hw, classes)
        draw_camera_boxes(pic.ax, gt, lidar_to_cams[i], calib.cam_intrinsics[i], GT_COLOR)
        caption(pic, f"{name}: image teacher, GT green")
        teacher_tiles[name] = pic.pixels()
    if depth_tiles:
        tiles = mosaic(depth_tiles)[0]
        bar = colour_bar(tiles.shape[1], DEPTH_RANGE_M, "turbo", "m", "LiDAR depth target")
        written.append(save_png(np.concatenate([tiles, bar]), out / "cameras_depth.png"))
    written.append(save_png(mosaic(teacher_tiles)[0], out / "cameras_teacher.png"))
    return written


def render_prediction(out_dir: str | Path, stem: str, calib: Calib, dataroot: str | Path, grid: BevGrid,
                      class_names: Sequence[str], pred_boxes: np.ndarray, pred_scores: np.ndarray,
                      pred_labels: np.ndarray, gt_boxes: np.ndarray, gt_names: Sequence[str],
                      heatmap: np.ndarray | None = None, score_threshold: float = 0.3, scale: int | None = None,
                      camera_names: Sequence[str] | None = None, radar_points: np.ndarray | None = None,
                      top: int = 20) -> list[Path]:
    """`<stem>_bev.png` (the student's heatmap, GT green, its `top` predictions by score blue with class
    and score, those below `score_threshold` dotted and fainter, a radar student's input points cyan)
    and `<stem>_cameras.png` (each camera with GT and the predictions >= `score_threshold` projected) of
    one sample; boxes in the sample's LiDAR frame. A young student whose every score is below the
    threshold still shows what it predicts."""
    out = Path(out_dir)
    order = np.argsort(-np.asarray(pred_scores))[:top]
    boxes, scores, labels = (np.asarray(v)[order] for v in (pred_boxes, pred_scores, pred_labels))
    above = scores >= score_threshold
    view = BevView(grid, scale or default_scale(grid))
    pic = view.picture(None if heatmap is None else colorize(np.asarray(heatmap).max(0), 0.0, 1.0))
    draw_bev_boxes(pic.ax, gt_boxes, GT_COLOR)
    if radar_points is not None:
        draw_bev_radar(pic.ax, radar_points)
    text = [f"{class_names[int(k)]} {s:.2f}" for k, s in zip(labels, scores)]
    draw_bev_boxes(pic.ax, boxes[above], PRED_COLOR, [s for s, a in zip(text, above) if a])
    draw_bev_boxes(pic.ax, boxes[~above], PRED_COLOR, [s for s, a in zip(text, above) if not a], linewidth=1.0,
                   linestyle=":", alpha=0.55)
    caption(pic, "student heatmap, max over classes (0..1)" if heatmap is not None else "student predictions")
    legend = [(f"GT ({len(gt_boxes)})", GT_COLOR, "-"), (f"predictions >= {score_threshold:g} ({int(above.sum())})",
                                                          PRED_COLOR, "-"),
              (f"below {score_threshold:g}, top {top} ({int((~above).sum())})", PRED_COLOR, ":")]
    if radar_points is not None:
        legend.append((f"radar points ({len(radar_points)})", RADAR_COLOR, "o"))
    bev_furniture(pic, view, legend)
    written = [pic.save(out / f"{stem}_bev.png")]
    lidar_to_cams = np.linalg.inv(calib.camera_to_lidar())
    names = list(camera_names) if camera_names is not None else [f"CAM_{i}" for i in range(calib.num_cameras)]
    tiles = {}
    for i, name in enumerate(names):
        image = _read_rgb(dataroot, calib.image_paths[i], (0, 0))
        pic = camera_picture(image)
        draw_camera_boxes(pic.ax, gt_boxes, lidar_to_cams[i], calib.cam_intrinsics[i], GT_COLOR)
        draw_camera_boxes(pic.ax, boxes[above], lidar_to_cams[i], calib.cam_intrinsics[i], PRED_COLOR)
        caption(pic, f"{name}: GT green, predictions >= {score_threshold:g} blue")
        tiles[name] = pic.pixels()
    shapes = {t.shape for t in tiles.values()}
    if len(shapes) == 1:
        written.append(save_png(mosaic(tiles)[0], out / f"{stem}_cameras.png"))
    else:  # cameras of different sizes cannot share a mosaic
        written += [save_png(t, out / f"{stem}_{name}.png") for name, t in tiles.items()]
    return written
