"""The synthetic lab: every X3KD term measured on a world where the student learns.

    OMP_NUM_THREADS=1 python -m bench.synthetic_ablation --work lab/ [--seeds 0 1 2] [--parallel 2]
    python -m bench.synthetic_ablation --work lab/ --rows ds all --seeds 0      # a quick look
    python -m bench.synthetic_ablation --work lab/ --rows ds --sweep xod=0.3,3  # a weight sweep
    python -m bench.synthetic_ablation --work lab/ --rows ds ds_aa --seeds 0 1 2 3 4 --tag random \
        --set model.backbone.weights=null                                       # the A/A floor, random init

Every step is the CLI a user runs, and a step whose output exists is skipped (re-running resumes; a
finished run is never trained again, so change --work to measure changed code):
1. data: `x3kd-cache make-synthetic --preset lab` (60 scenes of 10 key frames, v1.0-trainval names:
   480 train / 120 val samples; every object within 24 m of the ego car, every detection class equally
   often; README "The synthetic lab");
2. teachers: the committed lab teachers (`teachers/lab/`, their sha256 and the command that fitted
   them in its README), or with --fit-teachers `x3kd-cache fit-teacher {lidar,image} --preset lab`;
3. caches of train and val with both teachers (`x3kd-cache export`), and the teachers' own scores on
   val (`x3kd-cache eval-teacher lidar|image`): what distillation can pass on;
4. per row and seed, `x3kd-student train --config configs/lab.yaml` with the row's loss switches on the
   train cache, and `x3kd-student eval` on val (nuscenes-devkit DetectionEval, 120 samples); runs go
   `--parallel` at a time with one thread each; every run logs its loss terms and, every 50 steps,
   each term's gradient norm on the student (`train.term_grad_every`) into its scalars.jsonl.
Prints markdown tables for BENCHMARKS.md: per row mean ± std over seeds, its paired difference to det +
DS of the same seed with the paired t statistic (bench/paired.py), and beside them the A/A floor (the
paired spread of det + DS against det + DS with another data order, row `ds_aa`) when that row ran;
each seed; per-class AP; each term's gradient norm. With --curves, every row's loss and gradient-norm
curves (mean over seeds) go into work/curves/. Runs go into work/runs/[TAG/], so several budgets or
backbones (`--tag`, `--set`, `--steps`) share one lab's data and caches. A run that keeps an EMA (`--set
train.ema_decay=0.995 --set train.ema_warmup=100`) is scored on it; --raw-weights scores the same runs'
raw weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "lab.yaml"
TEACHERS = REPO / "teachers" / "lab"
VERSION, TRAIN, VAL = "v1.0-trainval", "train", "val"
TERMS = ("ds", "xfd", "xat", "xod", "xis")
NO_BEV_AUG = ["data.bev_aug.rot_lim=[0,0]", "data.bev_aug.scale_lim=[1,1]", "data.bev_aug.flip_x_prob=0",
              "data.bev_aug.flip_y_prob=0"]

# the X-AT cures beside the objective, as every screened X-AT row takes them: DANN's ramp, normalised
# features, only the teacher's foreground judged, the discriminator at half the learning rate
XAT_SETTING = ["loss.xat.ramp=true", "loss.xat.normalize=true", "loss.xat.region=foreground",
               "loss.xat.discriminator_lr_scale=0.5", "loss.xat.weight=0.3"]


def switches(*on: str, det: bool = True) -> list[str]:
    """`--set` overrides that turn exactly the terms `on` (and det unless `det` is False) on."""
    return [f"loss.det.enabled={str(det).lower()}"] + [f"loss.{t}.enabled={str(t in on).lower()}" for t in TERMS]


# row slug -> (table label, overrides). The first eight are the ablation; the rest diagnose it.
ROWS: dict[str, tuple[str, list[str]]] = {
    "det": ("det", switches()),
    "ds": ("det + DS (BEVDepth)", switches("ds")),
    "xfd": ("+ X-FD", switches("ds", "xfd")),
    "xfd_xat": ("+ X-FD + X-AT", switches("ds", "xfd", "xat")),
    "xod": ("+ X-OD", switches("ds", "xod")),
    "xis": ("+ X-IS", switches("ds", "xis")),
    "all": ("all (X3KD)", switches(*TERMS)),
    "kd_only": ("KD-only (DS + X-FD + X-AT + X-OD, no GT boxes)", switches("ds", "xfd", "xat", "xod", det=False)),
    # the A/A row: det + DS again, same initial weights, another data order and augmentation draw
    "ds_aa": ("det + DS, another data order (A/A)", switches("ds") + ["train.data_seed={aa_seed}"]),
    "xis3": ("+ X-IS at weight 3", switches("ds", "xis") + ["loss.xis.weight=3"]),
    "all_xis3": ("all (X3KD), X-IS at weight 3", switches(*TERMS) + ["loss.xis.weight=3"]),
    # issue 29: the LiDAR-map terms as the public distillers build them (student/losses, one switch each)
    "xfd_gauss": ("+ X-FD on the GT Gaussians (BEVDistill)", switches("ds", "xfd") + ["loss.xfd.region=gt_gaussian"]),
    "xfd_boxes": ("+ X-FD in the GT boxes, background 0.1 (DistillBEV)",
                  switches("ds", "xfd") + ["loss.xfd.region=gt_boxes", "loss.xfd.background_weight=0.1"]),
    "xfd_gauss_std": ("+ X-FD on the GT Gaussians, standardised teacher",
                      switches("ds", "xfd") + ["loss.xfd.region=gt_gaussian", "loss.xfd.standardize=true"]),
    "xfd_gauss_att": ("+ X-FD on the GT Gaussians, teacher attention (DistillBEV)",
                      switches("ds", "xfd") + ["loss.xfd.region=gt_gaussian", "loss.xfd.attention=true"]),
    "xfd_points": ("+ X-FD at nine points per GT box, with their relations (UniDistill)",
                   switches("ds", "xfd") + ["loss.xfd.region=box_points", "loss.xfd.relation_weight=1"]),
    "xfd_no_bev_aug": ("+ X-FD, no BEV augmentation (against ds_no_bev_aug)", switches("ds", "xfd") + NO_BEV_AUG),
    "xat_ns": ("+ X-FD + X-AT non-saturating, ramped, normalised",
               switches("ds", "xfd", "xat") + ["loss.xat.objective=nonsaturating", "loss.xat.ramp=true",
                                              "loss.xat.normalize=true", "loss.xat.discriminator_lr_scale=0.5"]),
    "xat_ns_alone": ("+ X-AT non-saturating, ramped, normalised, foreground (no X-FD)",
                     switches("ds", "xat") + ["loss.xat.objective=nonsaturating", *XAT_SETTING]),
    "xat_ls_alone": ("+ X-AT least squares, ramped, normalised, foreground (no X-FD)",
                     switches("ds", "xat") + ["loss.xat.objective=least_squares", *XAT_SETTING]),
    "xod_agn": ("+ X-OD class-agnostic (UniDistill)", switches("ds", "xod") + ["loss.xod.classes=class_agnostic"]),
    "xod_gt": ("+ X-OD gated by the GT Gaussians", switches("ds", "xod") + ["loss.xod.region=gt"]),
    "xod_agn_gt": ("+ X-OD class-agnostic, GT-gated, regression at peaks",
                   switches("ds", "xod") + ["loss.xod.classes=class_agnostic", "loss.xod.region=gt",
                                           "loss.xod.reg_mask=peak"]),
    # the full X3KD with the best-screened variant of each LiDAR term, X-IS at 3: against "xis3" (--base xis3)
    "all_best_xis3": ("all, best variants (X-FD Gaussians, X-AT non-saturating, X-OD agnostic GT), X-IS at 3",
                      switches(*TERMS) + ["loss.xis.weight=3", "loss.xfd.region=gt_gaussian",
                                          "loss.xat.objective=nonsaturating", *XAT_SETTING,
                                          "loss.xod.classes=class_agnostic", "loss.xod.region=gt",
                                          "loss.xod.reg_mask=peak"]),
    # KD-only with the variants that read no GT (teacher attention on X-FD, X-AT non-saturating on the
    # teacher's foreground, X-OD's regression at the teacher's peaks; X-OD stays per class: a student
    # without GT boxes learns its classes from it), against "kd_only"
    "kd_only_best": ("KD-only, GT-free variants (X-FD attention, X-AT non-saturating, X-OD regression at peaks)",
                     switches("ds", "xfd", "xat", "xod", det=False)
                     + ["loss.xfd.attention=true", "loss.xat.objective=nonsaturating", *XAT_SETTING,
                        "loss.xod.reg_mask=peak"]),
    # diagnosis
    "ds_no_bev_aug": ("det + DS, no BEV augmentation", switches("ds") + NO_BEV_AUG),
    "all_no_bev_aug": ("all, no BEV augmentation", switches(*TERMS) + NO_BEV_AUG),
    "xis_background": ("+ X-IS, images without pseudo-labels trained as background",
                       switches("ds", "xis") + ["loss.xis.empty_images=background"]),
    "xfd_view": ("+ X-FD on the view-transform features", switches("ds", "xfd") + ["loss.xfd.feature=view_transform"]),
}
# the paper's ablation with X-IS at the weight the lab found (3; `xis` and `all` keep the paper's 1), and
# the A/A floor every row is read against
DEFAULT_ROWS = ("det", "ds", "ds_aa", "xfd", "xfd_xat", "xod", "xis3", "all_xis3", "kd_only")


# the effect the lab is meant to see: about what each of the paper's terms adds on nuScenes
SMALL_EFFECT = 0.03

# A/A runs draw their data order from the seed plus this (their initial weights are the seed's)
AA_OFFSET = 1000


def run(cmd: list, log: Path, threads: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as f:
        # from the repository root: configs name the committed lab files (teachers/lab/) relative to it
        done = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}; see {log}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare(work: Path, fit_teachers: bool, threads: int, size: list[str] = ()) -> tuple[Path, Path, dict, dict, dict]:
    """Data, teachers, caches and teacher scores (each skipped when already there). `size`: extra
    make-synthetic options (the smoke test's few scenes)."""
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t = time.perf_counter()
    if not (data / VERSION / "scene.json").is_file():
        run([BIN / "x3kd-cache", "make-synthetic", data, "--preset", "lab", *size], work / "make_synthetic.log", threads)
        timing["data_s"] = time.perf_counter() - t
    teachers = work / "teachers" if fit_teachers else TEACHERS
    if fit_teachers:
        teachers.mkdir(parents=True, exist_ok=True)
        for kind in ("lidar", "image"):
            if not (teachers / f"{kind}.pth").is_file():
                t = time.perf_counter()
                run([BIN / "x3kd-cache", "fit-teacher", kind, "--preset", "lab", "--dataroot", data, "--version", VERSION,
                     "--split", TRAIN, "--out", teachers / f"{kind}.pth"], work / f"fit_{kind}.log", threads)
                timing[f"fit_{kind}_s"] = time.perf_counter() - t
    export = [BIN / "x3kd-cache", "export", "--config", TEACHERS / "export.yaml", "--dataroot", data,
              "--version", VERSION, "--lidar-checkpoint", teachers / "lidar.pth",
              "--image-checkpoint", teachers / "image.pth"]
    caches = {}
    for split in (TRAIN, VAL):
        caches[split] = work / f"cache_{split}.zarr"
        t = time.perf_counter()
        run([*export, "--split", split, "--out", caches[split]], work / f"export_{split}.log", threads)
        timing[f"export_{split}_s"] = time.perf_counter() - t
    scores = {}
    for kind in ("lidar", "image"):
        out = work / f"teacher_{kind}"
        if not (out / "metrics.json").is_file():
            extra = ["--dataroot", data, "--version", VERSION, "--split", VAL] if kind == "lidar" else []
            run([BIN / "x3kd-cache", "eval-teacher", kind, "--cache", caches[VAL], "--out", out, *extra],
                work / f"eval_teacher_{kind}.log", threads)
        scores[kind] = json.loads((out / "metrics.json").read_text())
    identity = {k: sha256(teachers / f"{k}.pth") for k in ("lidar", "image")}
    return data, caches[TRAIN], scores, identity, timing


def score(checkpoint: Path | str, data: Path, out: Path, *options: str) -> None:
    """`x3kd-student eval` of one checkpoint on the lab's val split into `out` (its log beside it)."""
    run([BIN / "x3kd-student", "eval", "--checkpoint", checkpoint, *options, "--dataroot", data, "--version", VERSION,
         "--split", VAL, "--out", out], out.with_suffix(".log"), threads=1)


def train_and_eval(runs: Path, data: Path, cache: Path, row: str, overrides: list[str], seed: int, steps: int,
                   extra: list[str], train: bool = True, raw_weights: bool = False) -> dict | None:
    """The run's result, trained and scored first unless it was (None when `train` is off and it was not).
    `raw_weights`: a run that kept an EMA is scored on its raw weights too (RUN/eval_raw/, once), and that
    score is its result."""
    out = runs / f"{row}_seed{seed}"
    metrics = out / "eval" / "metrics.json"
    if not metrics.is_file() and not train:
        return None
    if not metrics.is_file():
        sets = [*extra, *(o.format(aa_seed=seed + AA_OFFSET) for o in overrides), f"train.seed={seed}",
                f"train.steps={steps}", f"train.checkpoint_every={steps}", "train.term_grad_every=50"]
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        run([BIN / "x3kd-student", "train", "--cache", cache, "--dataroot", data, "--config", CONFIG, "--out", out,
             "--overwrite", "--quiet", *[a for o in sets for a in ("--set", o)]], out / "train.log", threads=1)
        seconds = time.perf_counter() - t0
        score(out / "checkpoints" / f"step_{steps:07d}.pt", data, out / "eval")
        result = json.loads(metrics.read_text())
        result["train_seconds"] = seconds
        metrics.write_text(json.dumps(result, indent=2))
    result = json.loads(metrics.read_text())
    if raw_weights and result.get("ema_weights"):
        # the same trajectory without the average: what the EMA changes, free of any other difference
        raw = out / "eval_raw" / "metrics.json"
        if not raw.is_file():
            score(result["checkpoint"], data, out / "eval_raw", "--no-ema")
        result = {**json.loads(raw.read_text()), "train_seconds": result.get("train_seconds", 0.0)}
    summary = json.loads((out / "train_summary.json").read_text())
    return {"row": row, "seed": seed, "mAP": result["mAP"], "NDS": result["NDS"], "per_class_AP": result["per_class_AP"],
            "s_per_step": summary["seconds_per_step"], "train_s": result.get("train_seconds", 0.0), "dir": str(out),
            "ema": bool(result.get("ema_weights"))}


def result_table(rows: dict[str, tuple[str, list[str]]], results: list[dict], base_row: str = "ds") -> list[str]:
    """Markdown: per row mean ± std of mAP and NDS, its paired difference to `base_row` (det + DS unless
    told) of the same seed with the paired t (a seed fixes the initial weights and the data order in every
    row, so the difference is free of the between-seed spread those cause), and the A/A floor (ds_aa
    against ds) when both ran."""
    from bench.paired import detectable_effect, paired, seeds_for_effect

    base = {r["seed"]: r["mAP"] for r in results if r["row"] == base_row}
    base_label = (rows.get(base_row) or ROWS.get(base_row) or (base_row,))[0]
    floor = paired({r["seed"]: r["mAP"] for r in results if r["row"] == "ds_aa"},
                   {r["seed"]: r["mAP"] for r in results if r["row"] == "ds"})
    lines = []
    if floor.n >= 2:
        lines += [f"A/A floor (det + DS against itself with another data order, same initial weights): paired Δ mAP "
                  f"{floor.format()}; at this spread n seeds show an effect of "
                  + ", ".join(f"{detectable_effect(floor.std, n):.3f} (n = {n})" for n in (3, 5, 8))]
        # what the floor costs: the lab's question is a 0.03 effect, and a row costs one run per seed
        needed = seeds_for_effect(floor.std, SMALL_EFFECT)
        lines[-1] += f"; a {SMALL_EFFECT} effect needs {needed} seeds"
        timed = [r["train_s"] for r in results if r["row"] in ("ds", "ds_aa") and r["train_s"]]
        if timed:
            minutes = statistics.mean(timed) / 60
            lines[-1] += (f", at {minutes:.1f} min of training per det + DS run here (one thread) "
                          f"~{needed * minutes / 60:.1f} core-hours per row")
        lines[-1] += "\n"
    lines += [f"| student | seeds | mAP (mean ± std) | NDS (mean ± std) | Δ mAP vs {base_label}, same seed (t) | "
              "beyond t crit? | mAP per seed | s/step |",
              "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for row, (label, _) in rows.items():
        rs = sorted((r for r in results if r["row"] == row), key=lambda r: r["seed"])
        if not rs:
            continue
        delta = paired({r["seed"]: r["mAP"] for r in rs}, base)
        # two seeds give a t but not a spread to trust (one degree of freedom): no verdict below three
        beyond = ("–" if row == base_row or delta.n < 2 else "n < 3" if delta.n < 3
                  else "yes" if delta.beyond_noise else "no")
        lines.append(f"| {label} | {len(rs)} | {mean_std([r['mAP'] for r in rs])} | {mean_std([r['NDS'] for r in rs])} | "
                     f"{delta.format() if row != base_row else '–'} | {beyond} | "
                     + ", ".join(f"{r['mAP']:.4f}" for r in rs) + f" | {statistics.mean(r['s_per_step'] for r in rs):.3f} |")
    return lines


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def read_curves(run_dir: str) -> list[dict]:
    path = Path(run_dir) / "scalars.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def term_table(rows: dict[str, tuple[str, list[str]]], results: list[dict], first_step: int = 100) -> list[str]:
    """Markdown: per row, every term's gradient norm on the student (mean over the logged steps from
    `first_step` on and over seeds) and its weighted loss over the last fifth of training: how hard each
    term pulls against det's pull, the evidence for a term that does not move the result."""
    curves = {r["dir"]: read_curves(r["dir"]) for r in results}
    terms = [t for t in ("det", *TERMS) if any(f"grad_norm/{t}" in p for c in curves.values() for p in c)]
    if not terms:
        return ["(no gradient norms logged: every run is shorter than train.term_grad_every)"]
    lines = ["| student | " + " | ".join(f"‖∇{t}‖" for t in terms) + " | " + " | ".join(f"loss {t}" for t in terms) + " |",
             "| --- | " + " | ".join("---:" for _ in terms * 2) + " |"]
    for row, (label, _) in rows.items():
        runs = [curves[r["dir"]] for r in results if r["row"] == row]
        last = max((p["step"] for c in runs for p in c), default=0)

        def mean_of(key: str, since: int) -> str:
            vals = [p[key] for c in runs for p in c if key in p and p["step"] >= since]
            return f"{statistics.mean(vals):.3g}" if vals else "–"
        lines.append(f"| {label} | " + " | ".join(mean_of(f"grad_norm/{t}", first_step) for t in terms) + " | "
                     + " | ".join(mean_of(f"loss/loss_{t}", last * 4 // 5) for t in terms) + " |")
    return lines


def draw_curves(work: Path, rows: list[dict], labels: dict[str, str]) -> list[Path]:
    """Per row (mean over its seeds): every loss term over the steps, and every term's gradient norm on
    the student's weights; one PNG each for losses and gradient norms."""
    from matplotlib.figure import Figure

    by_row: dict[str, list[list[dict]]] = {}
    for r in rows:
        by_row.setdefault(r["row"], []).append(read_curves(r["dir"]))
    paths = []
    for prefix, title in (("loss/loss_", "loss term (weighted)"), ("grad_norm/", "gradient norm on the student")):
        keys = sorted({k for runs in by_row.values() for c in runs for p in c for k in p if k.startswith(prefix)})
        if not keys:
            continue
        fig = Figure(figsize=(4.2 * len(keys), 3.4))
        for i, key in enumerate(keys):
            ax = fig.add_subplot(1, len(keys), i + 1)
            # one colour per row in every panel: a panel shows only the rows that have its term
            for colour, (row, runs) in enumerate(by_row.items()):
                points: dict[int, list[float]] = {}
                for c in runs:
                    for p in c:
                        if key in p:
                            points.setdefault(p["step"], []).append(p[key])
                if points:
                    steps = sorted(points)
                    ax.plot(steps, [statistics.mean(points[s]) for s in steps], label=row, lw=1, color=f"C{colour % 10}")
            ax.set_title(key.removeprefix(prefix), fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.set_yscale("log")
            ax.tick_params(labelsize=7)
        for ax in fig.axes:
            ax.legend(fontsize=6)
        fig.suptitle(f"{title}, mean over seeds", fontsize=10)
        fig.tight_layout()
        out = work / "curves" / f"{prefix.split('/')[0]}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=90)
        paths.append(out)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Folder for data, caches and runs.")
    parser.add_argument("--rows", nargs="*", choices=list(ROWS), default=list(DEFAULT_ROWS),
                        help="rows to run (default: the ablation's); a bare --rows runs only the --sweep rows")
    parser.add_argument("--sweep", action="append", default=[], metavar="TERM=W1,W2",
                        help="also run the det + DS + TERM row at these weights (e.g. xod=0.3,3)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: configs/lab.yaml's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2, help="training runs at a time, one thread each")
    parser.add_argument("--fit-teachers", action="store_true",
                        help="fit the lab teachers into WORK/teachers instead of using the committed teachers/lab/")
    parser.add_argument("--curves", action="store_true", help="draw loss and gradient-norm curves into WORK/curves/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every run")
    parser.add_argument("--tag", default="", help="runs go into WORK/runs/TAG/: several budgets or backbones "
                                                  "(--steps, --set) on one lab's data and caches")
    parser.add_argument("--scenes", type=int, help="make a lab of this many scenes instead of the preset's (a smoke "
                                                   "test's few; the numbers then mean nothing)")
    parser.add_argument("--samples-per-scene", type=int, help="with --scenes: key frames per scene")
    parser.add_argument("--base", default="ds", help="the row every other row is paired against (default: det + DS)")
    parser.add_argument("--raw-weights", action="store_true",
                        help="score the raw weights of runs that kept an EMA (--set train.ema_decay=...; scored "
                             "into RUN/eval_raw/ on first use): the same runs with and without the average")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the tables of the runs already scored (e.g. while the lab runs)")
    args = parser.parse_args()
    size = [*(["--scenes", str(args.scenes)] if args.scenes else []),
            *(["--samples-per-scene", str(args.samples_per_scene)] if args.samples_per_scene else [])]
    import yaml

    steps = args.steps or int(yaml.safe_load(CONFIG.read_text())["train"]["steps"])
    t0 = time.perf_counter()
    rows = {r: ROWS[r] for r in args.rows}
    for spec in args.sweep:
        term, _, weights = spec.partition("=")
        if term not in TERMS or not weights:
            parser.error(f"--sweep {spec!r}: expected TERM=W1,W2 with TERM one of {', '.join(TERMS)}")
        for w in weights.split(","):
            rows[f"{term}_w{w}"] = (f"+ {term.upper().replace('X', 'X-', 1)} at weight {w}",
                                    switches("ds", term) + [f"loss.{term}.weight={w}"])
    if not rows:
        parser.error("--rows: no rows to run (a bare --rows needs at least one --sweep)")
    # a row run on its own (`--rows det`) is reported unpaired; a base asked for must be among the rows
    if args.base not in rows and args.base != parser.get_default("base"):
        parser.error(f"--base {args.base}: not one of the rows run ({', '.join(rows)})")
    data, cache, teacher, identity, timing = prepare(args.work, args.fit_teachers, threads=args.parallel, size=size)
    runs = args.work / "runs" / args.tag if args.tag else args.work / "runs"
    # seed by seed: each finished seed is a complete paired comparison of every row
    jobs = [(row, seed) for seed in args.seeds for row in rows]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda job: train_and_eval(runs, data, cache, job[0], rows[job[0]][1], job[1],
                                                           steps, args.overrides, not args.report_only,
                                                           args.raw_weights), jobs))
    missing = [f"{row}_seed{seed}" for (row, seed), r in zip(jobs, results) if r is None]
    results = [r for r in results if r is not None]
    if not results:
        sys.exit(f"{runs}: none of these runs has been scored yet")
    lidar, image = teacher["lidar"], teacher["image"]
    backbone = REPO / "teachers" / "lab" / "backbone.pth"
    if backbone.is_file():
        print(f"pretrained backbone (configs/lab.yaml's model.backbone.weights unless --set): sha256 "
              f"{sha256(backbone)[:12]}")
    print(f"teachers (sha256 lidar {identity['lidar'][:12]}, image {identity['image'][:12]}), on val:")
    print(f"  LiDAR CenterPoint: mAP {lidar['mAP']:.4f}  NDS {lidar['NDS']:.4f}")
    print(f"  image Mask R-CNN: box AP {image['bbox']['AP']:.3f}  AP50 {image['bbox']['AP50']:.3f}; "
          f"mask AP {image['segm']['AP']:.3f}  AP50 {image['segm']['AP50']:.3f}")
    print(f"\n{CONFIG.relative_to(REPO)}, {steps} steps, seeds {args.seeds}, {args.parallel} runs at a time; "
          f"wall time of this invocation {time.perf_counter() - t0:.0f} s"
          + (f" (of which {', '.join(f'{k} {v:.0f}' for k, v in timing.items())})" if timing else "") + "\n")
    averaged = sum(r["ema"] for r in results)
    print(f"runs: {runs}; extra overrides: {args.overrides or 'none'}; scored weights: "
          + (f"EMA in {averaged} of {len(results)} runs, raw in the rest" if averaged else "raw")
          + (f"; not scored yet, left out: {', '.join(missing)}" if missing else "") + "\n")
    print("\n".join(result_table(rows, results, args.base)) + "\n")
    classes = list(results[0]["per_class_AP"])
    print("\nper-class AP (mean over seeds):\n")
    print("| student | " + " | ".join(classes) + " |")
    print("| --- | " + " | ".join("---:" for _ in classes) + " |")
    print("| LiDAR teacher | " + " | ".join(f"{lidar['per_class_AP'][c]:.3f}" for c in classes) + " |")
    for row, (label, _) in rows.items():
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        print(f"| {label} | " + " | ".join(f"{statistics.mean(r['per_class_AP'][c] for r in rs):.3f}"
                                           for c in classes) + " |")
    print("\nwhat each term pulls with: gradient norm on the student's weights (mean over steps >= 100, every "
          "50 steps, and seeds), weighted loss over the last fifth of training (mean):\n")
    print("\n".join(term_table(rows, results)))
    (runs / "ablation.json").write_text(json.dumps({"teachers": teacher, "runs": results}, indent=2))
    if args.curves:
        for path in draw_curves(args.work, results, {r: label for r, (label, _) in rows.items()}):
            print(f"curves: {path}")


if __name__ == "__main__":
    main()
