"""Every bench/ script runs end to end at a tiny size, so the command behind each table in BENCHMARKS.md
keeps running as the code changes. Numbers at these sizes mean nothing; the tables' shape is checked."""
from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def tiny_lab(tmp_path_factory) -> tuple[Path, str]:
    """A two-scene synthetic lab with the det + DS and A/A rows of two steps: its folder and the printout."""
    work = tmp_path_factory.mktemp("lab") / "work"
    out = bench("synthetic_ablation", "--work", work, "--scenes", 2, "--samples-per-scene", 2, "--rows", "ds", "ds_aa",
                "--steps", 2, "--seeds", 0, "--parallel", 1, timeout=600)
    return work, out


def test_synthetic_ablation(tiny_lab):
    _, out = tiny_lab
    assert "| det + DS (BEVDepth)" in out and "| det + DS, another data order (A/A)" in out


def test_synthetic_ablation_scores_the_raw_weights_of_an_ema_run(tiny_lab):
    """--raw-weights: a run that kept an EMA is scored once more on its raw weights (same checkpoint, same
    val), and a run without one keeps its only score."""
    work, _ = tiny_lab
    ema_run = ["--work", work, "--rows", "ds", "--steps", 2, "--seeds", 0, "--parallel", 1, "--tag", "ema"]
    out = bench("synthetic_ablation", *ema_run, "--set", "train.ema_decay=0.9", "--set", "train.ema_warmup=1",
                timeout=600)
    assert "scored weights: EMA in 1 of 1 runs" in out
    out = bench("synthetic_ablation", *ema_run, "--report-only", "--raw-weights")
    assert "scored weights: raw" in out
    run = work / "runs" / "ema" / "ds_seed0"
    averaged = json.loads((run / "eval" / "metrics.json").read_text())
    raw = json.loads((run / "eval_raw" / "metrics.json").read_text())
    assert averaged["ema_weights"] and not raw["ema_weights"] and raw["checkpoint"] == averaged["checkpoint"]
    bench("synthetic_ablation", "--work", work, "--rows", "ds", "--seeds", 0, "--report-only", "--raw-weights")
    assert not (work / "runs" / "ds_seed0" / "eval_raw").exists()


def test_radar_student(tmp_path):
    out = bench("radar_student", "--work", tmp_path / "work", "--scenes", 2, "--samples-per-scene", 3,
                "--teacher-steps", 2, "--modes", "gt_kd", "--steps", 2, "--seeds", 0, "--parallel", 1, timeout=600)
    assert "| GT + KD" in out


def test_radar_student_on_the_lab(tiny_lab, tmp_path):
    """--lab: the radar students train on the lab's own cache (the lab teacher's grid and 96 channels)."""
    lab, _ = tiny_lab
    out = bench("radar_student", "--work", tmp_path / "radar", "--lab", lab, "--modes", "kd_only", "--steps", 2,
                "--seeds", 0, "--parallel", 1, timeout=600)
    assert "configs/radar_lab.yaml" in out and "| KD-only (X-FD + X-AT + X-OD, no GT)" in out
    missing = subprocess.run([sys.executable, "-m", "bench.radar_student", "--work", tmp_path / "w", "--lab",
                              tmp_path / "nothing"], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "--lab" in missing.stderr and "synthetic_ablation" in missing.stderr


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


def test_lab_eval_noise(tiny_lab):
    """The A/A rows of a two-step lab, scored again on the lab's own data as the 'second' val set."""
    work, _ = tiny_lab
    out = bench("lab_eval_noise", "--runs", work / "runs", "--dataroot", work / "data", "--rows", "ds", "ds_aa",
                "--seeds", 0)
    assert "| ds_seed0 |" in out and "| ds_aa_seed0 |" in out


def test_teacher_feature_content(train_cache):
    out = bench("teacher_feature_content", "--train", train_cache, "--val", train_cache, "--samples", 3,
                "--mlp-steps", 5)
    assert "| MLP on the box descriptors |" in out and "of the teacher feature's energy" in out
    assert "| class | GT centres |" in out and "class-agnostic heatmap correlates" in out
