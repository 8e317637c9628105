"""The lab's report on runs whose numbers are worked by hand: the A/A floor, what it costs, the paired rows."""
from __future__ import annotations

import subprocess
import sys

from bench.synthetic_ablation import REPO, ROWS, result_table


def run(row: str, seed: int, mAP: float, train_s: float = 600.0) -> dict:
    return {"row": row, "seed": seed, "mAP": mAP, "NDS": mAP, "s_per_step": 0.75, "train_s": train_s}


def test_the_floor_line_says_how_many_seeds_and_core_hours_a_small_effect_needs() -> None:
    # A/A differences +0.08, -0.08, 0: std 0.08; at that spread 22 seeds show 0.03 (tests/bench/test_paired.py);
    # 10 min per det + DS run -> 22 * 10 / 60 = 3.7 core-hours per row
    results = [run("ds", 0, 0.20), run("ds", 1, 0.30), run("ds", 2, 0.25),
               run("ds_aa", 0, 0.28), run("ds_aa", 1, 0.22), run("ds_aa", 2, 0.25),
               run("xis3", 0, 0.30), run("xis3", 1, 0.41, train_s=0.0), run("xis3", 2, 0.34)]
    rows = {r: ROWS[r] for r in ("ds", "ds_aa", "xis3")}
    lines = result_table(rows, results)
    assert "paired Δ mAP +0.0000 ± 0.0800 (t = +0.0, n = 3)" in lines[0]
    assert "a 0.03 effect needs 22 seeds, at 10.0 min of training per det + DS run here (one thread) ~3.7 core-hours" \
        in lines[0]
    xis3 = next(line for line in lines if line.startswith(f"| {ROWS['xis3'][0]} |"))
    assert "+0.1000 ± 0.0100 (t = +17.3, n = 3) | yes" in xis3


def test_without_timings_the_floor_line_gives_the_seeds_only() -> None:
    results = [run("ds", s, 0.2 + 0.01 * s, train_s=0.0) for s in range(3)] + \
              [run("ds_aa", s, 0.2 + 0.02 * s, train_s=0.0) for s in range(3)]
    line = result_table({r: ROWS[r] for r in ("ds", "ds_aa")}, results)[0]
    assert "seeds\n" in line and "core-hours" not in line


def test_a_row_run_without_its_base_is_reported_unpaired() -> None:
    lines = result_table({"det": ROWS["det"]}, [run("det", 0, 0.11), run("det", 1, 0.12)])
    det = next(line for line in lines if line.startswith(f"| {ROWS['det'][0]} |"))
    assert det.split(" | ")[4:6] == ["–", "–"]


def test_a_base_that_is_not_among_the_rows_is_refused_before_anything_runs(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.synthetic_ablation", "--work", tmp_path / "lab", "--rows", "det",
                           "--base", "xis3"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "--base xis3: not one of the rows run (det)" in done.stderr
    assert not (tmp_path / "lab").exists()
