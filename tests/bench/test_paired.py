"""The lab's paired statistics on numbers worked by hand."""
import math

import pytest

from bench.paired import T_CRITICAL_5, Paired, detectable_effect, paired, seeds_for_effect, t_critical


def test_paired_difference_mean_std_and_t_on_known_numbers():
    base = {0: 0.20, 1: 0.25, 2: 0.22, 3: 0.30, 9: 0.5}
    row = {0: 0.23, 1: 0.27, 2: 0.26, 3: 0.31, 7: 0.1}
    p = paired(row, base)
    assert p.seeds == (0, 1, 2, 3)  # only the seeds both rows ran
    assert p.differences == pytest.approx((0.03, 0.02, 0.04, 0.01))
    assert p.mean == pytest.approx(0.025)
    assert p.std == pytest.approx(math.sqrt(((0.005 ** 2) * 2 + 0.015 ** 2 * 2) / 3))  # 0.012910
    assert p.t == pytest.approx(0.025 / (p.std / 2))  # 3.873
    assert p.beyond_noise  # t 3.87 >= 2.353 (3 degrees of freedom)
    assert "t = +3.9" in p.format()


def test_a_row_within_the_noise_and_the_edge_cases():
    p = paired({0: 0.21, 1: 0.19, 2: 0.22}, {0: 0.20, 1: 0.20, 2: 0.20})
    assert p.mean == pytest.approx(0.00666, rel=1e-2) and not p.beyond_noise
    assert math.isnan(paired({0: 1.0}, {0: 0.5}).t) and paired({0: 1.0}, {0: 0.5}).format() == "–"
    assert Paired((0, 1), (0.1, 0.1)).t == math.inf


def test_detectable_effect_is_what_five_seeds_show_at_the_floor():
    # a floor of 0.03 at 5 seeds: 2.132 * 0.03 / sqrt(5) = 0.0286: a +0.03 effect shows
    assert detectable_effect(0.03, 5) == pytest.approx(0.0286, abs=1e-4)


def test_t_table_is_students_and_lookups_between_entries_stay_conservative():
    stats = pytest.importorskip("scipy.stats")
    for df, value in T_CRITICAL_5.items():
        assert value == pytest.approx(stats.t.ppf(0.95, df), abs=1e-3), df
    assert t_critical(35) == T_CRITICAL_5[30] > stats.t.ppf(0.95, 35)
    assert t_critical(1000) == 1.645
    with pytest.raises(ValueError):
        t_critical(0)


def test_seeds_for_an_effect_on_worked_numbers():
    # floor 0.03: 4 seeds show 2.353 * 0.03 / 2 = 0.0353 > 0.03, 5 seeds 0.0286: five are needed
    assert seeds_for_effect(0.03, 0.03) == 5
    # floor 0.08: 21 seeds show 1.725 * 0.08 / sqrt(21) = 0.0301, 22 seeds 1.721 * 0.08 / sqrt(22) = 0.0294
    assert seeds_for_effect(0.08, 0.03) == 22
    assert seeds_for_effect(1.0, 0.001, most=50) == 51
