"""Registers two plugins: ``testplugin`` (runs) and ``testplugin_unavailable`` (never can).

Environment switches make the plugin's own hooks misbehave, for the harness's fault tests:
AF3_TEST_CHECK=hang|raise|exit (the unavailable plugin's availability check), AF3_TEST_HOOK=raise
(testplugin's check_seq_len and validate).
"""
import os
import time

from af3core import ENGINE, Availability, Plugin, Setting, hookimpl

FAULTS = ("none", "raise", "segfault", "exit", "hang", "oom", "bad_frame", "big_frame", "nonfinite", "user_error",
          "stdout_noise", "close_channel", "bad_type", "nan_frame", "list_info", "nan_time", "unknown_message",
          "log_flood", "cpu_oom", "kill_parent")


def _hook_fault():
    if os.environ.get("AF3_TEST_HOOK") == "raise":
        raise ValueError("the test plugin's hook broke")


def check_seq_len(n):
    _hook_fault()
    return None if n <= 4096 else "at most 4096 for the test plugin"


def validate(settings, device_type):
    _hook_fault()
    return [] if settings["work_ms"] >= 0 else ["work_ms must be 0 or more"]


def unavailable():
    how = os.environ.get("AF3_TEST_CHECK")
    if how == "hang":
        time.sleep(3600)
    if how == "raise":
        raise RuntimeError("the check broke")
    if how == "exit":
        raise SystemExit(4)
    return Availability.no("engine source not found", "set AF3_TEST_SRC to a checkout")


@hookimpl
def register_plugins(register):
    register(Plugin(
        name="testplugin",
        kind=ENGINE,
        runner="af3_testplugin.runner:TestRunner",
        description="numpy matmul workload with injectable faults (tests only)",
        modes=("toy", "trunk", "full"),
        default_seq_lens={"cpu": (16,), "cuda": (16,)},
        default_passes=3,
        settings={
            "fault": Setting("none", "fault to inject", choices=FAULTS),
            "fault_pass": Setting(-1, "pass index at which to fault; -1 = during setup"),
            "work_ms": Setting(0.0, "extra sleep per pass, ms"),
            "jitter_ms": Setting(0.0, "a further sleep of up to this many ms, uniform at random, per pass"),
            "oom_above": Setting(0, "run out of host memory in setup when seq_len exceeds this (0 = never)"),
            "cuda_matmul_n": Setting(0, "add one fp32 n x n torch matmul per pass on the GPU (0 = none)"),
            "helper": Setting(False, "fork a helper process in setup that sleeps for an hour (it holds the pipes)"),
            "linger": Setting(False, "start a non-daemon thread in setup that keeps the worker from exiting"),
            "flood_mib": Setting(0, "with fault=log_flood: MiB written to stdout"),
        },
        presets={"quick": {"work_ms": 0.0}, "slow": {"work_ms": 20.0}},
        default_preset="quick",
        check_seq_len=check_seq_len,
        validate=validate,
        env={"AF3_TESTPLUGIN_ENV": "from-plugin"},
    ))
    register(Plugin(
        name="testplugin_unavailable",
        kind=ENGINE,
        runner="af3_testplugin.runner:TestRunner",
        check=unavailable,
    ))
