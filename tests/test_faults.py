"""Every way a worker can fail becomes a failed row with the reason; rows already written stay; the
run goes on to the next case and exits 1 at the end. The host trusts nothing a worker sends."""
import csv
import json
import time

import pytest


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def rows(out, plugin="testplugin"):
    """The JSONL rows, parsed as strict JSON (NaN or Infinity would fail here)."""
    return [json.loads(line, parse_constant=_no_constants) for line in (out / f"{plugin}.jsonl").read_text().splitlines()]


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
    ("cpu_oom", "oom", "can't allocate memory", 1),
    ("nan_time", "failed", "not a finite non-negative time", 2),
    ("bad_type", "protocol", "'elapsed_ms' must be a number", 1),
    ("list_info", "protocol", "'info' must be a map", 1),
    ("unknown_message", "protocol", "unknown message type 'surprise'", 1),
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


def test_until_oom_without_an_oom_reports_a_lower_bound_not_a_limit(af3, tmp_path):
    # A search that runs out of sizes (or is stopped) before any size runs out of memory has not
    # found the limit: it must not print "fits" as if it had.
    out = tmp_path / "no-oom"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out), "--passes", "1",
                   "--seq-len", "8:16:8", "--until-oom", "--set", "oom_above=64", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    assert "largest size that fits" not in proc.stdout
    assert "largest size that ran: 16, a lower bound (no size ran out of memory)" in proc.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["largest_fit"] == [{"group": meta["largest_fit"][0]["group"], "largest_seq_len": 16, "no_oom": True}]


def test_a_worker_that_never_stops_talking_still_times_out(af3, tmp_path):
    out = tmp_path / "flood"
    t0 = time.monotonic()
    proc = bench(af3, out, passes=10_000_000, timeout=6)
    assert time.monotonic() - t0 < 90, proc.stdout[-2000:]
    assert proc.returncode == 1
    [case] = summary(out)
    assert case["status"] == "timeout" and int(case["n_ok"]) > 0, case  # stopped while streaming passes


def test_a_well_formed_frame_with_a_nan_time_fails_its_pass_and_the_files_stay_strict(af3, tmp_path):
    out = tmp_path / "nan"
    proc = bench(af3, out, "fault=nan_frame", "fault_pass=1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    written = rows(out)  # strict JSON: no NaN in the file
    bad = [r for r in written if not r["ok"]]
    assert len(bad) == 1 and bad[0]["elapsed_ms"] is None and "not a finite" in bad[0]["error"]
    [case] = summary(out)
    assert case["status"] == "failed" and case["n_ok"] == "3"


def test_a_bad_frame_kills_the_worker_and_the_run_goes_on(af3, tmp_path, gone):
    out = tmp_path / "typed"
    proc = bench(af3, out, "fault=bad_type", "fault_pass=0", seq_len="8,16")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    statuses = [c["status"] for c in summary(out)]
    assert statuses == ["protocol", "protocol"]
    assert all(gone(r["worker_pid"]) for r in rows(out) if r["worker_pid"])


def test_a_worker_that_closes_its_channel_and_runs_on(af3, tmp_path):
    out = tmp_path / "closed"
    t0 = time.monotonic()
    proc = bench(af3, out, "fault=close_channel", "fault_pass=1")
    assert proc.returncode == 1 and time.monotonic() - t0 < 60
    [case] = summary(out)
    assert case["status"] == "protocol" and "closed its result channel in phase pass" in case["error"]
    assert "SIGTERM" not in case["error"] and "SIGKILL" not in case["error"]


def test_a_helper_holding_the_pipes_neither_delays_the_case_nor_outlives_it(af3, tmp_path, gone):
    out = tmp_path / "helper"
    t0 = time.monotonic()
    proc = bench(af3, out, "helper=true", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60  # not the 600 s timeout
    [case] = summary(out)
    assert case["status"] == "ok"
    helper = rows(out)[0]["info"]["helper_pid"]
    assert gone(helper), "the worker's helper outlived its case"


def test_a_worker_that_cannot_exit_after_done_is_killed_and_keeps_its_results(af3, tmp_path):
    out = tmp_path / "linger"
    t0 = time.monotonic()
    proc = bench(af3, out, "linger=true", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60
    [case] = summary(out)
    assert case["status"] == "ok" and case["n_ok"] == "3" and "after it sent done: killed" in case["exit_note"]


def test_a_failed_case_keeps_its_traceback_in_the_log_and_the_row(af3, tmp_path):
    out = tmp_path / "tb"
    bench(af3, out, "fault=raise", "fault_pass=-1")
    [row] = rows(out)
    assert "Traceback" in row["traceback"] and "RuntimeError: injected failure" in row["traceback"]
    log = next((out / "logs").iterdir()).read_text()
    assert "Traceback" in log and "injected failure" in log


def test_a_flooded_log_is_capped_with_a_note(af3, tmp_path):
    out = tmp_path / "flood-log"
    cap = 1 << 20
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out), "--passes", "1",
                   "--set", "fault=log_flood", "--set", "fault_pass=0", "--set", "flood_mib=6", "--plain",
                   AF3_LOG_MAX_BYTES=str(cap))
    assert proc.returncode == 0, proc.stderr
    [log] = (out / "logs").iterdir()
    assert cap < log.stat().st_size < cap + 512 * 1024
    assert "log capped" in log.read_text()
    [case] = summary(out)
    assert int(case["log_dropped_bytes"]) > 4 * 2**20
