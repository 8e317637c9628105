"""How much of the lab's A/A spread is the size of its val set: the lab's trained students scored again on a
second, larger val set of scenes from another seed.

    x3kd-cache make-synthetic --preset lab --scenes 150 --seed 11 work/val2_data   # 30 val scenes, 300 samples
    OMP_NUM_THREADS=1 python -m bench.lab_eval_noise --runs lab/runs/pre800 --dataroot work/val2_data \
        --rows ds ds_aa --seeds 0 1 2

For each row and seed, `x3kd-student eval` of the run's final checkpoint on `--dataroot`'s val split (into
RUN/eval_<name of dataroot>/, reused when there), beside the lab's own val score (RUN/eval/). Printed:
per run both scores; the paired A/A difference (ds_aa - ds, same seed) on each val set with its spread;
and how well a run's score on one val set predicts it on the other (correlation over runs). If the A/A
spread shrinks on the bigger val set, the lab's noise is partly its val set and more val scenes is a cheap
lever (evaluation is seconds per run, training is minutes); if it does not, the noise is in where training
ends, and only more seeds, longer runs or averaged weights shrink it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def score(run: Path, dataroot: Path | None) -> dict | None:
    """The run's metrics on the lab's val (dataroot None) or on `dataroot`'s val, scoring it if needed."""
    if dataroot is None:
        metrics = run / "eval" / "metrics.json"
        return json.loads(metrics.read_text()) if metrics.is_file() else None
    out = run / f"eval_{dataroot.name}"
    metrics = out / "metrics.json"
    if not metrics.is_file():
        checkpoints = sorted((run / "checkpoints").glob("step_*.pt"))
        if not checkpoints:
            return None
        log = run / f"eval_{dataroot.name}.log"
        with open(log, "w") as stream:
            # --other-dataroot: scoring on scenes the run's provenance does not name is the point here
            done = subprocess.run([BIN / "x3kd-student", "eval", "--checkpoint", checkpoints[-1], "--dataroot",
                                   dataroot, "--other-dataroot", "--version", "v1.0-trainval", "--split", "val",
                                   "--out", out], stdout=stream, stderr=subprocess.STDOUT)
        if done.returncode:
            sys.exit(f"{log}: eval failed ({log.read_text().strip().splitlines()[-1]})")
    return json.loads(metrics.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="the lab's runs folder (RUNS/<row>_seed<N>/)")
    parser.add_argument("--dataroot", type=Path, required=True, help="a second synthetic dataroot (its val split)")
    parser.add_argument("--rows", nargs="+", default=["ds", "ds_aa"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    from bench.paired import paired

    table: dict[str, dict[int, tuple[float, float]]] = {}
    print("| run | mAP, lab val | mAP, second val |\n| --- | ---: | ---: |")
    for row in args.rows:
        for seed in args.seeds:
            run = args.runs / f"{row}_seed{seed}"
            own, other = score(run, None), score(run, args.dataroot)
            if own is None or other is None:
                print(f"| {run.name} | (not trained) | |")
                continue
            table.setdefault(row, {})[seed] = (own["mAP"], other["mAP"])
            print(f"| {run.name} | {own['mAP']:.4f} | {other['mAP']:.4f} |")
    if {"ds", "ds_aa"} <= table.keys():
        for i, name in enumerate(("lab val", "second val")):
            aa = paired({s: v[i] for s, v in table["ds_aa"].items()}, {s: v[i] for s, v in table["ds"].items()})
            print(f"\nA/A (ds_aa - ds, same seed) on the {name}: {aa.format()}; per seed "
                  + ", ".join(f"{d:+.3f}" for d in aa.differences))
    pairs = [v for row in table.values() for v in row.values()]
    if len(pairs) > 2:
        print(f"\ncorrelation of a run's mAP on the two val sets over {len(pairs)} runs: "
              f"{statistics.correlation([a for a, _ in pairs], [b for _, b in pairs]):.3f}")


if __name__ == "__main__":
    main()
