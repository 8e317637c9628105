"""Waymo from end to end on synthetic v2 data: make-synthetic --format waymo -> fit-teacher -> export ->
validate -> train -> eval, which prints Waymo's metrics (APH, LET-3D-APL)."""
import json
from pathlib import Path

from click.testing import CliRunner

from student.cli import main as student_cli
from teacher_export.cli import main as cache_cli

REPO = Path(__file__).resolve().parents[2]


def _ok(result):
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def test_make_synthetic_export_train_eval(tmp_path):
    root, teacher, cache, run = tmp_path / "waymo", tmp_path / "lidar.pth", tmp_path / "c.zarr", tmp_path / "run"
    runner = CliRunner()
    _ok(runner.invoke(cache_cli, ["make-synthetic", str(root), "--format", "waymo", "--scenes", "2",
                                  "--samples-per-scene", "2", "--image-size", "96x64"]))
    _ok(runner.invoke(cache_cli, ["fit-teacher", "lidar", "--dataroot", str(root), "--version", "waymo-v2", "--split",
                                  "training", "--out", str(teacher), "--config", "centerpoint-pillar04-waymo-small",
                                  "--steps", "3"]))
    _ok(runner.invoke(cache_cli, ["export", "--config", str(REPO / "configs/waymo_tiny_export.yaml"), "--dataroot",
                                  str(root), "--split", "training", "--out", str(cache), "--lidar-checkpoint",
                                  str(teacher)]))
    assert "clean" in _ok(runner.invoke(cache_cli, ["validate", str(cache)]))
    meta = json.loads((cache / "zarr.json").read_text())["attributes"]["x3kd"]["config"]
    assert meta["cameras"] == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    assert meta["classes"]["classes"] == ["vehicle", "pedestrian", "cyclist", "sign"]
    _ok(runner.invoke(student_cli, ["train", "--cache", str(cache), "--dataroot", str(root), "--config",
                                    str(REPO / "configs/waymo_tiny.yaml"), "--out", str(run), "--set",
                                    "train.steps=2", "--set", "train.checkpoint_every=2", "--quiet"]))
    out = _ok(runner.invoke(student_cli, ["eval", "--checkpoint", str(run / "checkpoints/step_0000002.pt"),
                                          "--dataroot", str(root), "--version", "waymo-v2", "--split", "validation",
                                          "--out", str(tmp_path / "eval")]))
    assert "APH L2" in out and "LET-3D-APL" in out
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert set(metrics["means"]) >= {"mAPH_L2", "LET-3D-APL", "LET-3D-AP"}
    assert (tmp_path / "eval/detections_waymo.json").is_file()


def test_nuscenes_teachers_are_refused_on_waymo(tmp_path):
    root = tmp_path / "waymo"
    _ok(CliRunner().invoke(cache_cli, ["make-synthetic", str(root), "--format", "waymo", "--scenes", "1",
                                       "--samples-per-scene", "1", "--image-size", "64x43"]))
    r = CliRunner().invoke(cache_cli, ["export", "--dataroot", str(root), "--version", "waymo-v2", "--split",
                                       "training", "--out", str(tmp_path / "c.zarr"), "--lidar-teacher",
                                       "centerpoint-pillar02-small", "--random-init", "--image-teacher", "none"])
    assert r.exit_code == 2 and "the data's classes are ['vehicle', 'pedestrian', 'cyclist', 'sign']" in r.output
    r = CliRunner().invoke(cache_cli, ["export", "--dataroot", str(root), "--version", "waymo-v2", "--split",
                                       "training", "--out", str(tmp_path / "c.zarr"), "--lidar-teacher", "none",
                                       "--image-teacher", "maskrcnn", "--random-init"])
    assert r.exit_code == 2 and "--image-teacher maskrcnn" in r.output
