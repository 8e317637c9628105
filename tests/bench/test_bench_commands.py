"""Every bench/ script runs end to end at a tiny size, so the command behind each table in BENCHMARKS.md
keeps running as the code changes. Numbers at these sizes mean nothing; the tables' shape is checked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(module: str, *args: object, timeout: int = 400) -> str:
    """Run `python -m bench.<module> args` as a user would; return its stdout (stderr on failure)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_cache_codecs():
    out = bench("cache_codecs", "--samples", 2, "--shapes", "8x16x16", "--shard-sizes", 2, "--reads", 3)
    assert "| int8+zstd |" in out and "ratio CacheReader / floor" in out


def test_reader_memory():
    out = bench("reader_memory", "--sizes", "8,16", "--max-gt-boxes", 16, "--reads", 4)
    assert "| 8 |" in out and "| 16 |" in out


def test_cache_equivariance(synthetic_dataroot):
    out = bench("cache_equivariance", "--export-yaml", REPO / "teachers/lab/export.yaml", "--lidar-checkpoint",
                REPO / "teachers/lab/lidar.pth", "--dataroot", synthetic_dataroot, "--version", "v1.0-mini",
                "--split", "mini_val", "--samples", 1)
    identity = next(line for line in out.splitlines() if line.startswith("| identity |"))
    assert identity.split("|")[2].strip() == "1.000"  # no augmentation: the warped maps are the teacher's own


def test_export():
    out = bench("export", "--samples", 1, "--image-size", "160x90")
    assert "| LiDAR teacher" in out and "encode+write / teacher time" in out


def test_export_scaling():
    out = bench("export_scaling", "--samples", 4, "--shard-size", 2)
    assert "| 1 | 4 |" in out and "| 2 | 4 |" in out


def test_loader():
    out = bench("loader", "--steps", 3, "--workers", 0)
    assert "| 0 |" in out


def test_student_step():
    out = bench("student_step", "--configs", "tiny", "--steps", 1, "--modes", "all_kd")
    assert "| tiny | no_kd |" in out and "| tiny | all_kd |" in out


def test_student_step_breakdown():
    out = bench("student_step", "--breakdown", "--configs", "tiny", "--steps", 1, "--terms", "xod")
    assert "xod" in out


@pytest.mark.parametrize("module,args,row", [
    ("radar_student", ["--scenes", 2, "--samples-per-scene", 3, "--teacher-steps", 2, "--modes", "gt_kd"], "| GT + KD"),
    ("synthetic_ablation", ["--scenes", 2, "--samples-per-scene", 2, "--rows", "ds"], "| det + DS (BEVDepth)"),
])
def test_lab_benches(tmp_path, module, args, row):
    out = bench(module, "--work", tmp_path / "work", *args, "--steps", 2, "--seeds", 0, "--parallel", 1, timeout=600)
    assert row in out


def test_export_worker_memory():
    out = bench("export_worker_memory", "--copies", 1, 2, "--limit", 1)
    assert out.count("\n| ") >= 2


def test_loader_stages(train_cache, synthetic_dataroot):
    out = bench("loader_stages", "--cache", train_cache, "--dataroot", synthetic_dataroot,
                "--config", REPO / "configs" / "tiny.yaml", "--epochs", 2)
    assert "JPEG" in out or "decode" in out


def test_student_deploy():
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = bench("student_deploy", "--configs", "tiny", "--repeats", 1, "--threads", 1)
    assert "| tiny |" in out


def test_lab_eval_noise(tmp_path):
    """The A/A rows of a two-step lab, scored again on the lab's own data as the 'second' val set."""
    work = tmp_path / "work"
    bench("synthetic_ablation", "--work", work, "--scenes", 2, "--samples-per-scene", 2, "--rows", "ds", "ds_aa",
          "--steps", 2, "--seeds", 0, "--parallel", 1, timeout=600)
    out = bench("lab_eval_noise", "--runs", work / "runs", "--dataroot", work / "data", "--rows", "ds", "ds_aa",
                "--seeds", 0)
    assert "| ds_seed0 |" in out and "| ds_aa_seed0 |" in out
