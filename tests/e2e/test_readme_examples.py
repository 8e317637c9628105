"""The README is the truth: every shell example in it that works on `make demo`'s outputs (demo_out/,
runs/) runs as written, on a small stand-in for those outputs, with only the run lengths shortened."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
# make demo's order: teachers, cache, looking at it, training, scoring
ORDER = {"fit-teacher": 0, "export": 1, "inspect": 2, "validate": 2, "show": 2, "train": 3, "eval": 4}


def readme_demo_commands() -> list[str]:
    """Shell lines of the README's code blocks that run x3kd on demo outputs (continuations joined,
    comments dropped, placeholders like `...` skipped)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if language not in ("", "bash", "sh"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("x3kd-cache ", "x3kd-student ")) and "demo_out/" in line and "..." not in line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def shortened(command: str) -> list[str]:
    args = shlex.split(command)
    sub = args[1]
    if sub == "fit-teacher":
        args += ["--steps", "2"]
    if sub == "train":
        args = [a.replace("train.steps=300", "train.steps=2") for a in args]
    if sub == "eval":
        args = [a.replace("step_0000300.pt", "step_0000002.pt") for a in args]
    return args


def test_the_readme_has_demo_examples_for_every_stage():
    subs = {shlex.split(c)[1] for c in readme_demo_commands()}
    assert set(ORDER) <= subs, set(ORDER) - subs


def test_readme_examples_run_as_written(tmp_path, monkeypatch):
    from student.cli import main as student_cli
    from teacher_export.cli import main as cache_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "configs").symlink_to(REPO / "configs")
    runner = CliRunner()
    r = runner.invoke(cache_cli, ["make-synthetic", "demo_out/data"])  # the test preset: 2 scenes x 3 samples
    assert r.exit_code == 0, r.output
    commands = sorted(readme_demo_commands(), key=lambda c: ORDER.get(shlex.split(c)[1], 9))
    for command in commands:
        args = shortened(command)
        cli = cache_cli if args[0] == "x3kd-cache" else student_cli
        r = runner.invoke(cli, args[1:])
        assert r.exit_code == 0, f"README example failed: {command}\n{r.output[-2000:]}"
    assert (tmp_path / "demo_out" / "pictures" / "cache" / "bev_teacher_heatmap.png").is_file()
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "step_0000002.pt").is_file()
    assert (tmp_path / "runs" / "tiny" / "eval" / "metrics.json").is_file()
