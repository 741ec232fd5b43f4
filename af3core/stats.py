"""Statistics of a case's pass times (numpy), kept out of the run loop and the writers."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

TIME_COLUMNS = ("min_ms", "median_ms", "p95_ms", "mean_ms", "stdev_ms")


def finite(values: Iterable) -> list[float]:
    """The finite numbers among ``values`` (booleans and anything else left out)."""
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def time_summary(times_ms: Iterable) -> dict[str, float | None]:
    """min, median, 95th percentile (linear interpolation), mean and sample standard deviation."""
    times = np.asarray(finite(times_ms), dtype=np.float64)
    if times.size == 0:
        return dict.fromkeys(TIME_COLUMNS)
    return {
        "min_ms": float(times.min()),
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(times.mean()),
        "stdev_ms": float(times.std(ddof=1)) if times.size > 1 else 0.0,
    }


def median(values: Iterable) -> float | None:
    numbers = finite(values)
    return float(np.median(numbers)) if numbers else None
