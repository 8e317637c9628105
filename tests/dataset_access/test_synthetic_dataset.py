"""The synthetic generator writes data nuscenes-devkit loads, reproducibly, through API and CLI."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image

from cache_schema.errors import UserInputError
from cache_schema.layout import RADAR_NAMES
from teacher_export.cli import main
from dataset_access.nuscenes.samples import CAMERA_NAMES, LIDAR_NAME
from dataset_access.synthetic import generate_synthetic

TINY = dict(scenes=1, samples_per_scene=2, image_size=(48, 32), sweeps_per_sample=1, objects_per_scene=4,
            lidar_beams=8, lidar_azimuths=64)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def nusc(synthetic_dataroot: Path) -> NuScenes:
    return NuScenes(version="v1.0-mini", dataroot=str(synthetic_dataroot), verbose=False)


def test_devkit_loads_every_table_and_sensor(nusc: NuScenes, synthetic_dataroot: Path) -> None:
    assert len(nusc.scene) == 2 and len(nusc.sample) == 6
    splits = create_splits_scenes()
    names = {s["name"] for s in nusc.scene}
    assert names & set(splits["mini_train"]) and names & set(splits["mini_val"])
    for sample in nusc.sample:
        assert set(sample["data"]) == {LIDAR_NAME, *CAMERA_NAMES, *RADAR_NAMES}
        for cam in CAMERA_NAMES:
            sd = nusc.get("sample_data", sample["data"][cam])
            with Image.open(synthetic_dataroot / sd["filename"]) as im:
                assert im.format == "JPEG" and im.size == (sd["width"], sd["height"]) == (160, 90)
        lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        pts = np.fromfile(synthetic_dataroot / lidar["filename"], dtype=np.float32).reshape(-1, 5)
        assert len(pts) > 1000
        assert set(np.unique(pts[:, 4])) <= set(range(32))  # ring index
    # Every key frame has its sweeps before it, each linked to the following key frame's sample.
    sweeps = [sd for sd in nusc.sample_data if not sd["is_key_frame"] and LIDAR_NAME in sd["filename"]]
    assert len(sweeps) == 2 * len(nusc.sample)
    for sd in sweeps:
        assert sd["filename"].startswith(f"sweeps/{LIDAR_NAME}/")
        assert nusc.get("sample", sd["sample_token"])["timestamp"] > sd["timestamp"]


def test_annotations_are_nuscenes_like(nusc: NuScenes) -> None:
    cats = {nusc.get("category", nusc.get("instance", a["instance_token"])["category_token"])["name"]
            for a in nusc.sample_annotation}
    assert len(cats) >= 4
    for ann in nusc.sample_annotation:
        assert len(ann["attribute_tokens"]) <= 1
        assert ann["visibility_token"] in {"1", "2", "3", "4"}
        assert ann["num_lidar_pts"] >= 0 and ann["num_radar_pts"] >= 0
        w, l, h = ann["size"]
        assert abs(ann["translation"][2] - h / 2) < 1e-9  # standing on the ground plane z = 0
        # Objects stay well inside the largest detection range (50 m) of detection_cvpr_2019.
        sd = nusc.get("sample_data", nusc.get("sample", ann["sample_token"])["data"][LIDAR_NAME])
        ego = np.asarray(nusc.get("ego_pose", sd["ego_pose_token"])["translation"])
        assert np.linalg.norm(np.asarray(ann["translation"][:2]) - ego[:2]) < 50.0
    # Tracks are linked, and the devkit can difference them into velocities.
    moving = [a for a in nusc.sample_annotation if a["prev"] and np.linalg.norm(nusc.box_velocity(a["token"])) > 0.1]
    assert moving


def test_generation_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a = _tree_digest(generate_synthetic(tmp_path / "a", seed=7, **TINY))
    b = _tree_digest(generate_synthetic(tmp_path / "b", seed=7, **TINY))
    c = _tree_digest(generate_synthetic(tmp_path / "c", seed=8, **TINY))
    assert a == b
    assert any(p.endswith(".jpg") for p in a) and any(p.endswith(".pcd.bin") for p in a)
    assert a != c
    assert not list(tmp_path.glob(".*partial*"))  # no leftovers of the atomic rename


def test_generator_refuses_bad_input(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserInputError, match="full"):
        generate_synthetic(tmp_path / "full", **TINY)
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(UserInputError, match="--scenes 11"):
        generate_synthetic(tmp_path / "many", **{**TINY, "scenes": 11})


def test_cli_make_synthetic(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["make-synthetic", "--help"])
    assert result.exit_code == 0 and "--preset" in result.output and "--samples-per-scene" in result.output

    out = tmp_path / "ds"
    result = runner.invoke(main, ["make-synthetic", str(out), "--scenes", "2", "--samples-per-scene", "1",
                                  "--image-size", "64x36", "--sweeps", "0", "--objects", "3", "--seed", "3"])
    assert result.exit_code == 0, result.output
    nusc = NuScenes(version="v1.0-mini", dataroot=str(out), verbose=False)
    assert len(nusc.sample) == 2
    assert all(sd["width"] == 64 and sd["height"] == 36 for sd in nusc.sample_data if sd["fileformat"] == "jpg")

    again = runner.invoke(main, ["make-synthetic", str(out)])
    assert again.exit_code == 2 and str(out) in again.output
    bad = runner.invoke(main, ["make-synthetic", str(tmp_path / "new"), "--image-size", "big"])
    assert bad.exit_code == 2 and "--image-size" in bad.output


def test_trainval_version_uses_train_and_val_scene_names(tmp_path: Path) -> None:
    from dataset_access.nuscenes.samples import NuScenesSamples

    root = generate_synthetic(tmp_path / "tv", version="v1.0-trainval", **{**TINY, "scenes": 3})
    splits = create_splits_scenes()
    train = NuScenesSamples(root, "v1.0-trainval", "train")
    val = NuScenesSamples(root, "v1.0-trainval", "val")
    assert len(train) + len(val) == 3 * TINY["samples_per_scene"] and len(val) > 0
    assert {s.scene_name for s in train} <= set(splits["train"])
    assert {s.scene_name for s in val} <= set(splits["val"])


def test_smaller_dataset_is_a_subset_of_a_bigger_one(tmp_path: Path) -> None:
    """Scenes are seeded by (split, place in split): the first train and val scenes of 5 scenes are the
    same worlds as in 3, so a teacher fitted on a big dataset's train split never saw a small one's val."""
    small = generate_synthetic(tmp_path / "s", **{**TINY, "scenes": 3}, version="v1.0-trainval")
    big = generate_synthetic(tmp_path / "b", **{**TINY, "scenes": 6}, version="v1.0-trainval")

    def boxes_by_scene(root: Path) -> dict[str, list]:
        nusc = NuScenes(version="v1.0-trainval", dataroot=str(root), verbose=False)
        return {s["name"]: sorted(tuple(np.round(a["translation"], 6)) for a in nusc.sample_annotation
                                  if nusc.get("sample", a["sample_token"])["scene_token"] == s["token"])
                for s in nusc.scene}

    a, b = boxes_by_scene(small), boxes_by_scene(big)
    splits = create_splits_scenes()
    assert set(a) <= set(b) and any(n in splits["val"] for n in a)
    for name in a:  # same world, same boxes (the world's placement is part of the draw)
        assert a[name] == b[name], name


def test_object_range_and_class_mix(tmp_path: Path) -> None:
    from dataset_access.synthetic.world import OBJECT_CLASSES, class_weights, sample_world

    times = np.arange(0.0, 3.0, 0.05)
    rng = np.random.default_rng(0)
    # Within 12 m a moving ego car leaves room for few objects over 3 s; 20 m holds the 20 asked for.
    ego, actors = sample_world(rng, times, 20, (500.0, 500.0), max_range=20.0, class_mix="uniform")
    ego_xy, _ = ego.state(times)
    assert len(actors) == 20
    assert max(np.linalg.norm(a.xy(times) - ego_xy, axis=-1).max() for a in actors) <= 20.0
    w = class_weights("uniform")
    detection = [c.category != "movable_object.pushable_pullable" for c in OBJECT_CLASSES]
    assert np.allclose(w[detection], w[detection][0]) and abs(w.sum() - 1) < 1e-12
    assert class_weights("nuscenes")[0] > 2 * class_weights("nuscenes")[3]  # cars far more common than buses
    with pytest.raises(UserInputError, match="--max-object-range"):
        generate_synthetic(tmp_path / "near", **TINY, max_object_range=3.0)
    runner = CliRunner()
    bad = runner.invoke(main, ["make-synthetic", str(tmp_path / "x"), "--class-mix", "zipf"])
    assert bad.exit_code == 2 and "--class-mix" in bad.output
