"""bench/student_step.py's attribution of the KD step cost keeps reaching the code it times."""

from bench.student_step import XIS_STAGES, breakdown_summary, xis_stage_costs


def test_xis_stage_timers_reach_every_stage_and_leave_the_module_unpatched():
    import student.losses.xis as xis_module

    before = xis_module._mask_targets
    costs = xis_stage_costs("tiny", repeats=1)
    assert set(XIS_STAGES) <= set(costs)  # a renamed stage would go untimed (KeyError) or vanish here
    assert all(costs[stage] > 0 for stage in XIS_STAGES)
    assert costs["backward (all stages)"] > 0
    assert xis_module._mask_targets is before


def test_breakdown_pairs_the_cases_of_each_round():
    # round 2 ran under load for every case: paired ratios ignore it, a ratio of minimums would not
    times = {"no_kd": [1.0, 3.0, 1.1], "all_kd": [1.1, 3.3, 1.21], "without_xis": [1.0, 3.1, 1.1]}
    summary = breakdown_summary(times)
    assert abs(summary["ratio"]["all_kd"] - 1.1) < 1e-9
    assert abs(summary["cost"]["xis"] - 0.11) < 1e-9
    assert summary["step_min"]["no_kd"] == 1.0
