"""Helpers for benchmarks: the demo model, timing by repetition (median of repeats)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def demo_config(*overrides: str):
    from unlearn.config import load_config

    return load_config(REPO / "configs" / "demo.yaml", ["workdir=/tmp/unlearn-bench", *overrides])


def timeit(fn: Callable[[], object], repeat: int = 5, number: int = 5, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def interleaved(
    fns: dict[str, Callable[[], object]], repeat: int = 7, number: int = 3
) -> dict[str, float]:
    """Median seconds per call of several functions, measured alternately (fair on busy CPUs)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[k].append((time.perf_counter() - t0) / number)
    return {k: statistics.median(v) for k, v in times.items()}
