"""The GPU state sampled during timed passes (af3core.gpustate): the flag and its columns."""
import csv

import pytest

from af3core import devices
from af3core.gpustate import COLUMNS, GpuState


def test_steady_clocks_are_not_flagged():
    state = GpuState()
    for _ in range(5):
        state.add(1980, 45, 350_000, 0x1)  # GPU idle between launches is a state, not a slowdown
    cols = state.columns()
    assert cols["clocks_changed"] is False and cols["sm_clock_min_mhz"] == cols["sm_clock_max_mhz"] == 1980
    assert cols["gpu_temp_max_c"] == 45 and cols["gpu_power_max_w"] == 350.0 and cols["throttle_reasons"] == ""


def test_a_moving_clock_or_a_slowdown_reason_flags_the_case():
    moved = GpuState()
    moved.add(1980, 50, 600_000, 0)
    moved.add(1650, 83, 700_000, 0)
    assert moved.columns()["clocks_changed"] is True and moved.columns()["gpu_temp_max_c"] == 83
    capped = GpuState()
    capped.add(1980, 60, 700_000, 0x4)  # the software power cap, at a steady clock
    cols = capped.columns()
    assert cols["clocks_changed"] is True and cols["throttle_reasons"] == "sw_power_cap"


def test_no_samples_leave_the_columns_empty():
    assert GpuState().columns() == dict.fromkeys(COLUMNS)


def test_a_cpu_run_has_the_columns_empty(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--seq-len", "8", "--passes", "3",
                   "--set", "work_ms=150", "--out", "cpu", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = next(csv.DictReader(open(af3.cwd / "cpu" / "summary.csv")))
    assert all(row[c] == "" for c in COLUMNS)


@pytest.mark.skipif(not devices.gpu_count(), reason="needs an NVIDIA GPU (NVML)")
def test_a_gpu_run_records_the_clock_during_its_passes(af3):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cuda", "--seq-len", "8", "--passes", "4",
                   "--set", "work_ms=300", "--set", "cuda_matmul_n=4096", "--out", "gpu", "--plain", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    row = next(csv.DictReader(open(af3.cwd / "gpu" / "summary.csv")))
    assert int(row["sm_clock_max_mhz"]) >= int(row["sm_clock_min_mhz"]) > 0
    assert int(row["gpu_temp_max_c"]) > 0 and row["clocks_changed"] in ("True", "False")
