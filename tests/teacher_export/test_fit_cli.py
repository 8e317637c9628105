"""`x3kd-cache fit-teacher`: help, user errors (exit 2), presets."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cache_schema.errors import UserInputError
from teacher_export.cli import main as cli
from teacher_export.fit.options import FitOptions
from teacher_export.fit.presets import FIT_PRESETS, fit_preset


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["fit-teacher", "--help"])
    assert result.exit_code == 0
    for option in ("--dataroot", "--steps", "--epochs", "--preset", "--backbone", "--export-yaml"):
        assert option in result.output


def test_bad_dataroot_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["fit-teacher", "lidar", "--dataroot", str(tmp_path / "nope"), "--version",
                                      "v1.0-mini", "--split", "mini_train", "--out", str(tmp_path / "x.pth"),
                                      "--steps", "1"])
    assert result.exit_code == 2
    assert "nope" in result.output and "nuScenes dataroot not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("extra, message", [
    (["--steps", "2", "--epochs", "1"], "exactly one of --steps and --epochs"),
    ([], "exactly one of --steps and --epochs"),
    (["--steps", "0"], "--steps"),
    (["--steps", "2", "--preset", "nosuch"], "--preset"),
])
def test_bad_options_exit_2(tmp_path, synthetic_dataroot, extra, message):
    result = CliRunner().invoke(cli, ["fit-teacher", "image", "--dataroot", str(synthetic_dataroot), "--version",
                                      "v1.0-mini", "--split", "mini_train", "--out", str(tmp_path / "x.pth"), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_unknown_lidar_config_exits_2(tmp_path, synthetic_dataroot):
    result = CliRunner().invoke(cli, ["fit-teacher", "lidar", "--dataroot", str(synthetic_dataroot), "--version",
                                      "v1.0-mini", "--split", "mini_train", "--out", str(tmp_path / "x.pth"),
                                      "--steps", "1", "--config", "centerpoint-nosuch"])
    assert result.exit_code == 2 and "centerpoint-nosuch" in result.output


def test_demo_preset_is_valid_options():
    for kind in ("lidar", "image"):
        values = fit_preset("demo", kind)
        FitOptions(dataroot="d", version="v", split="s", out="o", **values)  # raises on a bad preset
    assert set(FIT_PRESETS["demo"]) == {"lidar", "image"}
    with pytest.raises(UserInputError):
        fit_preset("nosuch", "lidar")
