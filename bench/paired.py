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

# one-sided 5% critical values of Student's t by degrees of freedom (n - 1 seeds)
T_CRITICAL_5 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833}


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
        return self.n >= 2 and abs(self.t) >= T_CRITICAL_5.get(self.n - 1, 1.8)

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
    return T_CRITICAL_5.get(n - 1, 1.8) * floor_std / math.sqrt(n)
