"""X3KD ablation on a synthetic dataset: student mAP / NDS (nuscenes-devkit) per loss combination.

Every row trains the same student (same config, seed, data order and step budget) from the same cache
and evaluates it on the same split; only the loss switches differ:

    det only | +DS | +X-FD | +X-FD+X-AT | +X-OD | +X-IS | all | KD-only

("+X" rows are det + DS + X, the BEVDepth baseline plus one distillation term; KD-only is X-FD + X-AT +
X-OD without GT boxes, the paper's RADAR setting). The distillation terms carry knowledge only if
the cache was made by FITTED teachers (`x3kd-cache fit-teacher`); with random teachers the KD rows
measure noise, not X3KD.

Budget (2 shared CPU cores, measured on the synthetic `demo` preset, cache by the small test teachers):
configs/tiny.yaml at batch 2 runs ~0.55 s/step (det + DS; all terms ~0.7). The det + DS row reached
mAP 0.002 / NDS 0.095 on mini_val after 400 steps (3.5 min: noise) and mAP 0.051 / NDS 0.131 after
1200 steps (11 min), so the default is 1200 steps: ~11-14 min per row, ~1.7 h for the eight rows.
Lower --steps only to check that the script works; on a GPU add `--set train.device=cuda`.

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.synthetic_ablation --cache CACHE --dataroot DATAROOT \\
        --version v1.0-mini --split mini_val --steps 1200 --out runs/ablation
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.synthetic_ablation --cache C --dataroot D --steps 5 --rows det all
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_OFF = {"ds": False, "xfd": False, "xat": False, "xod": False, "xis": False}
ROWS: dict[str, dict] = {
    "det": {"label": "det only", "on": {}},
    "ds": {"label": "+DS", "on": {"ds": True}},
    "xfd": {"label": "+X-FD", "on": {"ds": True, "xfd": True}},
    "xfd_xat": {"label": "+X-FD+X-AT", "on": {"ds": True, "xfd": True, "xat": True}},
    "xod": {"label": "+X-OD", "on": {"ds": True, "xod": True}},
    "xis": {"label": "+X-IS", "on": {"ds": True, "xis": True}},
    "all": {"label": "all", "on": {"ds": True, "xfd": True, "xat": True, "xod": True, "xis": True}},
    "kd_only": {"label": "KD-only", "on": {"xfd": True, "xat": True, "xod": True}, "det": False},
}


def row_overrides(row: str) -> list[str]:
    """`--set` overrides that switch the loss terms of one row (weights stay the config's)."""
    spec = ROWS[row]
    switches = {**_OFF, **spec["on"]}
    out = [f"loss.{term}.enabled={str(on).lower()}" for term, on in switches.items()]
    out.append(f"loss.det.enabled={str(spec.get('det', True)).lower()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="teacher cache of the training split")
    ap.add_argument("--dataroot", required=True)
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--split", default="mini_val", help="evaluation split")
    ap.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-threshold", type=float, default=0.05)
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config overrides for every row")
    args = ap.parse_args()

    from cache_schema import CacheReader
    from student.evaluate import evaluate_checkpoint
    from student.train import load_train_config, train

    out = Path(args.out)
    teachers = CacheReader(args.cache).meta.provenance
    random_init = [k for k in ("lidar_teacher", "image_teacher")
                   if (teachers.get(k) or {}).get("config", {}).get("random_init")]
    results = []
    for row in args.rows:
        cfg = load_train_config(args.config, [
            *args.overrides, *row_overrides(row), f"train.steps={args.steps}", f"train.seed={args.seed}",
            f"data.batch_size={args.batch_size}", "train.checkpoint_every=0"])
        run = out / row
        shutil.rmtree(run, ignore_errors=True)
        t = time.perf_counter()
        ckpt = train(args.cache, args.dataroot, cfg, run, progress=True)
        train_s = time.perf_counter() - t
        m = evaluate_checkpoint(ckpt, args.dataroot, args.version, args.split, run / "eval",
                                score_threshold=args.score_threshold, progress=False)
        results.append({"row": row, "label": ROWS[row]["label"], "mAP": m.mean_ap, "NDS": m.nd_score,
                        "train_s": train_s, "per_class_AP": m.label_aps})
        print(f"  {ROWS[row]['label']}: mAP {m.mean_ap:.4f} NDS {m.nd_score:.4f} ({train_s:.0f} s)", flush=True)
    (out / "ablation.json").write_text(json.dumps(results, indent=2))
    print(f"\nX3KD ablation: {args.config}, {args.steps} steps x batch {args.batch_size}, seed {args.seed}, "
          f"eval {args.version}/{args.split}, score threshold {args.score_threshold}, cache {args.cache}")
    if random_init:
        print(f"WARNING: the cache's {' and '.join(random_init)} were randomly initialised: the KD rows do not "
              "measure distillation")
    print("| losses | mAP | NDS | train s |")
    print("| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['label']} | {r['mAP']:.4f} | {r['NDS']:.4f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
