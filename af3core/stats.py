"""Statistics of a case's pass times (numpy), kept out of the run loop and the writers."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

TIME_COLUMNS = ("min_ms", "median_ms", "p95_ms", "max_ms", "mean_ms", "stdev_ms", "rel_stdev", "noisy",
                "median_noise")
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
        "median_noise": median_noise(times),
    }


#: The fewest passes whose median has a distribution-free 95% interval: with 6, min..max covers the
#: median with probability 1 - 2/64 = 0.97; with 5 no pair of passes reaches 0.95.
NOISE_MIN_PASSES = 6
NOISE_CONFIDENCE = 0.95


def median_interval(times_ms: Iterable) -> tuple[float, float] | None:
    """A 95% confidence interval of the median from order statistics: [x_(k), x_(n-k+1)], with k the
    largest rank such that P(Binomial(n, 1/2) < k) <= 2.5%. No assumption on the distribution (pass
    times are skewed: a few slow outliers), exact for any n; None below NOISE_MIN_PASSES."""
    times = np.sort(np.asarray(finite(times_ms), dtype=np.float64))
    n = times.size
    if n < NOISE_MIN_PASSES:
        return None
    from scipy.stats import binom

    k = max(1, int(binom.ppf((1 - NOISE_CONFIDENCE) / 2, n, 0.5)))
    return float(times[k - 1]), float(times[n - k])


def median_noise(times_ms: Iterable) -> float | None:
    """Half the width of the median's 95% interval relative to the median (0.01: the median is known
    to about +-1%): the figure --max-noise stops on. None below NOISE_MIN_PASSES."""
    interval = median_interval(times_ms)
    middle = median(times_ms) if interval else None
    if not interval or not middle:
        return None
    return (interval[1] - interval[0]) / 2 / middle


def median(values: Iterable) -> float | None:
    numbers = finite(values)
    return float(np.median(numbers)) if numbers else None
