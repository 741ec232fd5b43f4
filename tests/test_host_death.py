"""When the host itself is stopped or dies: every row written stays, a stopped host writes its summary,
and no worker (nor anything a worker started) is ever left running."""
import csv
import json
import signal
import time

import pytest


def _wait_for_rows(jsonl, n, proc, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= n:
            return [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows after {within} s")


def _start(af3, out, *sets, seq_len="8,16"):
    args = ["bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", seq_len, "--passes", "3",
            "--out", str(out), "--plain"]
    for s in sets:
        args += ["--set", s]
    return af3.popen(*args)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_stop_signal_keeps_the_rows_writes_the_summary_and_kills_the_worker(af3, tmp_path, sig, status, gone):
    out = tmp_path / "stopped"
    proc = _start(af3, out, "fault=hang", "fault_pass=1", "helper=true")
    [first] = _wait_for_rows(out / "testplugin.jsonl", 1, proc)
    time.sleep(0.3)  # into the hanging pass
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    with open(out / "summary.csv") as f:
        [case] = list(csv.DictReader(f))  # the second size never started
    assert case["status"] == "interrupted" and case["n_ok"] == "1"
    assert json.loads((out / "meta.json").read_text())["stopped_by"] == signal.Signals(sig).name
    assert gone(first["worker_pid"]) and gone(first["info"]["helper_pid"])


def test_a_killed_host_leaves_no_worker_and_no_helper_behind(af3, tmp_path, gone):
    out = tmp_path / "killed"
    proc = _start(af3, out, "fault=hang", "fault_pass=1", "helper=true")
    [first] = _wait_for_rows(out / "testplugin.jsonl", 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert gone(first["worker_pid"]), "the worker outlived its killed host"
    assert gone(first["info"]["helper_pid"]), "the worker's helper outlived the killed host"
    assert [r["ok"] for r in (json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines())] \
        == [True]


def test_a_second_ctrl_c_while_stopping_still_leaves_nothing_behind(af3, tmp_path, gone):
    out = tmp_path / "twice"
    proc = _start(af3, out, "fault=hang", "fault_pass=1", "helper=true")
    [first] = _wait_for_rows(out / "testplugin.jsonl", 1, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert gone(first["worker_pid"]) and gone(first["info"]["helper_pid"])
    assert (out / "summary.csv").exists()
