"""Adaptive pass counts: --min-time, --max-noise and --max-time (af3core.stopping), and the stopped_by
column that says which rule ended a case."""
import csv
import json

import pytest

from af3core import protocol, stats
from af3core.runner import Case
from af3core.stopping import next_step


def _summary(af3, out):
    with open(af3.cwd / out / "summary.csv") as f:
        return next(csv.DictReader(f))


def _case(**kw):
    return Case(plugin="p", mode="m", seq_len=8, device="cpu", **kw)


def test_the_rules_in_order():
    steady = [10.0] * 6
    assert next_step(_case(passes=3), 2, steady[:2], 0.02) == (True, "")
    assert next_step(_case(passes=3), 3, steady[:3], 0.03) == (False, "passes")
    assert next_step(_case(passes=3, min_time_s=1.0), 3, steady[:3], 0.5) == (True, "")
    assert next_step(_case(passes=3, min_time_s=1.0), 100, steady, 1.0) == (False, "min_time")
    noisy = _case(passes=3, max_noise=0.01, max_time_s=5.0)
    assert next_step(noisy, 5, steady[:5], 0.05) == (True, "")  # below 6 passes the noise is unknown
    assert next_step(noisy, 6, steady, 0.06) == (False, "noise")
    spread = [5.0, 15.0, 5.0, 15.0, 5.0, 15.0]
    assert next_step(noisy, 6, spread, 1.0) == (True, "")
    assert next_step(noisy, 6, spread, 5.0) == (False, "max_time")


def test_the_median_interval_is_distribution_free_and_covers_95_percent():
    import numpy as np

    assert stats.median_interval([1.0] * 5) is None
    assert stats.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (1.0, 6.0)  # n = 6: min..max (97%)
    rng = np.random.default_rng(0)
    hits = sum(lo <= 1.0 <= hi for lo, hi in (stats.median_interval(rng.lognormal(0, 1, 40)) for _ in range(2000)))
    assert 0.94 <= hits / 2000 <= 0.99
    assert stats.median_noise([10.0] * 8) == 0.0


def test_a_steady_case_stops_on_noise(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "2",
                   "--max-noise", "5", "--set", "work_ms=20", "--out", "steady", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = _summary(af3, "steady")
    assert row["stopped_by"] == "noise" and int(row["n_ok"]) >= stats.NOISE_MIN_PASSES
    assert float(row["median_noise"]) <= 0.05
    assert "stopped by noise" in proc.stdout and "/>=2" in proc.stdout


def test_an_unreachable_bound_stops_at_max_time(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--max-noise", "0.01",
                   "--max-time", "0.6", "--set", "work_ms=5", "--set", "jitter_ms=30", "--out", "jittery",
                   "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = _summary(af3, "jittery")
    assert row["stopped_by"] == "max_time" and float(row["median_noise"]) > 0.01
    walls = [json.loads(line)["wall_ms"] for line in (af3.cwd / "jittery" / "testplugin.jsonl").open()]
    assert len(walls) == int(row["n_ok"]) and sum(walls[:-1]) < 600 <= sum(walls)  # stopped at the first pass past 0.6 s


def test_min_time_runs_passes_until_the_time_is_spent(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "2",
                   "--min-time", "0.5", "--set", "work_ms=50", "--out", "timed", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = _summary(af3, "timed")
    assert row["stopped_by"] == "min_time" and 10 <= int(row["n_ok"]) <= 11


def test_a_fixed_count_says_so(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "3",
                   "--out", "fixed", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = _summary(af3, "fixed")
    assert row["stopped_by"] == "passes" and row["n_ok"] == "3" and row["median_noise"] == ""


@pytest.mark.parametrize("args, message", [
    (["--max-time", "5"], "--max-time bounds --max-noise"),
    (["--max-noise", "0"], "between 0 and 100"),
    (["--max-noise", "lots"], "expected a percentage"),
    (["--min-time", "20", "--max-noise", "1", "--max-time", "10"], "--min-time 20 is more than --max-time 10"),
    (["--max-noise", "1", "--max-time", "100", "--timeout", "50"], "raise --timeout"),
])
def test_bad_stopping_options_are_usage_errors(af3, args, message):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--dry-run", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_stop_reason_is_a_protocol_error():
    assert protocol.check({"type": "stopped", "stopped_by": "noise"})
    with pytest.raises(protocol.ProtocolError, match="unknown reason"):
        protocol.check({"type": "stopped", "stopped_by": "boredom"})
