"""A newcomer's first hour (issue 32): what went wrong for a new user, each now right, each tested."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
from click.testing import CliRunner

from cache_schema.errors import UserInputError
from student.cli import main as student_cli
from teacher_export.cli import main as cache_cli
from tests.student.run_paths import TINY_YAML

QUICK = ["--set", "train.steps=1", "--set", "loss.xis.enabled=false"]


@pytest.fixture(scope="module")
def one_step_run(train_cache, synthetic_dataroot, tmp_path_factory):
    out = tmp_path_factory.mktemp("first_hour") / "run"
    r = CliRunner().invoke(student_cli, ["train", "--cache", train_cache, "--dataroot", str(synthetic_dataroot),
                                         "--config", str(TINY_YAML), "--out", str(out), *QUICK])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_train_says_what_it_is_doing(one_step_run, train_cache, synthetic_dataroot):
    out, output = one_step_run
    assert "training the camera student on cpu: 3 samples of" in output and "1 steps of batch 1" in output
    assert f"run directory {out}" in output
    r = CliRunner().invoke(student_cli, ["-v", "train", "--cache", train_cache, "--dataroot", str(synthetic_dataroot),
                                         "--config", str(TINY_YAML), "--out", str(out), "--resume",
                                         "--set", "train.steps=2", "--set", "loss.xis.enabled=false"])
    assert r.exit_code == 0, r.output
    assert "continuing from step 1 of 2 (--resume)" in r.output
    assert "resolved config" in r.output and "xis:" in r.output  # -v: the resolved config


def test_eval_prints_what_it_scores_first_and_warns_on_the_training_split(one_step_run, synthetic_dataroot, tmp_path):
    out, _ = one_step_run
    ckpt = sorted((out / "checkpoints").glob("step_*.pt"))[0]
    r = CliRunner().invoke(student_cli, ["eval", "--checkpoint", str(ckpt), "--dataroot", str(synthetic_dataroot),
                                         "--version", "v1.0-mini", "--split", "mini_train", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert r.output.index("scored:") < r.output.index("mAP")  # the header comes before the scores
    assert "warning: mini_train is the split this student was trained on" in r.output


def test_eval_writes_and_prints_metrics_before_pictures_and_a_picture_is_never_the_exit_code(
        one_step_run, synthetic_dataroot, tmp_path, monkeypatch):
    import detection.pictures

    out, _ = one_step_run
    ckpt = sorted((out / "checkpoints").glob("step_*.pt"))[0]

    def broken(*args, **kwargs):
        raise RuntimeError("FT_Render_Glyph failed: raster overflow")

    monkeypatch.setattr(detection.pictures, "render_prediction", broken)
    r = CliRunner().invoke(student_cli, ["eval", "--checkpoint", str(ckpt), "--dataroot", str(synthetic_dataroot),
                                         "--version", "v1.0-mini", "--split", "mini_val", "--out", str(tmp_path / "e"),
                                         "--render", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "metrics.json").is_file()
    problems = [line for line in r.output.splitlines() if line.startswith("pictures: sample")]
    assert len(problems) == 2 and "raster overflow" in problems[0]
    assert r.output.index("mAP") < r.output.index("pictures: sample")


def test_decoded_box_sizes_are_bounded():
    from cache_schema.grid import BevGrid
    from detection.centerpoint_coder import MAX_BOX_SIZE, BoxCoderConfig, decode_detections

    grid = BevGrid((-6.4, -6.4, -5.0, 6.4, 6.4, 3.0), (0.2, 0.2, 8.0), 4)
    head = {"heatmap": torch.full((1, 1, 16, 16), -5.0), "reg": torch.zeros(1, 2, 16, 16),
            "height": torch.zeros(1, 1, 16, 16), "dim": torch.full((1, 3, 16, 16), 25.0),  # exp(25) m before
            "rot": torch.zeros(1, 2, 16, 16), "vel": torch.zeros(1, 2, 16, 16)}
    head["heatmap"][0, 0, 8, 8] = 3.0
    det = decode_detections([head], BoxCoderConfig(grid=grid, coder_post_center_range=None,
                                                   post_center_limit_range=None))[0]
    assert len(det) >= 1 and det.boxes[:, 3:6].max() == pytest.approx(MAX_BOX_SIZE)
    assert math.isfinite(det.boxes.abs().max())


def test_show_refuses_another_datasets_images(train_cache, synthetic_dataroot, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(synthetic_dataroot, other)
    image = next((other / "samples" / "CAM_FRONT").iterdir())
    from PIL import Image

    Image.new("RGB", (40, 30)).save(image, format="JPEG")  # same name, another picture
    r = CliRunner().invoke(cache_cli, ["show", train_cache, "--dataroot", str(other), "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "are not the ones" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("setting,says", [
    ("loss.xfd.weight=-1", "--set loss.xfd.weight=-1: must be >= 0, got -1"),
    ("optim.lr=0", "--set optim.lr=0: must be > 0"),
    ("train.step=5", "--set train.step=5: unknown key (did you mean train.steps?)"),
    ("loss.xfd.wieght=1", "--set loss.xfd.wieght=1: unknown key (did you mean loss.xfd.weight?)"),
    ("loss.xfd.weight=abc", "--set loss.xfd.weight=abc: expected a number"),
])
def test_bad_settings_name_the_users_key(setting, says):
    from student.train_config import load_train_config

    with pytest.raises(UserInputError) as e:
        load_train_config(TINY_YAML, [setting])
    assert str(e.value).startswith(says), str(e.value)


def test_a_resume_refusal_names_the_models_identity_first(one_step_run, train_cache, synthetic_dataroot):
    out, _ = one_step_run
    r = CliRunner().invoke(student_cli, ["train", "--cache", train_cache, "--dataroot", str(synthetic_dataroot),
                                         "--config", str(TINY_YAML), "--out", str(out), "--resume", *QUICK,
                                         "--set", "model.backbone.base_width=32", "--set", "optim.lr=1e-3",
                                         "--set", "loss.xfd.weight=2"])
    assert r.exit_code == 2
    assert "resuming with another config: model.backbone.base_width" in r.stderr, r.stderr


def test_a_store_without_the_image_teacher_names_the_switch(synthetic_dataroot, tmp_path):
    from student.data.dataset import open_cache
    from student.train_config import load_train_config
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    out = tmp_path / "no_image.zarr"
    export(small_export_options(synthetic_dataroot, out, image_teacher=None), progress=False)
    with pytest.raises(UserInputError, match=r"no image_teacher group, which loss.xis read; set "
                                             r"loss.xis.enabled=false"):
        open_cache(str(out), load_train_config(TINY_YAML).student)


def test_validate_names_the_repair(train_cache, tmp_path):


    copy = tmp_path / "c.zarr"
    shutil.copytree(train_cache, copy)
    shard = next((copy / "depth" / "depth" / "c").rglob("*"))
    while shard.is_dir():
        shard = next(shard.iterdir())
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    r = CliRunner().invoke(cache_cli, ["validate", str(copy)])
    assert r.exit_code == 1 and "x3kd-cache export --repair" in r.output, r.output


def test_help_speaks_one_style():
    import click

    from pipelines.cli import main as installed_cache_cli

    texts = {}
    for group in (installed_cache_cli, student_cli):
        for name, command in group.commands.items():
            with click.Context(command, info_name=name) as ctx:
                texts[name] = command.get_help(ctx)
    for name, text in texts.items():
        assert "(default" not in text, name       # defaults are click's "[default: ...]"
        assert "\\b" not in text, name            # a paragraph marker that leaked into the text
    assert "[demo|lab]" in texts["fit-teacher"]   # --preset lists its choices
    assert "bev_radar.png" in texts["show"]
    assert "auto" in texts["eval"] and "documented" in texts["train"]  # eval --device auto; where --set keys live
    # --radar-sweeps counts the key frame's scan in make-synthetic as in export
    assert "key frame's included" in " ".join(texts["make-synthetic"].split())
    assert "key frame's" in " ".join(texts["export"].split())
