"""Every row of the lab's ablation is a config the student accepts: a typo in a row's overrides, or a
GT-reading variant in a KD-only row, would otherwise surface only after the lab's prepare step."""
from __future__ import annotations

import pytest

from bench.synthetic_ablation import AA_OFFSET, CONFIG, ROWS
from student.train_config import load_train_config


@pytest.mark.parametrize("row", sorted(ROWS))
def test_row_builds_a_lab_config(row: str) -> None:
    _, overrides = ROWS[row]
    cfg = load_train_config(CONFIG, [o.format(aa_seed=AA_OFFSET) for o in overrides])
    det_on = cfg.student.losses.det.enabled and cfg.student.losses.det.weight > 0
    assert det_on == (not row.startswith("kd_only"))


def test_variant_rows_differ_from_their_paper_row_only_in_the_named_switches() -> None:
    ls = load_train_config(CONFIG, ROWS["xat_ls_alone"][1]).student.losses.xat
    ns = load_train_config(CONFIG, ROWS["xat_ns_alone"][1]).student.losses.xat
    assert (ls.objective, ns.objective) == ("least_squares", "nonsaturating")
    assert {**vars(ls), "objective": None} == {**vars(ns), "objective": None}
    best = load_train_config(CONFIG, ROWS["kd_only_best"][1]).student.losses
    paper = load_train_config(CONFIG, ROWS["kd_only"][1]).student.losses
    assert best.xfd.attention and not paper.xfd.attention
    assert best.xfd.region == paper.xfd.region == "heatmap" and best.xod.region == "all"
