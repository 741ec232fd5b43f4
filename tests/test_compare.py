"""``af3 compare`` on real runs of the test plugin (a pass sleeps work_ms): a slower run is found
slower (exit 1), a run against itself shows no significant change (exit 0), --by compares settings
within one run, and bad input is a usage error (exit 2)."""
import json

import pytest

from af3core.compare import FASTER, SAME, SLOWER, Pair, judge, parse_threshold
from af3core.errors import UsageError


def _bench(af3, out, *sets, passes="6"):
    args = ["bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", passes,
            "--out", out, "--plain", "--no-plot"]
    for item in sets:
        args += ["--set", item] if "," not in item else ["--sweep", item]
    proc = af3.run(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_a_slower_run_is_slower_and_exits_1(af3):
    _bench(af3, "both", "work_ms=20,60")  # one run, both settings (--sweep)
    proc = af3.run("compare", "both", "--by", "work_ms=20.0", "--markdown")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| testplugin")]
    assert "work_ms=60.0" in row and row.rstrip(" |").endswith(SLOWER)
    ratio = float(row.split("|")[6])
    assert 2.0 < ratio < 3.5  # (60 + overhead) / (20 + overhead)
    # the other way round it is faster, and exit 0
    proc = af3.run("compare", "both", "--by", "work_ms=60.0", "--markdown")
    assert proc.returncode == 0 and FASTER in proc.stdout


def test_two_runs_of_one_case_compare_case_by_case(af3):
    _bench(af3, "a", "work_ms=30")
    _bench(af3, "b", "work_ms=30")
    proc = af3.run("compare", "a", "b", "--threshold", "20%", "--csv", "table.csv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = (af3.cwd / "table.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].endswith(SAME)


@pytest.mark.parametrize("args, message", [
    (["compare", "nowhere", "a"], "not a folder"),
    (["compare", "a"], "give two results folders"),
    (["compare", "a", "a", "--by", "work_ms"], "ONE run"),
    (["compare", "a", "--by", "nokey"], "no case of"),
    (["compare", "a", "a", "--threshold", "lots"], "expected a percentage"),
])
def test_bad_input_is_a_usage_error(af3, args, message):
    _bench(af3, "a", passes="2")
    proc = af3.run(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_different_sets_of_cases_share_nothing(af3):
    _bench(af3, "a", "work_ms=1", passes="2")
    _bench(af3, "b", "work_ms=2", passes="2")
    proc = af3.run("compare", "a", "b")
    assert proc.returncode == 2 and "no case in common" in proc.stderr


def test_judge_needs_an_interval_beyond_the_threshold():
    slow = judge(Pair("x", "A", "B", [10.0, 10.1, 9.9, 10.0], [10.4, 10.5, 10.3, 10.4]), 0.05)
    assert slow.verdict == SAME and slow.low > 1  # significant but under 5%
    assert judge(Pair("x", "A", "B", [10.0, 10.1, 9.9, 10.0], [12.0, 12.1, 11.9, 12.0]), 0.05).verdict == SLOWER
    noisy = judge(Pair("x", "A", "B", [10.0, 30.0, 5.0, 20.0], [12.0, 31.0, 6.0, 25.0]), 0.05)
    assert noisy.verdict == SAME and noisy.low < 1 < noisy.high
    assert judge(Pair("x", "A", "B", [10.0], [20.0]), 0.05).verdict == "too few passes"
    assert parse_threshold("5%") == pytest.approx(0.05) and parse_threshold("0.1") == pytest.approx(0.1)
    with pytest.raises(UsageError):
        parse_threshold("150%")
    json.dumps(slow.__dict__)  # plain data
