"""Progress of long loops: a tqdm bar on a terminal, plain lines in a log file or a batch job.

A `\\r`-redrawn bar written into a SLURM log or a pipe is one unreadable line per redraw. Where stderr
is not a terminal (or `quiet` is asked for), `progress` prints a line at most every `every` seconds and
at the end instead: `train 120/300 (40%) 2.3 step/s, eta 78 s, loss=27.5 det=10.1`.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable


class LineProgress:
    """The part of tqdm's interface the loops here use, printing whole lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, every: float = 30.0, stream: Any = None, **_: Any) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.n, self.every = desc, unit, initial, every
        self.stream = stream or sys.stderr
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._start_n = initial

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._print(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.n != self._start_n:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        self._last = now
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        eta = f", eta {(self.total - self.n) / rate:.0f} s" if self.total and rate > 0 else ""
        print(f"{self.desc} {done} {rate:.2f} {self.unit}/s{eta}{', ' + self.postfix if self.postfix else ''}",
              file=self.stream, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs: Any):
    """tqdm(iterable, **kwargs) on a terminal; `LineProgress` otherwise or when `quiet`."""
    if quiet or not sys.stderr.isatty():
        return LineProgress(iterable, **kwargs)
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)
