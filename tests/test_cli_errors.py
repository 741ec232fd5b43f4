"""User mistakes: one line on stderr, exit 2, no traceback, nothing run."""
import os

import pytest

from af3core import devices


@pytest.mark.parametrize("args, message", [
    (["--plugin", "nosuch"], "unknown plugin 'nosuch'"),
    (["--device", "tpu"], "expected auto, cpu"),
    (["--seq-len", "12x"], "--seq-len"),
    (["--seq-len", "64:32:8"], "--seq-len"),
    (["--set", "fault"], "expected KEY=VALUE"),
    (["--set", "nosuch=1"], "unknown setting"),
    (["--set", "fault=meteor"], "expected one of"),
    (["--set", "work_ms=slow"], "expected a number"),
    (["--preset", "nosuch"], "unknown preset"),
    (["--mode", "fold"], "unknown mode"),
    (["--passes", "0"], "--passes"),
    (["--seq-len", "9000"], "at most 4096"),
    (["--bogus-flag"], "unrecognized arguments"),
    (["--seq-len", ""], "--seq-len"),
    (["--out", ""], "--out: empty"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "0"], "--timeout"),
    (["--seq-len", "1:100000000:1", "--dry-run"], "more than 10000"),
    (["--seq-len", "1000000000"], "largest size"),
    (["--seq-len", "1:20:1", "--max-cases", "5"], "--max-cases 5"),
    (["--set", "testplugin:nosuch=1"], "unknown setting 'nosuch'"),
    (["--set", "kernels:S=8"], "not selected"),
    (["--set", "work_ms=-1"], "work_ms must be 0 or more"),
    (["--set", "work_ms=nan"], "finite"),
    (["--notes", "x" * 100_001], "--notes"),
])
def test_bad_input(af3, args, message):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(devices.gpu_count() > 0, reason="this machine has a GPU")
def test_cuda_on_a_machine_without_it(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cuda")
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr


def test_existing_output_folder_is_refused_unless_forced(af3, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("old")
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (out / "summary.csv").read_text() == "old"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.csv").read_text().startswith("run_id")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(af3, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(locked / "run"))
    assert proc.returncode == 2 and "cannot write" in proc.stderr


def test_output_path_that_is_a_file(af3, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(target / "run"))
    assert proc.returncode == 2 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_dry_run_prints_the_plan_and_runs_nothing(af3, tmp_path):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8:24:8", "--dry-run",
                   "--out", str(tmp_path / "dry"))
    assert proc.returncode == 0
    assert proc.stdout.count("testplugin mode=trunk") == 3 and "seq_len=24" in proc.stdout
    assert not (tmp_path / "dry").exists()


def test_engine_alias_and_full_alias(af3):
    proc = af3.run("bench", "--engine", "testplugin", "--full", "--device", "cpu", "--dry-run")
    assert proc.returncode == 0 and "mode=full" in proc.stdout


def test_plot_of_a_folder_without_results(af3, tmp_path):
    proc = af3.run("plot", str(tmp_path))
    assert proc.returncode == 2 and "summary.csv" in proc.stderr


def test_plot_of_a_file_is_a_usage_error(af3, tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("run_id\n")
    proc = af3.run("plot", str(target))
    assert proc.returncode == 2 and "not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_plot_of_a_run_without_a_successful_case_fails(af3, tmp_path):
    out = tmp_path / "failed"
    af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8,16", "--passes", "1",
            "--set", "fault=raise", "--out", str(out), "--no-plot")
    proc = af3.run("plot", str(out))
    assert proc.returncode == 1 and "no successful cases" in proc.stderr
    assert not (out / "time_vs_seq_len.png").exists() and not (out / "memory_vs_seq_len.png").exists()


def test_in_process_takes_one_engine_at_a_time(af3):
    """Two engines in one process could share a top-level package (Ligo's and Protenix's `configs`)."""
    pytest.importorskip("esm", reason="fair-esm is not installed (bash scripts/setup.sh)")
    pytest.importorskip("boltz", reason="boltz is not installed (bash scripts/setup.sh)")
    proc = af3.run("bench", "--plugin", "esm2", "--plugin", "boltz", "--device", "cpu", "--seq-len", "32",
                   "--in-process", "--dry-run")
    assert proc.returncode == 2 and "one engine per invocation" in proc.stderr and "boltz, esm2" in proc.stderr
    one = af3.run("bench", "--plugin", "esm2", "--device", "cpu", "--seq-len", "32", "--in-process", "--dry-run")
    assert one.returncode == 0, one.stderr
