"""Paired differences between two rows of the lab, seed by seed, and what is inside the noise.

A seed fixes a student's initial weights and its data order in every row, so the difference between two
rows of the same seed is free of the spread those cause; its mean over seeds, the spread of it, and the
paired t statistic (mean / (std / sqrt(n))) say whether a term moves the result. The A/A floor is the
same statistic for two rows that differ in nothing that carries information (det + DS against det + DS
with another data-order seed at the same initial weights): the spread of "no effect".
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# one-sided 5% critical values of Student's t by degrees of freedom (n - 1 seeds); a count between two
# entries takes the lower one's (the larger value), beyond the last the normal's 1.645
T_CRITICAL_5 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833,
                10: 1.812, 11: 1.796, 12: 1.782, 13: 1.771, 14: 1.761, 15: 1.753, 16: 1.746, 17: 1.740, 18: 1.734,
                19: 1.729, 20: 1.725, 21: 1.721, 22: 1.717, 23: 1.714, 24: 1.711, 25: 1.708, 26: 1.706, 27: 1.703,
                28: 1.701, 29: 1.699, 30: 1.697, 40: 1.684, 60: 1.671, 120: 1.658}


def t_critical(degrees_of_freedom: int) -> float:
    """Student's one-sided 5% value for this many degrees of freedom (at least one)."""
    tabulated = [d for d in T_CRITICAL_5 if d <= degrees_of_freedom]
    if not tabulated:
        raise ValueError(f"degrees of freedom must be at least 1, got {degrees_of_freedom}")
    return T_CRITICAL_5[max(tabulated)] if degrees_of_freedom <= max(T_CRITICAL_5) else 1.645


@dataclass(frozen=True)
class Paired:
    """Row minus base over the seeds both have."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.mean(self.differences) if self.differences else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.differences) if self.n > 1 else float("nan")

    @property
    def t(self) -> float:
        """The paired t statistic; inf for a spread of exactly zero, nan with fewer than two seeds."""
        if self.n < 2:
            return float("nan")
        if self.std == 0:
            return math.copysign(math.inf, self.mean) if self.mean else 0.0
        return self.mean / (self.std / math.sqrt(self.n))

    @property
    def beyond_noise(self) -> bool:
        """The paired t reaches the one-sided 5% critical value of its degrees of freedom."""
        return self.n >= 2 and abs(self.t) >= t_critical(self.n - 1)

    def format(self) -> str:
        if self.n < 2:
            return "–"
        return f"{self.mean:+.4f} ± {self.std:.4f} (t = {self.t:+.1f}, n = {self.n})"


def paired(row: dict[int, float], base: dict[int, float]) -> Paired:
    """Seed by seed, row - base over the seeds both have."""
    seeds = tuple(sorted(set(row) & set(base)))
    return Paired(seeds, tuple(row[s] - base[s] for s in seeds))


def detectable_effect(floor_std: float, n: int) -> float:
    """The smallest mean difference that n seeds show at the one-sided 5% level when the paired
    differences spread like the A/A floor: t_crit * std / sqrt(n)."""
    return t_critical(n - 1) * floor_std / math.sqrt(n)


def seeds_for_effect(floor_std: float, effect: float, most: int = 10_000) -> int:
    """The fewest seeds (at least two) that show `effect` at the one-sided 5% level when the paired
    differences spread like the A/A floor; `most` + 1 when even `most` seeds do not."""
    return next((n for n in range(2, most + 1) if detectable_effect(floor_std, n) <= effect), most + 1)
