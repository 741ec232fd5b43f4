"""When a case's timed passes stop: after a fixed count, or adaptively (--min-time, --max-noise).

The rule, checked after every timed pass (the worker's loop):
1. fewer than ``case.passes`` passes: go on;
2. the timed passes' wall time under ``case.min_time_s``: go on;
3. no ``max_noise``: stop ("passes", or "min_time" when rule 2 was what kept it going);
4. the median's noise (:func:`af3core.stats.median_noise`) at most ``max_noise``: stop ("noise");
5. the timed passes' wall time at least ``max_time_s``: stop ("max_time": the bound was not reached);
6. otherwise go on.
A failed pass that would fail again (out of memory, a user error) stops the case ("failure"); so
does any failed pass of an adaptive case (the case has failed: more passes cannot change that).
"""
from __future__ import annotations

from af3core.runner import Case

#: --max-time's default when --max-noise is given: the passes' budget for reaching the bound.
DEFAULT_MAX_TIME_S = 60.0


def adaptive(case: Case) -> bool:
    return bool(case.min_time_s) or case.max_noise is not None


def next_step(case: Case, done: int, times_ms: list[float], spent_s: float) -> tuple[bool, str]:
    """After ``done`` timed passes (``times_ms`` of the successful ones, ``spent_s`` their wall time
    in all): (go on?, the reason it stops now)."""
    if done < case.passes or spent_s < case.min_time_s:
        return True, ""
    if case.max_noise is None:
        return False, "min_time" if case.min_time_s else "passes"
    from af3core import stats  # numpy (and scipy) only where passes are judged, not at `af3` start-up

    noise = stats.median_noise(times_ms)
    if noise is not None and noise <= case.max_noise:
        return False, "noise"
    if case.max_time_s is not None and spent_s >= case.max_time_s:
        return False, "max_time"
    return True, ""


def describe(case: Case) -> str:
    """The pass rule in words: "passes=3", "passes>=3 min_time=10s max_noise=1% max_time=60s"."""
    if not adaptive(case):
        return f"passes={case.passes}"
    parts = [f"passes>={case.passes}"]
    if case.min_time_s:
        parts.append(f"min_time={case.min_time_s:g}s")
    if case.max_noise is not None:
        parts += [f"max_noise={100 * case.max_noise:g}%", f"max_time={case.max_time_s:g}s"]
    return " ".join(parts)
