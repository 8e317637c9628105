"""Waymo from end to end on synthetic v2 data: make-synthetic --format waymo -> fit-teacher -> export ->
validate -> train -> eval, which prints Waymo's metrics (APH, LET-3D-APL)."""
import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from student.cli import main as student_cli
from teacher_export.cli import main as cache_cli

REPO = Path(__file__).resolve().parents[2]


def _ok(result):
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


def readme_waymo_commands() -> list[str]:
    """The command lines of README's Waymo example block, continuations joined."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Waymo Open Dataset v2"):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return [re.sub(r"\s+", " ", line) for line in lines if line.startswith("x3kd-")]


SHORTER = {"--scenes 10": "--scenes 2", "--samples-per-scene 10": "--samples-per-scene 2",
           "--steps 300": "--steps 3", "--steps 40": "--steps 2", "step_0000200.pt": "step_0000002.pt", "configs/": f"{REPO}/configs/"}


def test_the_readme_example_runs(tmp_path, monkeypatch):
    """README's Waymo block as written (only sizes and run lengths shortened): make-synthetic ->
    fit-teacher -> export -> validate -> eval-teacher -> train -> eval, which prints APH and LET-3D-APL."""
    monkeypatch.chdir(tmp_path)
    commands = readme_waymo_commands()
    assert [c.split()[1] for c in commands] == ["make-synthetic", "fit-teacher", "fit-teacher", "export",
                                                  "validate", "eval-teacher", "train", "eval"]
    outputs = []
    for command in commands:
        for old, new in SHORTER.items():
            command = command.replace(old, new)
        args = shlex.split(command)
        if args[1] == "train":
            args += ["--set", "train.steps=2", "--set", "train.checkpoint_every=2", "--quiet"]
        outputs.append(_ok(CliRunner().invoke(cache_cli if args[0] == "x3kd-cache" else student_cli, args[1:])))
    assert "clean" in outputs[4]
    meta = json.loads(Path("waymo_train.zarr/zarr.json").read_text())["attributes"]["x3kd"]["config"]
    assert meta["cameras"] == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    assert meta["classes"]["classes"] == ["vehicle", "pedestrian", "cyclist", "sign"]
    assert meta["groups"] == ["meta", "calib", "gt", "depth", "lidar_teacher", "image_teacher"]
    assert "LET-3D-APL" in outputs[5] and Path("waymo_teacher_eval/metrics.json").is_file()
    assert "APH L2" in outputs[7] and "LET-3D-APL" in outputs[7]
    metrics = json.loads(Path("runs/waymo/eval/metrics.json").read_text())
    assert set(metrics["means"]) >= {"mAPH_L2", "LET-3D-APL", "LET-3D-AP"}
    assert Path("runs/waymo/eval/detections_waymo.json").is_file()


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
                                       "--image-teacher", "detectron2", "--random-init"])
    assert r.exit_code == 2 and "--image-teacher detectron2" in r.output
