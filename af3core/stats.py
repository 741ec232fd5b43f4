"""Statistics of a case's pass times (numpy), kept out of the run loop and the writers."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

TIME_COLUMNS = ("min_ms", "median_ms", "p95_ms", "max_ms", "mean_ms", "stdev_ms", "rel_stdev", "noisy")
#: A case whose passes' relative standard deviation (stdev / mean) exceeds this, over at least
#: NOISY_MIN_PASSES passes, is marked noisy: its median is less trustworthy than its neighbours'.
NOISY_REL_STDEV = 0.05
NOISY_MIN_PASSES = 3


def finite(values: Iterable) -> list[float]:
    """The finite numbers among ``values`` (booleans and anything else left out)."""
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def time_summary(times_ms: Iterable) -> dict[str, float | None]:
    """min, median, 95th percentile (linear interpolation), max, mean, sample standard deviation,
    the relative standard deviation and whether that marks the case noisy."""
    times = np.asarray(finite(times_ms), dtype=np.float64)
    if times.size == 0:
        return dict.fromkeys(TIME_COLUMNS)
    stdev = float(times.std(ddof=1)) if times.size > 1 else 0.0
    mean = float(times.mean())
    rel = stdev / mean if mean > 0 else 0.0
    return {
        "min_ms": float(times.min()),
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "max_ms": float(times.max()),
        "mean_ms": mean,
        "stdev_ms": stdev,
        "rel_stdev": rel,
        "noisy": bool(times.size >= NOISY_MIN_PASSES and rel > NOISY_REL_STDEV),
    }


def median(values: Iterable) -> float | None:
    numbers = finite(values)
    return float(np.median(numbers)) if numbers else None
