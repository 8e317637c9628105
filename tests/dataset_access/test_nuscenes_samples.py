"""NuScenesSamples: order, frames, GT boxes, multi-sweep points and user errors."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes

from cache_schema.boxes import BOX_DIM
from cache_schema.errors import UserInputError
from cache_schema.frames import invert_transform, make_transform, rotation_z, transform_points
from cache_schema.grid import NUSCENES_CLASSES
from dataset_access.nuscenes.tables import TABLE_NAMES
from cache_schema.views import Calib
from dataset_access.nuscenes.samples import CAMERA_NAMES, NuScenesSamples, load_points
from dataset_access.samples import SampleInfo, SweepInfo
from dataset_access.synthetic.camera import render_camera


@pytest.fixture(scope="module")
def samples(synthetic_dataroot: Path) -> list[SampleInfo]:
    """All key frames of both splits."""
    out = []
    for split in ("mini_train", "mini_val"):
        out.extend(NuScenesSamples(synthetic_dataroot, "v1.0-mini", split, num_sweeps=9, gt_filter="evaluation"))
    return out


def _points_in_lidar_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(N, B) bool for LiDAR-frame boxes in the cache_schema convention."""
    rel = points[:, None, :3] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = c * rel[..., 0] + s * rel[..., 1]
    ly = -s * rel[..., 0] + c * rel[..., 1]
    return ((np.abs(lx) <= boxes[:, 3] / 2 + margin) & (np.abs(ly) <= boxes[:, 4] / 2 + margin)
            & (np.abs(rel[..., 2]) <= boxes[:, 5] / 2 + margin))


def _box_corners(box: np.ndarray) -> np.ndarray:
    """(8, 3) corners of a cache_schema box."""
    x, y, z, l, w, h, yaw = box[:7]
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) / 2.0
    local = signs * (l, w, h)
    return local @ rotation_z(float(yaw)).T + (x, y, z)


def test_split_order_and_fields(synthetic_dataroot: Path, samples: list[SampleInfo]) -> None:
    val = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_val")
    assert len(val) == 3 and [s.scene_name for s in val] == ["scene-0103"] * 3
    assert [s.token for s in val] == list(val.sample_tokens)
    assert val.index(val[2].token) == 2 and val[-1].token == val[2].token
    stamps = [s.timestamp for s in val]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3

    for s in samples:
        assert (synthetic_dataroot / s.lidar_path).is_file() and not Path(s.lidar_path).is_absolute()
        assert s.ego_pose.shape == s.lidar_to_ego.shape == (4, 4) and s.ego_pose.dtype == np.float64
        assert tuple(c.name for c in s.cameras) == CAMERA_NAMES
        assert s.calib.cam_intrinsics.shape == (len(CAMERA_NAMES), 3, 3)
        for cam in s.cameras:
            assert (synthetic_dataroot / s.image_path(cam.name)).is_file()
            assert s.intrinsics(cam.name).shape == (3, 3) and cam.image_size == (160, 90)
            # Cameras fire after the LiDAR key frame, so their ego pose is their own.
            assert 0 < cam.timestamp - s.timestamp < 60_000
        assert s.gt_boxes.dtype == np.float32 and s.gt_boxes.shape[1] == BOX_DIM
        n = len(s.gt_boxes)
        assert s.gt_labels.shape == s.gt_num_lidar_pts.shape == (n,) and len(s.gt_names) == len(s.gt_tokens) == n
        assert all(NUSCENES_CLASSES[label] == name for label, name in zip(s.gt_labels, s.gt_names))
        assert np.all(s.gt_num_lidar_pts + s.gt_num_radar_pts > 0)


@pytest.fixture(scope="module")
def sparse_lidar_root(tmp_path_factory) -> Path:
    """A crowded scene seen by an 8-beam LiDAR: about half its boxes get no LiDAR point (some radar
    alone sees, some nothing sees), so the devkit's points rule is exercised whatever the seed."""
    from dataset_access.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("sparse") / "nuscenes", scenes=2, samples_per_scene=1,
                              image_size=(48, 32), sweeps_per_sample=0, objects_per_scene=12, lidar_beams=8,
                              lidar_azimuths=64, radar_sweeps_per_sample=0)


def _check_gt_filter(root: Path, samples: list[SampleInfo]) -> tuple[int, int]:
    """Kept boxes are exactly the detection-class annotations with points and within range; returns
    (annotations dropped for having no point, annotations kept on radar points alone)."""
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    dropped_points = radar_only = 0
    for s in samples:
        anns = [nusc.get("sample_annotation", t) for t in nusc.get("sample", s.token)["anns"]]
        dropped_points += sum(a["num_lidar_pts"] + a["num_radar_pts"] == 0 for a in anns)
        radar_only += sum(a["num_lidar_pts"] == 0 < a["num_radar_pts"] for a in anns)
        expected = {a["token"] for a in anns if a["num_lidar_pts"] + a["num_radar_pts"] > 0
                    and a["category_name"] != "movable_object.pushable_pullable"}
        assert set(s.gt_tokens) == expected
        for token, box in zip(s.gt_tokens, s.gt_boxes):
            ann = nusc.get("sample_annotation", token)
            centre = transform_points(s.lidar_to_global, box[None, :3].astype(np.float64))[0]
            np.testing.assert_allclose(centre, ann["translation"], atol=1e-3)
            np.testing.assert_allclose(box[[4, 3, 5]], ann["size"], rtol=1e-6)
            vel = s.lidar_to_global[:3, :3] @ np.array([box[7], box[8], 0.0])
            np.testing.assert_allclose(vel[:2], np.nan_to_num(nusc.box_velocity(token)[:2]), atol=1e-3)
    return dropped_points, radar_only


def test_gt_filter_matches_devkit(synthetic_dataroot: Path, samples: list[SampleInfo], sparse_lidar_root: Path) -> None:
    _check_gt_filter(synthetic_dataroot, samples)
    sparse = [s for split in ("mini_train", "mini_val")
              for s in NuScenesSamples(sparse_lidar_root, "v1.0-mini", split, num_sweeps=0, gt_filter="evaluation")]
    dropped_points, radar_only = _check_gt_filter(sparse_lidar_root, sparse)
    assert dropped_points > 0 and radar_only > 0  # both sides of the points rule were exercised


def test_every_box_with_points_contains_a_key_frame_point(synthetic_dataroot: Path,
                                                          samples: list[SampleInfo]) -> None:
    for s in samples:
        pts = load_points(synthetic_dataroot, s, num_sweeps=0)
        assert pts.shape[1] == 5 and pts.dtype == np.float32 and np.all(pts[:, 4] == 0)
        inside = _points_in_lidar_boxes(pts, s.gt_boxes).sum(axis=0)
        np.testing.assert_array_equal(inside, s.gt_num_lidar_pts)
        # The ground lies 1.84 m below the roof-mounted LiDAR.
        assert abs(np.median(pts[:, 2]) + 1.84) < 0.1


def test_sweeps_are_motion_compensated_onto_static_objects(synthetic_dataroot: Path,
                                                           samples: list[SampleInfo]) -> None:
    checked = 0
    for s in samples[1:]:  # every later key frame has the previous key frame and sweeps behind it
        pts = load_points(synthetic_dataroot, s)
        lags = np.unique(pts[:, 4])
        assert len(lags) == len(s.sweeps) + 1 and lags[0] == 0 and np.all(np.diff(lags) > 0)
        static = (np.hypot(s.gt_boxes[:, 7], s.gt_boxes[:, 8]) < 1e-3) & (s.gt_num_lidar_pts >= 10)
        for lag in lags[1:]:
            sweep_pts = pts[pts[:, 4] == lag]
            inside = _points_in_lidar_boxes(sweep_pts, s.gt_boxes[static], margin=0.08).sum(axis=0)
            assert np.all(inside >= 1), (s.token, lag, inside)
            checked += len(inside)
    assert checked > 0


def test_load_points_composes_poses(tmp_path: Path) -> None:
    """One world point seen by a sweep from another pose lands where the key LiDAR sees it."""
    world_point = np.array([[12.0, -3.0, 0.5]])
    key_l2e = make_transform(rotation_z(-np.pi / 2), (0.9, 0.0, 1.8))
    key_pose = make_transform(rotation_z(0.3), (100, 50, 0))
    sw_l2e = make_transform(rotation_z(-1.5), (1.0, 0.1, 1.7))
    sw_pose = make_transform(rotation_z(0.2), (97, 49, 0))
    in_key = transform_points(invert_transform(key_pose @ key_l2e), world_point)
    in_sweep = transform_points(invert_transform(sw_pose @ sw_l2e), world_point)
    for name, xyz in (("key.bin", in_key), ("sweep.bin", in_sweep)):
        np.array([[*xyz[0], 7.0, 3.0]], dtype=np.float32).tofile(tmp_path / name)
    sample = SampleInfo(token="t", scene_token="s", scene_name="n", timestamp=1_000_000, lidar_path="key.bin",
                        calib=Calib([], np.zeros((0, 3, 3)), np.zeros((0, 4, 4)), np.zeros((0, 4, 4)), key_l2e, key_pose),
                        cameras=(),
                        sweeps=(SweepInfo("sweep.bin", 950_000, sw_l2e, sw_pose),),
                        gt_boxes=np.zeros((0, 9), np.float32), gt_labels=np.zeros(0, np.int64), gt_names=(),
                        gt_num_lidar_pts=np.zeros(0, np.int32), gt_num_radar_pts=np.zeros(0, np.int32),
                        gt_tokens=())
    pts = load_points(tmp_path, sample)
    assert pts.shape == (2, 5)
    np.testing.assert_allclose(pts[1, :3], in_key[0], atol=1e-4)
    np.testing.assert_allclose(pts[:, 3], [7.0, 7.0])
    np.testing.assert_allclose(pts[:, 4], [0.0, 0.05], atol=1e-7)
    assert load_points(tmp_path, sample, num_sweeps=0).shape == (1, 5)


def test_box_centres_project_into_camera_images(synthetic_dataroot: Path,
                                                         samples: list[SampleInfo]) -> None:
    """Each box centre lands inside some camera image (the rig sees all around, bar blind spots near the
    car), on pixels that differ from an empty render of the same camera: the object is drawn where it
    is annotated."""
    from PIL import Image

    checked = 0
    for s in samples:
        centres = np.concatenate([s.gt_boxes[:, :3], np.ones((len(s.gt_boxes), 1), np.float32)], axis=1)
        for b in range(len(centres)):
            # The camera that sees the centre nearest its image's vertical mid-line.
            uvds = [s.lidar_to_image(c.name) @ centres[b] for c in s.cameras]
            offsets = [abs(p[0] / p[2] / c.width - 0.5) if p[2] > 0 else np.inf for p, c in zip(uvds, s.cameras)]
            cam, uvd = s.cameras[int(np.argmin(offsets))], uvds[int(np.argmin(offsets))]
            u, v = uvd[:2] / uvd[2]
            if not (0 <= u < cam.width and 0 <= v < cam.height):
                # Neighbouring cameras sit apart, so close to the car there are gaps between their views.
                assert np.hypot(*s.gt_boxes[b, :2]) < 10.0, (s.token, b, cam.name, u, v)
                continue
            i = s.cameras.index(cam)
            cam_to_global = s.calib.cam_ego_pose[i] @ s.calib.cam_to_ego[i]
            image = np.asarray(Image.open(synthetic_dataroot / s.image_path(cam.name)), dtype=np.float64)
            empty = np.asarray(render_camera(cam.image_size, s.intrinsics(cam.name), cam_to_global, np.zeros((0, 7)),
                                             [], [], np.random.default_rng(0)), dtype=np.float64)
            # The box's image rectangle, where its (or an occluder's) faces were drawn.
            corners = np.c_[_box_corners(s.gt_boxes[b]), np.ones(8)] @ s.lidar_to_image(cam.name).T
            if np.any(corners[:, 2] <= 0.1):
                continue
            uv = corners[:, :2] / corners[:, 2:3]
            u0, v0 = np.clip(np.floor(uv.min(axis=0)), 0, None).astype(int)
            u1, v1 = np.minimum(np.ceil(uv.max(axis=0)), (cam.width, cam.height)).astype(int)
            if (u1 - u0) * (v1 - v0) < 4:
                continue
            changed = np.abs(image[v0:v1, u0:u1] - empty[v0:v1, u0:u1]).max(axis=-1) > 30
            assert changed.mean() > 0.3, (s.token, b, cam.name, changed.mean())
            checked += 1
    assert checked >= 10


def test_bad_inputs_name_the_path(synthetic_dataroot: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="nope"):
        NuScenesSamples(tmp_path / "nope", "v1.0-mini", "mini_val")
    with pytest.raises(UserInputError, match="v1.0-trainval.*v1.0-mini"):
        NuScenesSamples(synthetic_dataroot, "v1.0-trainval", "val")
    with pytest.raises(UserInputError, match="needs a \\*-trainval"):
        NuScenesSamples(synthetic_dataroot, "v1.0-mini", "val")
    with pytest.raises(UserInputError, match="'bogus'"):
        NuScenesSamples(synthetic_dataroot, "v1.0-mini", "bogus")

    tables_only = tmp_path / "tables"
    shutil.copytree(synthetic_dataroot / "v1.0-mini", tables_only / "v1.0-mini")
    (tables_only / "v1.0-mini" / "sample_annotation.json").unlink()
    with pytest.raises(UserInputError, match="sample_annotation.json"):
        NuScenesSamples(tables_only, "v1.0-mini", "mini_val")

    copy = tmp_path / "copy"
    shutil.copytree(synthetic_dataroot, copy)
    ds = NuScenesSamples(copy, "v1.0-mini", "mini_val", num_sweeps=9)
    first, second = ds[0], ds[1]
    (copy / first.lidar_path).unlink()
    with pytest.raises(UserInputError, match=re.escape(first.lidar_path)):
        ds[0]
    (copy / second.image_path("CAM_BACK")).unlink()
    with pytest.raises(UserInputError, match="CAM_BACK"):
        ds[1]
    third = ds[2]
    (copy / third.sweeps[0].lidar_path).unlink()
    with pytest.raises(UserInputError, match=re.escape(third.sweeps[0].lidar_path)):
        ds.load_points(third)
    assert TABLE_NAMES[-1] == "map"
    for rec in (copy / "maps").iterdir():
        rec.unlink()
    with pytest.raises(UserInputError, match="map image missing"):
        NuScenesSamples(copy, "v1.0-mini", "mini_val")


def test_a_truncated_point_file_is_refused_by_its_bytes(tmp_path: Path) -> None:
    """21 bytes hold four whole floats and one byte: reading floats alone would accept it."""
    from dataset_access.nuscenes.samples import _read_pcd_bin

    good = tmp_path / "good.pcd.bin"
    np.arange(10, dtype=np.float32).tofile(good)
    assert _read_pcd_bin(good).shape == (2, 5)
    bad = tmp_path / "bad.pcd.bin"
    bad.write_bytes(good.read_bytes() + b"\x00")
    with pytest.raises(UserInputError, match=r"bad\.pcd\.bin: .*41 bytes"):
        _read_pcd_bin(bad)


def test_training_gt_keeps_objects_beyond_the_evaluation_ranges(synthetic_dataroot: Path, tmp_path: Path) -> None:
    """A cone 35 m from the ego, with LiDAR points and on the +-51.2 m grid, is a training object (a
    real LiDAR teacher highlights it) though the devkit's 30 m cone range leaves it out of evaluation."""
    root = tmp_path / "far"
    shutil.copytree(synthetic_dataroot, root)
    tables = root / "v1.0-mini"
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    sample = nusc.sample[0]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    ego = nusc.get("ego_pose", lidar["ego_pose_token"])["translation"]
    anns = json.loads((tables / "sample_annotation.json").read_text())
    cone_category = next(c["token"] for c in json.loads((tables / "category.json").read_text())
                         if c["name"] == "movable_object.trafficcone")
    instance = {"token": "far-cone-instance", "category_token": cone_category, "nbr_annotations": 1,
                "first_annotation_token": "far-cone", "last_annotation_token": "far-cone"}
    template = next(a for a in anns if a["sample_token"] == sample["token"])
    cone = {**template, "token": "far-cone", "instance_token": instance["token"], "prev": "", "next": "",
            "translation": [ego[0] + 35.0, ego[1], ego[2]], "size": [0.4, 0.4, 1.0], "num_lidar_pts": 3,
            "num_radar_pts": 0, "attribute_tokens": []}
    (tables / "sample_annotation.json").write_text(json.dumps(anns + [cone]))
    instances = json.loads((tables / "instance.json").read_text())
    (tables / "instance.json").write_text(json.dumps(instances + [instance]))

    split = "mini_train" if sample["scene_token"] in {s["token"] for s in nusc.scene if s["name"] == "scene-0061"} \
        else "mini_val"
    training = NuScenesSamples(root, "v1.0-mini", split, num_sweeps=0)
    evaluation = NuScenesSamples(root, "v1.0-mini", split, num_sweeps=0, gt_filter="evaluation")
    info_t, info_e = training[training.index(sample["token"])], evaluation[evaluation.index(sample["token"])]
    assert "far-cone" in info_t.gt_tokens and "far-cone" not in info_e.gt_tokens
    assert set(info_e.gt_tokens) <= set(info_t.gt_tokens)


def test_a_subset_travels_without_the_tables_and_reads_the_same_files(synthetic_dataroot: Path) -> None:
    import pickle

    reader = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_sweeps=2)
    last = len(reader) - 1
    assert last >= 2
    subset = pickle.loads(pickle.dumps(reader.subset([last, 1])))
    assert len(subset) == 2 and [s.token for s in subset] == [reader[last].token, reader[1].token]
    assert subset[1].token == reader[1].token
    np.testing.assert_array_equal(subset.load_points(subset[last]), reader.load_points(reader[last]))
    assert not any(isinstance(v, NuScenes) for v in vars(subset).values())
    with pytest.raises(IndexError, match="sample 0 is not in this subset"):
        subset[0]
