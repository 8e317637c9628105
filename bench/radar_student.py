"""The radar student in the synthetic lab: KD-only (the paper's setting, no GT) vs GT-only vs both.

    python -m bench.radar_student --work lab/ [--steps 400] [--seeds 0 1 2] [--parallel 2]

Every step is the CLI a user runs, and a step whose output exists is skipped (re-running resumes):
1. data: `x3kd-cache make-synthetic --preset demo --samples-per-scene 30` (240 mini_train / 60
   mini_val samples, five radars with 6 scans per key frame);
2. the LiDAR teacher: `x3kd-cache fit-teacher lidar --preset demo --steps 1200` (CenterPoint
   pillar02-small, fitted on mini_train only);
3. caches of mini_train and mini_val with that teacher (no image teacher: the radar student has no
   cameras), the radar points in their radar group;
4. the teacher's own score on mini_val (its cached maps decoded and scored by DetectionEval,
   `teacher_export.evaluate`): the ceiling of what distillation can pass on;
5. for each mode and seed, `x3kd-student train --config configs/radar_pillar02.yaml` on the train
   cache and `x3kd-student eval` on mini_val; runs go `--parallel` at a time with one thread each.
Prints a markdown table (mean +- std over seeds, and each seed) for BENCHMARKS.md.

With `--lab LAB` the students train instead on the synthetic lab that `bench.synthetic_ablation --work LAB`
prepared: its data (v1.0-trainval, 480 train / 120 val samples), its train cache, which holds the radar
group and the committed lab LiDAR teacher's maps (teachers/lab/, a far stronger teacher than the one
fitted above), and that teacher's score on val; `configs/radar_lab.yaml` (the lab teacher's grid);
steps from that file unless `--steps`. Nothing is fitted or exported.

    python -m bench.radar_student --work radar_lab/ --lab lab/ --modes kd_only gt_only [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "radar_pillar02.yaml"
LAB_CONFIG = REPO / "configs" / "radar_lab.yaml"
TEACHER_OFF = ["loss.xfd.enabled=false", "loss.xat.enabled=false", "loss.xod.enabled=false"]
# run-folder slug -> (table row, --set overrides)
MODES: dict[str, tuple[str, list[str]]] = {
    "kd_only_mass": ("KD-only, X-OD heatmap / sum H_T (the first definition)",
                     ["loss.det.weight=0", "loss.xod.normalize=mass"]),
    "kd_only": ("KD-only (X-FD + X-AT + X-OD, no GT)", ["loss.det.weight=0"]),
    "gt_only": ("GT-only (det)", TEACHER_OFF),
    "gt_kd": ("GT + KD (det + X-FD + X-AT + X-OD)", []),
}


def run(cmd: list[str], log: Path, threads: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}; see {log}")


@dataclass(frozen=True)
class Setup:
    """Where the students train and are scored, and with what."""

    data: Path
    train_cache: Path
    version: str
    val_split: str
    config: Path
    teacher: dict  # the LiDAR teacher's own metrics on the val split
    overrides: tuple[str, ...] = ()


def lab_setup(lab: Path) -> Setup:
    """The synthetic lab `bench.synthetic_ablation --work LAB` prepared (exits in one line when it has not)."""
    cache, scores = lab / "cache_train.zarr", lab / "teacher_lidar" / "metrics.json"
    if not (lab / "data" / "v1.0-trainval" / "scene.json").is_file() or not cache.is_dir() or not scores.is_file():
        print(f"--lab {lab}: no prepared lab there (its data, cache_train.zarr and teacher_lidar/metrics.json); "
              f"run `python -m bench.synthetic_ablation --work {lab}` first", file=sys.stderr)
        sys.exit(2)
    return Setup(lab / "data", cache, "v1.0-trainval", "val", LAB_CONFIG, json.loads(scores.read_text()))


def prepare(work: Path, size: list[str], teacher_steps: int) -> Setup:
    data, teachers = work / "data", work / "teachers"
    teachers.mkdir(parents=True, exist_ok=True)
    if not (data / "v1.0-mini" / "scene.json").is_file():
        run([BIN / "x3kd-cache", "make-synthetic", data, "--preset", "demo", *size], work / "make_synthetic.log")
    if not (teachers / "lidar.pth").is_file():
        run([BIN / "x3kd-cache", "fit-teacher", "lidar", "--preset", "demo", "--steps", str(teacher_steps),
             "--dataroot", data,
             "--version", "v1.0-mini", "--split", "mini_train", "--out", teachers / "lidar.pth",
             "--export-yaml", teachers / "export.yaml"], work / "fit_lidar.log")
    caches = {}
    for split in ("mini_train", "mini_val"):
        caches[split] = work / f"cache_{split}.zarr"
        run([BIN / "x3kd-cache", "export", "--config", teachers / "export.yaml", "--image-teacher", "none",
             "--dataroot", data, "--version", "v1.0-mini", "--split", split, "--out", caches[split]],
            work / f"export_{split}.log")
    teacher_eval = work / "teacher_eval"
    if not (teacher_eval / "metrics.json").is_file():
        from teacher_export.evaluate import evaluate_cached_lidar_teacher

        evaluate_cached_lidar_teacher(str(caches["mini_val"]), data, "v1.0-mini", "mini_val", teacher_eval,
                                      progress=False)
    # the demo teacher's small pillar02 config has a 48-channel BEV feature
    return Setup(data, caches["mini_train"], "v1.0-mini", "mini_val", CONFIG,
                 json.loads((teacher_eval / "metrics.json").read_text()), ("model.teacher_bev_channels=48",))


def train_and_eval(work: Path, setup: Setup, mode: str, seed: int, steps: int) -> dict:
    out = work / "runs" / f"{mode}_seed{seed}"
    metrics = out / "eval" / "metrics.json"
    if not metrics.is_file():
        overrides = [*setup.overrides, f"train.seed={seed}", f"train.steps={steps}",
                     f"train.checkpoint_every={steps}", *MODES[mode][1]]
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        run([BIN / "x3kd-student", "train", "--cache", setup.train_cache, "--config", setup.config, "--out", out,
             "--overwrite", "--quiet", *[a for o in overrides for a in ("--set", o)]], out / "train.log", threads=1)
        seconds = time.perf_counter() - t0
        run([BIN / "x3kd-student", "eval", "--checkpoint", out / "checkpoints" / f"step_{steps:07d}.pt",
             "--dataroot", setup.data, "--version", setup.version, "--split", setup.val_split, "--out",
             out / "eval"], out / "eval.log", threads=1)
        result = json.loads(metrics.read_text())
        result["train_seconds"] = seconds
        metrics.write_text(json.dumps(result, indent=2))
    result = json.loads(metrics.read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    return {"mode": mode, "seed": seed, "mAP": result["mAP"], "NDS": result["NDS"],
            "per_class_AP": result["per_class_AP"], "s_per_step": summary["seconds_per_step"]}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Folder for data, teacher, caches and runs.")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the config's; "
                                                                   "400 for the demo-sized lab, 800 with --lab)")
    parser.add_argument("--lab", type=Path, help="train on the synthetic lab prepared in this folder by "
                                                 "bench.synthetic_ablation (its data, caches and LiDAR teacher)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="Training runs at a time (one thread each).")
    parser.add_argument("--scenes", type=int, help="scenes of the synthetic data (default: the demo preset's 10; a "
                                                   "smoke test's few, whose numbers mean nothing)")
    parser.add_argument("--samples-per-scene", type=int, default=30)
    parser.add_argument("--teacher-steps", type=int, default=1200, help="fit-teacher lidar steps")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="rows to run (default: all)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    size = [*(["--scenes", str(args.scenes)] if args.scenes else []), "--samples-per-scene", str(args.samples_per_scene)]
    setup = lab_setup(args.lab) if args.lab else prepare(args.work, size, args.teacher_steps)
    import yaml

    steps = args.steps or int(yaml.safe_load(setup.config.read_text())["train"]["steps"])
    teacher = setup.teacher
    modes = {m: MODES[m] for m in args.modes}
    jobs = [(mode, seed) for mode in modes for seed in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: train_and_eval(args.work, setup, *job, steps), jobs))
    print(f"{setup.config.relative_to(REPO)} on {setup.data} ({setup.version}); LiDAR teacher (its cached maps "
          f"decoded, {setup.val_split}): mAP {teacher['mAP']:.4f}  NDS {teacher['NDS']:.4f}")
    print(f"\n{steps} steps, batch 2, seeds {args.seeds}; wall time of this invocation "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| radar student | mAP (mean ± std) | NDS (mean ± std) | mAP per seed | NDS per seed | s/step |")
    print("| --- | ---: | ---: | --- | --- | ---: |")
    for mode, (row, _) in modes.items():
        rs = [r for r in rows if r["mode"] == mode]
        print(f"| {row} | {_mean_std([r['mAP'] for r in rs])} | {_mean_std([r['NDS'] for r in rs])} | "
              + ", ".join(f"{r['mAP']:.4f}" for r in rs) + " | " + ", ".join(f"{r['NDS']:.4f}" for r in rs)
              + f" | {statistics.mean(r['s_per_step'] for r in rs):.3f} |")
    classes = list(rows[0]["per_class_AP"])
    print("\nper-class AP (mean over seeds):\n")
    print("| radar student | " + " | ".join(classes) + " |")
    print("| --- | " + " | ".join("---:" for _ in classes) + " |")
    print("| LiDAR teacher | " + " | ".join(f"{teacher['per_class_AP'][c]:.3f}" for c in classes) + " |")
    for mode, (row, _) in modes.items():
        rs = [r for r in rows if r["mode"] == mode]
        print(f"| {row.split(' (')[0].split(',')[0] + (' (sum H_T)' if mode.endswith('mass') else '')} | "
              + " | ".join(f"{statistics.mean(r['per_class_AP'][c] for r in rs):.3f}" for c in classes) + " |")


if __name__ == "__main__":
    main()
