"""Data-wait fraction of the student's training step with 0, 1 and 2 DataLoader workers.

The fraction of each step's wall time spent waiting for the next batch (`train_summary.json` of a
short `student.train.train` run, first step excluded), the step time and throughput; tiny config, all
losses on (every cache group is read), batch 1. Without --cache/--dataroot it makes a synthetic
dataroot (`--preset`) and exports a cache with the small test teachers into --work first.

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.loader --steps 20
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.loader --cache C --dataroot D --workers 0 1 2 --steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_cache(work: Path, preset: str) -> tuple[str, str]:
    """A synthetic dataroot and a cache of its train split made by the small random-init test teachers."""
    from dataset_access.synthetic import PRESETS, write_dataset
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    dataroot = work / f"nuscenes_{preset}"
    cache = work / f"cache_{preset}.zarr"
    if not dataroot.exists():
        write_dataset(dataroot, PRESETS[preset])
    if not cache.exists():
        export(small_export_options(dataroot, cache), progress=False)
    return str(cache), str(dataroot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache")
    ap.add_argument("--dataroot")
    ap.add_argument("--preset", default="test", help="synthetic preset when no --cache is given (test, demo)")
    ap.add_argument("--work", default=None, help="where to make the synthetic data and runs (default: a temp dir)")
    ap.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    import torch

    from student.train_config import load_train_config

    from student.train import train

    work = Path(args.work or tempfile.mkdtemp(prefix="x3kd_bench_loader_"))
    work.mkdir(parents=True, exist_ok=True)
    cache, dataroot = (args.cache, args.dataroot) if args.cache else make_cache(work, args.preset)
    rows = []
    for n in args.workers:
        cfg = load_train_config(args.config, [*args.overrides, f"train.steps={args.steps}", f"data.num_workers={n}",
                                              "train.checkpoint_every=0"])
        run = work / f"run_workers{n}"
        shutil.rmtree(run, ignore_errors=True)
        train(cache, dataroot, cfg, run, progress=False)
        rows.append(json.loads((run / "train_summary.json").read_text()))
    print(f"tiny config, batch {cfg.data.batch_size}, {args.steps} steps (first excluded), torch threads "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cache {cache}")
    print("| DataLoader workers | data-wait fraction | step s | samples/s |")
    print("| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['num_workers']} | {r['data_wait_fraction']:.3f} | {r['seconds_per_step']:.3f} | "
              f"{r['samples_per_s']:.2f} |")


if __name__ == "__main__":
    main()
