"""The lab's paired statistics on numbers worked by hand."""
import math

import pytest

from bench.paired import Paired, detectable_effect, paired


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
