"""Registers two plugins: ``testplugin`` (runs) and ``testplugin_unavailable`` (never can)."""
from af3core import ENGINE, Availability, Plugin, Setting, hookimpl

FAULTS = ("none", "raise", "segfault", "exit", "hang", "oom", "bad_frame", "big_frame", "nonfinite", "user_error",
          "stdout_noise")


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
            "oom_above": Setting(0, "run out of host memory in setup when seq_len exceeds this (0 = never)"),
            "cuda_matmul_n": Setting(0, "add one fp32 n x n torch matmul per pass on the GPU (0 = none)"),
        },
        presets={"quick": {"work_ms": 0.0}, "slow": {"work_ms": 20.0}},
        default_preset="quick",
        check_seq_len=lambda n: None if n <= 4096 else "at most 4096 for the test plugin",
        env={"AF3_TESTPLUGIN_ENV": "from-plugin"},
    ))
    register(Plugin(
        name="testplugin_unavailable",
        kind=ENGINE,
        runner="af3_testplugin.runner:TestRunner",
        check=lambda: Availability.no("engine source not found", "set AF3_TEST_SRC to a checkout"),
    ))
