"""Pictures (detection.pictures, `x3kd-cache show`, `eval --render`), held to pixels:
a box drawn at a known BEV position colours its outline there, a depth point lands at its projected
pixel, a projected 3D box's corners are where the pinhole model puts them."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cache_schema import CacheReader
from cache_schema.boxes import box_corners
from cache_schema.grid import BevGrid
from detection.centerpoint_coder import decode_probability_maps
from detection.pictures import (GT_COLOR, PRED_COLOR, RADAR_COLOR, BevView, bev_furniture, camera_picture, colorize,
                                colour_bar, default_scale, draw_bev_boxes, draw_camera_boxes, draw_depth_points,
                                draw_instances, mosaic)

GRID = BevGrid((-25.6, -25.6, -5.0, 25.6, 25.6, 3.0), (0.2, 0.2, 8.0), 4)  # 64 x 64 cells of 0.8 m
# A camera at the LiDAR origin looking along +x (camera z = LiDAR x, camera x = -LiDAR y, y = -z).
LIDAR_TO_CAM = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]])


def _is_green(pixels: np.ndarray, row: int, col: int, reach: int = 1) -> bool:
    """Some pixel within `reach` of (row, col) has the GT green."""
    patch = pixels[max(row - reach, 0):row + reach + 1, max(col - reach, 0):col + reach + 1].astype(int)
    target = (np.array(GT_COLOR) * 255).astype(int)
    return bool((np.abs(patch - target).max(-1) < 60).any())


def _box(x, y, z=0.0, l=4.0, w=2.0, h=1.5, yaw=0.0):
    return np.array([x, y, z, l, w, h, yaw, 0.0, 0.0])


@pytest.mark.parametrize("yaw", [0.0, np.pi / 2])
def test_a_bev_box_colours_its_outline_where_it_is(yaw):
    view = BevView(GRID, scale=4)
    pic = view.picture()
    draw_bev_boxes(pic.ax, _box(10.0, 5.0, yaw=yaw)[None])
    px = pic.pixels()
    assert px.shape == (*view.size, 3) == (256, 256, 3)
    # Midpoints of the two long sides and the two ends, in the box's own frame.
    along = np.array([np.cos(yaw), np.sin(yaw)])
    across = np.array([-np.sin(yaw), np.cos(yaw)])
    centre = np.array([10.0, 5.0])
    for p in (centre + 2.0 * along, centre - 2.0 * along, centre + 1.0 * across, centre - 1.0 * across):
        assert _is_green(px, *view.pixel_of(*p)), (yaw, p)
    # Where the box would be with the other orientation, and far away, nothing is drawn.
    other = centre + 2.0 * np.array([np.cos(yaw + np.pi / 2), np.sin(yaw + np.pi / 2)])
    assert not _is_green(px, *view.pixel_of(*other), reach=0)
    assert not _is_green(px, *view.pixel_of(-15.0, -15.0), reach=2)
    # y points up: a box at +y is drawn in the upper half.
    assert view.pixel_of(10.0, 5.0)[0] < view.size[0] // 2


def test_bev_background_rows_follow_y_up():
    view = BevView(GRID, scale=2)
    heat = np.zeros(GRID.shape)
    row, col = 50, 10  # BEV map row = y index, from y_min
    heat[row, col] = 1.0
    px = view.picture(colorize(heat, 0, 1)).pixels()
    x = GRID.point_cloud_range[0] + (col + 0.5) * GRID.cell_size[0]
    y = GRID.point_cloud_range[1] + (row + 0.5) * GRID.cell_size[1]
    r, c = view.pixel_of(x, y)
    assert px[r, c].tolist() == colorize(np.ones((1, 1)), 0, 1)[0, 0].tolist()
    assert px.reshape(-1, 3).tolist().count(px[r, c].tolist()) == 4  # one cell = 2 x 2 pixels


def test_a_depth_target_lands_at_its_projected_pixel():
    from teacher_export.targets import depth_image

    point = np.array([[12.0, -1.3, 0.4]])
    depth = depth_image(point, LIDAR_TO_CAM, K, (90, 160), stride=4)
    assert (depth > 0).sum() == 1
    cam = LIDAR_TO_CAM[:3, :3] @ point[0]
    u, v = (K @ cam)[:2] / cam[2]
    pic = camera_picture(np.zeros((90, 160, 3), np.uint8))
    draw_depth_points(pic.ax, depth, stride=4, max_depth=60.0)
    px = pic.pixels()
    assert px.shape == (90, 160, 3)
    hit = px[int(round(v)), int(round(u))]
    assert hit.sum() > 100, hit
    # Coloured by its depth on the turbo scale.
    expected = colorize(np.array([[12.0]]), 0, 60.0, "turbo")[0, 0].astype(int)
    assert np.abs(hit.astype(int) - expected).max() < 40
    assert px[5, 5].sum() == 0 and px[80, 150].sum() == 0


def test_a_projected_box_has_its_corners_at_their_pinhole_pixels():
    box = _box(10.0, 0.5, yaw=0.3)
    pic = camera_picture(np.zeros((90, 160, 3), np.uint8))
    draw_camera_boxes(pic.ax, box[None], LIDAR_TO_CAM, K)
    px = pic.pixels()
    cam = box_corners(box[None])[0] @ LIDAR_TO_CAM[:3, :3].T
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    for u, v in uv:
        assert _is_green(px, int(round(v)), int(round(u))), (u, v)
    assert not _is_green(px, 2, 2, reach=1)
    # A box behind the camera draws nothing.
    pic = camera_picture(np.zeros((90, 160, 3), np.uint8))
    draw_camera_boxes(pic.ax, _box(-10.0, 0.0)[None], LIDAR_TO_CAM, K)
    assert pic.pixels().sum() == 0


def test_instance_masks_tint_their_box_only():
    image = np.zeros((90, 160, 3), np.uint8)
    pic = camera_picture(image)
    masks = np.full((1, 28, 28), 255, np.uint8)
    draw_instances(pic.ax, np.array([[40.0, 20.0, 80.0, 60.0]]), np.array([0]), np.array([0.9]), masks, (90, 160),
                   ["car"])
    px = pic.pixels()
    assert px[40, 60].sum() > 60  # inside: the class colour at alpha 0.45 over black
    assert px[40, 100].sum() == 0 and px[75, 60].sum() == 0  # outside the box: untouched
    # Padding rows (label -1) draw nothing.
    pic = camera_picture(image)
    draw_instances(pic.ax, np.array([[40.0, 20.0, 80.0, 60.0]]), np.array([-1]), np.array([0.9]), masks, (90, 160),
                   ["car"])
    assert pic.pixels().sum() == 0


def test_mosaic_lays_cameras_out_front_row_first():
    tiles = {name: np.full((4, 6, 3), i, np.uint8) for i, name in enumerate(
        ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"])}
    out, origins = mosaic(tiles)
    assert out.shape == (8, 18, 3)
    assert origins["CAM_FRONT_LEFT"] == (0, 0) and origins["CAM_FRONT"] == (0, 6) and origins["CAM_BACK_RIGHT"] == (4, 12)
    for name, (r, c) in origins.items():
        assert (out[r:r + 4, c:c + 6] == tiles[name]).all()


def test_teacher_maps_decode_to_the_box_they_encode():
    from detection.centerpoint_coder import encode_boxes

    box = torch.tensor([[6.3, -4.1, -0.7, 4.2, 1.9, 1.6, 0.4, 1.0, -2.0]])
    cells, target, inside = encode_boxes(box, GRID)
    heat = np.zeros((10, *GRID.shape), np.float32)
    reg = np.zeros((10, *GRID.shape), np.float32)
    col, row = cells[0].tolist()
    heat[3, row, col] = 0.8
    reg[:, row, col] = target[0].numpy()
    det = decode_probability_maps(heat, reg, GRID, score_threshold=0.3)
    assert len(det) == 1 and det.labels.tolist() == [3]
    np.testing.assert_allclose(det.boxes[0].numpy(), box[0].numpy(), atol=1e-4)
    assert len(decode_probability_maps(heat * 0.2, reg, GRID, score_threshold=0.3)) == 0





def test_show_draws_a_cached_sample_from_a_local_and_an_fsspec_store(train_cache, synthetic_dataroot, tmp_path):
    import fsspec

    from teacher_export.cli import main

    reader = CacheReader(train_cache)
    sample = reader[0]
    n = int(sample.gt.count)
    out = tmp_path / "show"
    r = CliRunner().invoke(main, ["show", train_cache, "--sample", reader.tokens[0], "--dataroot",
                                  str(synthetic_dataroot), "--out", str(out)])
    assert r.exit_code == 0, r.output
    names = {"bev_teacher_heatmap.png", "bev_teacher_features.png", "cameras_depth.png", "cameras_teacher.png",
             "bev_radar.png"}
    assert {p.name for p in out.iterdir()} == names
    bev = np.asarray(Image.open(out / "bev_teacher_heatmap.png").convert("RGB"))
    view = BevView(reader.config.grid, default_scale(reader.config.grid))  # show's default: ~640 px
    assert bev.shape == (*view.size, 3)
    # Each GT box inside the grid has its outline drawn where it is.
    r0 = reader.config.grid.point_cloud_range
    inside = [b for b in sample.gt.boxes[:n] if r0[0] + 3 < b[0] < r0[3] - 3 and r0[1] + 3 < b[1] < r0[4] - 3]
    assert inside
    for b in inside:
        corners = box_corners(b[None])[0][[0, 1, 3, 2], :2]
        mid = (corners[0] + corners[1]) / 2  # the middle of one long side
        assert _is_green(bev, *view.pixel_of(*mid), reach=2), b
    # The cached radar points are drawn where they are (cyan).
    radar = np.asarray(Image.open(out / "bev_radar.png").convert("RGB"))
    points = sample.radar.points[:int(sample.radar.count)]
    on_grid = [p for p in points if r0[0] + 1 < p[0] < r0[3] - 1 and r0[1] + 1 < p[1] < r0[4] - 1]
    assert on_grid
    cyan = (np.array(RADAR_COLOR) * 255).astype(int)
    for p in on_grid[:10]:
        row, col = view.pixel_of(p[0], p[1])
        patch = radar[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].astype(int)
        assert (np.abs(patch - cyan).max(-1) < 60).any(), p
    cams = np.asarray(Image.open(out / "cameras_teacher.png").convert("RGB"))
    h, w = reader.config.image_size
    assert cams.shape == (2 * h, 3 * w, 3)

    # The same store behind an fsspec URL.
    fs = fsspec.filesystem("memory")
    fs.put(train_cache, "/x3kd-show/cache.zarr", recursive=True)
    r = CliRunner().invoke(main, ["show", "memory://x3kd-show/cache.zarr", "--sample", "1", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "m").iterdir()} == names


def test_show_refuses_a_bad_sample_in_one_line(train_cache, tmp_path):
    from teacher_export.cli import main

    for which, says in (("99", "holds samples 0.."), ("not-a-token", "no sample with this token")):
        r = CliRunner().invoke(main, ["show", train_cache, "--sample", which, "--out", str(tmp_path / "x")])
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(main, ["show", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()



def test_eval_render_draws_predictions_and_the_devkit_curves(train_cache, synthetic_dataroot, tmp_path):
    from student.cli import main
    from student.train_config import load_train_config
    from student.train import train
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["train.steps=1", "loss.xis.enabled=false"])
    ckpt = train(train_cache, synthetic_dataroot, cfg, tmp_path / "run", progress=False)
    out = tmp_path / "eval"
    r = CliRunner().invoke(main, ["eval", "--checkpoint", str(ckpt), "--dataroot", str(synthetic_dataroot),
                                  "--version", "v1.0-mini", "--split", "mini_val", "--out", str(out), "--render", "2"])
    assert r.exit_code == 0, r.output
    rendered = sorted(p.name for p in (out / "render").iterdir())
    assert len(rendered) == 6 and all(n.startswith(("000_", "001_")) for n in rendered)
    assert sum(n.endswith("_cameras.png") for n in rendered) == 2 and sum(n.endswith("_devkit.png") for n in rendered) == 2
    assert (out / "plots" / "summary.png").is_file() and (out / "plots" / "car_pr.png").is_file()
    # GT boxes of the first sample are drawn in its BEV picture (green outlines somewhere).
    bev = np.asarray(Image.open(next((out / "render").glob("000_*_bev.png"))).convert("RGB"))
    target = (np.array(GT_COLOR) * 255).astype(int)
    assert (np.abs(bev.astype(int) - target).max(-1) < 60).sum() > 20


def _near(pixels: np.ndarray, row: int, col: int, colour, reach: int = 1, tol: int = 60) -> bool:
    patch = pixels[max(row - reach, 0):row + reach + 1, max(col - reach, 0):col + reach + 1].astype(int)
    return bool((np.abs(patch - (np.array(colour) * 255).astype(int)).max(-1) < tol).any())


def test_a_bev_picture_carries_the_ego_car_a_metre_scale_and_a_legend():
    view = BevView(GRID, default_scale(GRID))
    assert view.size == (640, 640)  # the default: labels and titles fit
    pic = view.picture()
    bev_furniture(pic, view, [("GT (3)", GT_COLOR, "-"), ("teacher", (1.0, 0.25, 0.85), "--")])
    px = pic.pixels()
    white = (1.0, 1.0, 1.0)
    # the ego car's outline at the origin (its sides at x = +-0.95 m) and its front (the triangle's tip at +y)
    assert _near(px, *view.pixel_of(0.95, 0.0), white) and _near(px, *view.pixel_of(-0.95, 0.0), white)
    assert _near(px, *view.pixel_of(0.0, 2.0), white) and not _near(px, *view.pixel_of(0.0, -2.0), white, reach=0)
    # the 10 m scale bar at the lower left: white along its length
    x0, y0 = GRID.point_cloud_range[0] + 0.04 * 51.2, GRID.point_cloud_range[1] + 0.04 * 51.2
    assert all(_near(px, *view.pixel_of(x0 + d, y0), white) for d in (0.5, 5.0, 9.5))
    assert not _near(px, *view.pixel_of(x0 + 11.0, y0), white, reach=0)
    # the legend at the upper right shows the GT colour
    assert (np.abs(px[:60, 540:].astype(int) - (np.array(GT_COLOR) * 255).astype(int)).max(-1) < 60).any()


def test_labels_that_would_cover_each_other_are_left_out():
    view = BevView(GRID, default_scale(GRID))
    pic = view.picture()
    boxes = np.stack([_box(0.0, 10.0), _box(0.3, 10.1), _box(-15.0, -15.0)])
    draw_bev_boxes(pic.ax, boxes, GT_COLOR, ["car", "car", "pedestrian"])
    assert len(pic.ax.texts) == 2  # the second car's label would sit on the first's


def test_the_depth_colour_bar_runs_from_near_blue_to_far_red_in_metres():
    bar = colour_bar(400, 60.0, "turbo", "m", "LiDAR depth target")
    assert bar.shape == (44, 400, 3)
    near, far = bar[10, int(0.08 * 400) + 2].astype(int), bar[10, int(0.92 * 400) - 2].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # turbo: blue at 0 m, red at 60 m


def test_eval_pictures_show_the_top_predictions_below_the_threshold_fainter(tmp_path):
    from cache_schema.views import Calib
    from detection.pictures import render_prediction

    calib = Calib(["cam.jpg"], K[None], np.linalg.inv(LIDAR_TO_CAM)[None], np.eye(4)[None], np.eye(4), np.eye(4))
    Image.new("RGB", (160, 90), (90, 90, 90)).save(tmp_path / "cam.jpg")
    preds = np.stack([_box(10.0, 10.0), _box(-10.0, -10.0)])
    written = render_prediction(tmp_path / "out", "s", calib, tmp_path, GRID, ["car"], preds, np.array([0.6, 0.12]),
                                np.array([0, 0]), np.zeros((0, 9)), [], score_threshold=0.3)
    px = np.asarray(Image.open(written[0]).convert("RGB"))
    view = BevView(GRID, default_scale(GRID))
    strong, faint = view.pixel_of(10.0, 12.0), view.pixel_of(-10.0, -8.0)  # the boxes' front ends (+y sides)
    assert _near(px, *view.pixel_of(11.0, 10.0), PRED_COLOR, reach=2, tol=40)
    # the 0.12 box is drawn (dotted, fainter), not left out: some blue-ish pixels along its side
    side = px[faint[0] - 2:faint[0] + 30, faint[1] - 30:faint[1] + 30].astype(int)
    assert ((side[..., 2] - side[..., 0]) > 40).sum() > 10
    assert strong != faint
