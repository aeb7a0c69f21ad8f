"""Timing helpers shared by bench.py and anchors_venv.py (no MLX import: the anchors run another mlx)."""

from __future__ import annotations

import statistics
import time

import numpy as np


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up (compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_latencies(step, n: int) -> tuple[float, float, float]:
    """``step(i)`` for i in range(n) after 3 warm-up calls -> (mean ms, p99 ms, steps per second)."""
    for i in range(3):
        step(i)
    lat = []
    for i in range(n):
        start = time.perf_counter()
        step(i)
        lat.append(time.perf_counter() - start)
    ms = np.array(lat) * 1000
    return float(ms.mean()), float(np.percentile(ms, 99)), float(1000 / ms.mean())
