"""The README and every command's --help are the truth: each of their examples that works on `make demo`'s
outputs (demo_out/, and the runs/ its examples train) runs as written on what `scripts/demo.sh` itself
made, at a tiny size (its own SCENES, SAMPLES and STEPS), with only run lengths shortened. The data is
made the way the demo makes it, so the two cannot drift apart."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
# make demo's order: teachers, caches, looking at them, scoring teachers, training, scoring students
ORDER = {"fit-teacher": 0, "export": 1, "inspect": 2, "validate": 2, "show": 2, "eval-teacher": 3, "train": 4,
         "eval": 5, "release": 6, "export-onnx": 7, "predict": 8}


def order(command: str) -> int:
    """When an example can run: after the commands that make its inputs (`--onnx` reads export-onnx's)."""
    return 8 if " --onnx " in command else ORDER.get(shlex.split(command)[1], 9)
DEMO_PATHS = ("demo_out/", "runs/lab", "runs/radar_kd")


def _commands_in(text: str) -> list[str]:
    """x3kd command lines of a text (continuations joined, comments dropped) that work on demo outputs."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if (line.startswith(("x3kd-cache ", "x3kd-student ")) and any(p in line for p in DEMO_PATHS)
                and "..." not in line):
            commands.append(re.sub(r"\s+", " ", line))
    return commands


def readme_demo_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = [b for lang, b in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S) if lang in ("", "bash", "sh")]
    return [c for b in blocks for c in _commands_in(b)]


def help_demo_commands() -> list[str]:
    from pipelines.cli import main as cache_cli
    from student.cli import main as student_cli

    commands = []
    for group in (cache_cli, student_cli):
        for name, command in group.commands.items():
            with click.Context(command, info_name=name) as ctx:
                commands += _commands_in(command.get_help(ctx).replace("\\\n", " "))
    return commands


def shortened(command: str) -> list[str]:
    args = shlex.split(command)
    sub = args[1]
    if sub == "fit-teacher":
        args += ["--steps", "2"]
    if sub == "train":
        args = [re.sub(r"train\.steps=\d+", "train.steps=2", a) for a in args]
        if not any(a.startswith("train.steps=") for a in args):
            args += ["--set", "train.steps=2"]
        args += ["--overwrite"]  # the README and --help train the same run directories
    if sub in ("eval", "release", "export-onnx", "predict"):
        args = [re.sub(r"step_\d{7}\.pt", "step_0000002.pt", a) for a in args]
    return args


def test_the_readme_and_the_help_have_demo_examples_for_every_stage():
    subs = {shlex.split(c)[1] for c in readme_demo_commands() + help_demo_commands()}
    assert set(ORDER) <= subs, set(ORDER) - subs
    helps = {shlex.split(c)[1] for c in help_demo_commands()}
    assert {"inspect", "validate", "show", "export", "fit-teacher", "eval-teacher", "train", "eval"} <= helps


def test_readme_and_help_examples_run_as_written_on_what_the_demo_made(tmp_path):
    for name in ("configs", "teachers"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "demo_out"), "SCENES": "2", "SAMPLES": "2",
           "STEPS": "2", "BIN": str(Path(sys.executable).parent)}
    demo = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "students on val" in demo.stdout
    # the lab's committed students, scored beside the demo's own, with the seeds behind their difference
    assert "the lab's committed students on the same val split" in demo.stdout and "seeds of each row" in demo.stdout
    assert (tmp_path / "demo_out" / "eval_lab_x3kd" / "metrics.json").is_file()

    from pipelines.cli import main as cache_cli
    from student.cli import main as student_cli

    commands = sorted(dict.fromkeys(readme_demo_commands() + help_demo_commands()),
                      key=order)
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for command in commands:
            args = shortened(command)
            cli = cache_cli if args[0] == "x3kd-cache" else student_cli
            r = runner.invoke(cli, args[1:])
            assert r.exit_code == 0, f"example failed: {command}\n{r.output[-2000:]}"
    finally:
        os.chdir(cwd)
    assert (tmp_path / "demo_out" / "pictures" / "cache" / "bev_teacher_heatmap.png").is_file()
    assert (tmp_path / "runs" / "lab" / "eval" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "radar_kd" / "eval" / "metrics.json").is_file()
    assert (tmp_path / "demo_out" / "cache_own_teachers.zarr").is_dir()


@pytest.mark.parametrize("command", ["x3kd-student train --config configs/lab.yaml --set train.steps=800",
                                     "x3kd-student eval --checkpoint runs/lab/checkpoints/step_0000800.pt"])
def test_shortening_keeps_the_example_and_changes_only_its_length(command):
    args = shortened(command)
    assert "train.steps=2" in args or "runs/lab/checkpoints/step_0000002.pt" in args
