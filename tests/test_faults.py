"""Every way a worker can fail becomes a failed row with the reason; rows already written stay; the
run goes on to the next case and exits 1 at the end."""
import csv
import json
import time

import pytest


def rows(out, plugin="testplugin"):
    return [json.loads(line) for line in (out / f"{plugin}.jsonl").read_text().splitlines()]


def summary(out):
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def bench(af3, out, *sets, passes=3, timeout=None, seq_len="16"):
    args = ["bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out), "--passes", str(passes),
            "--seq-len", seq_len, "--plain"]
    for s in sets:
        args += ["--set", s]
    if timeout:
        args += ["--timeout", str(timeout)]
    return af3.run(*args)


# n_ok: a pass that raises or returns NaN fails alone and the next pass still runs; an OOM or a user
# error would only repeat, so the case stops; a dead or garbled worker ends its case.
@pytest.mark.parametrize("fault, status, reason, n_ok", [
    ("segfault", "crashed", "signal SIGSEGV", 1),
    ("exit", "crashed", "exited with code 3", 1),
    ("raise", "failed", "RuntimeError: injected failure", 2),
    ("oom", "oom", "MemoryError", 1),
    ("bad_frame", "protocol", "bad frame", 1),
    ("big_frame", "protocol", "over the", 1),
    ("nonfinite", "failed", "NaN", 2),
    ("user_error", "user", "cannot run on this device", 1),
])
def test_fault_in_a_pass_keeps_earlier_rows(af3, tmp_path, fault, status, reason, n_ok):
    out = tmp_path / fault
    proc = bench(af3, out, f"fault={fault}", "fault_pass=1")
    assert proc.returncode == 1, proc.stderr
    written = rows(out)
    assert written[0]["ok"] is True and written[0]["pass_index"] == 0 and written[0]["elapsed_ms"] > 0
    failed = [r for r in written if not r["ok"]]
    assert len(failed) == 1 and reason in failed[0]["error"]
    [case] = summary(out)
    assert case["status"] == status and case["n_ok"] == str(n_ok) and reason in case["error"]


def test_segfault_reason_includes_the_log_tail(af3, tmp_path):
    out = tmp_path / "seg"
    bench(af3, out, "fault=segfault", "fault_pass=0")
    [case] = summary(out)
    assert "phase pass" in case["error"] and "Fatal Python error" in case["error"]


def test_failure_during_setup_still_leaves_a_row(af3, tmp_path):
    out = tmp_path / "setup"
    proc = bench(af3, out, "fault=raise", "fault_pass=-1")
    assert proc.returncode == 1
    [row] = rows(out)
    assert row["ok"] is False and row["pass_index"] is None and "injected failure" in row["error"]
    assert row["failed_phase"] == "setup"


def test_hang_past_the_timeout_is_killed(af3, tmp_path):
    out = tmp_path / "hang"
    t0 = time.monotonic()
    proc = bench(af3, out, "fault=hang", "fault_pass=1", timeout=4)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1
    [case] = summary(out)
    assert case["status"] == "timeout" and "timed out after 4 s" in case["error"]
    assert [r["ok"] for r in rows(out)] == [True, False]


def test_user_error_has_no_traceback(af3, tmp_path):
    out = tmp_path / "user"
    bench(af3, out, "fault=user_error", "fault_pass=-1")
    [case] = summary(out)
    assert case["status"] == "user" and case["error"] == "this setting cannot run on this device"
    assert "Traceback" not in case["error"]


def test_stdout_noise_does_not_disturb_the_channel(af3, tmp_path):
    out = tmp_path / "noise"
    proc = bench(af3, out, "fault=stdout_noise", "fault_pass=0")
    assert proc.returncode == 0, proc.stderr
    assert summary(out)[0]["status"] == "ok"
    log = next((out / "logs").iterdir()).read_text()
    assert "frameworks print to stdout" in log


def test_run_goes_on_after_a_failed_case(af3, tmp_path):
    out = tmp_path / "goes-on"
    proc = bench(af3, out, "oom_above=16", seq_len="8,32,16")
    assert proc.returncode == 1
    statuses = {int(r["seq_len"]): r["status"] for r in summary(out)}
    assert statuses == {8: "ok", 32: "oom", 16: "ok"}


def test_until_oom_sweep_stops_and_records_the_largest_fit(af3, tmp_path):
    out = tmp_path / "sweep"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out), "--passes", "1",
                   "--seq-len", "8::8", "--until-oom", "--set", "oom_above=24", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr  # the OOM that ends a sweep is its answer, not a failure
    assert [int(r["seq_len"]) for r in summary(out)] == [8, 16, 24, 32]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["largest_fit"][0]["largest_seq_len"] == 24
    assert "largest size that fits: 24" in proc.stdout


def test_a_worker_that_never_stops_talking_still_times_out(af3, tmp_path):
    out = tmp_path / "flood"
    t0 = time.monotonic()
    proc = bench(af3, out, passes=10_000_000, timeout=6)
    assert time.monotonic() - t0 < 90, proc.stdout[-2000:]
    assert proc.returncode == 1
    [case] = summary(out)
    assert case["status"] == "timeout" and int(case["n_ok"]) > 0, case  # stopped while streaming passes
