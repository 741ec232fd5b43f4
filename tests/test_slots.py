"""Cases at the same time: --jobs N on one device, --gpus LIST with a worker pinned per GPU
(af3core.slots). The results folder is the same as a serial run's; faults and Ctrl-C too."""
import csv
import json
import signal
import time

import pytest

from af3core import devices


def _rows(out):
    return [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]


def _summary(out):
    with open(out / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_two_slots_run_cases_at_once_and_leave_a_serial_runs_folder(af3, tmp_path):
    out = tmp_path / "slots"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16,24,32", "--passes", "3",
                   "--set", "work_ms=300", "--jobs", "2", "--out", str(out), "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out)
    # every case's rows contiguous, the cases in plan order, as a run one case at a time leaves them
    assert [r["seq_len"] for r in rows] == [8] * 3 + [16] * 3 + [24] * 3 + [32] * 3
    assert [r["pass_index"] for r in rows] == [0, 1, 2] * 4
    assert [s["seq_len"] for s in _summary(out)] == ["8", "16", "24", "32"]
    assert all(s["status"] == "ok" and s["n_ok"] == "3" for s in _summary(out))
    # two workers at once: the first two cases' passes overlap in time, in different processes
    spans = {n: (min(r["start_ts"] for r in rows if r["seq_len"] == n),
                 max(r["start_ts"] for r in rows if r["seq_len"] == n)) for n in (8, 16)}
    assert spans[8][0] < spans[16][1] and spans[16][0] < spans[8][1]
    assert len({r["worker_pid"] for r in rows}) == 4
    assert json.loads((out / "meta.json").read_text())["slots"] == ["0", "1"]


def test_a_crash_in_one_slot_leaves_the_other_cases_running(af3, tmp_path):
    out = tmp_path / "crash"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16,24", "--passes", "3",
                   "--sweep", "fault=none,segfault", "--set", "fault_pass=1", "--set", "work_ms=50", "--jobs", "2",
                   "--out", str(out), "--plain", "--no-plot")
    assert proc.returncode == 1
    statuses = [(s["seq_len"], json.loads(s["settings"])["fault"], s["status"]) for s in _summary(out)]
    assert sorted(statuses) == sorted([(n, f, "ok" if f == "none" else "crashed")
                                       for n in ("8", "16", "24") for f in ("none", "segfault")])


def test_ctrl_c_stops_every_slot_and_keeps_the_rows(af3, tmp_path, gone):
    out = tmp_path / "stopped"
    proc = af3.popen("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16,24", "--passes", "500",
                     "--set", "work_ms=20", "--jobs", "2", "--out", str(out), "--plain")
    jsonl = out / "testplugin.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _rows(out) if jsonl.exists() else []
        if {r["seq_len"] for r in rows} >= {8, 16}:
            break
        time.sleep(0.1)
    pids = {r["worker_pid"] for r in _rows(out)}
    assert len(pids) == 2
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert all(gone(pid) for pid in pids)  # no worker left behind
    summary = _summary(out)
    assert [s["status"] for s in summary] == ["interrupted", "interrupted"]  # the third case never started
    assert [r["seq_len"] for r in _rows(out)] == sorted(r["seq_len"] for r in _rows(out))  # still in plan order


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "2", "--until-oom", "--seq-len", "8::8"], "one case at a time"),
    (["--jobs", "2", "--in-process"], "--in-process runs one case at a time"),
])
def test_bad_slot_options_are_usage_errors(af3, args, message):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--dry-run", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(devices.gpu_count() > 0, reason="checks the message of a machine without a GPU")
def test_gpus_without_a_gpu_is_a_usage_error(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--seq-len", "8", "--gpus", "0", "--dry-run")
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr


@pytest.mark.skipif(not devices.gpu_count(), reason="needs an NVIDIA GPU (NVML)")
def test_two_slots_on_one_gpu_pin_it_and_name_it(af3, tmp_path):
    out = tmp_path / "gpu"
    proc = af3.run("bench", "--plugin", "testplugin", "--seq-len", "8,16", "--passes", "2", "--gpus", "0,0",
                   "--set", "cuda_matmul_n=1024", "--out", str(out), "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    for row in _rows(out):
        assert row["gpu_index"] == 0 and row["gpu_uuid"] == devices.gpu_uuid(0)
        assert row["env"]["CUDA_VISIBLE_DEVICES"] == "0" and row["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
