"""Without a GPU the kernels' tests run them in Triton's interpreter, which must be chosen before
triton's first import (it decides at decoration time, its own library included): set here, before
any test module of this folder is imported. Each module skips when triton was imported earlier."""
import importlib.util
import os
import sys


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


if not _cuda() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")


import json  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def sm90_shared():
    """``run(script)``: a script that compiles kernels for sm_90 offline (no GPU needed) and prints
    {configuration: shared memory bytes} as JSON on its last line, run in a process of its own
    without TRITON_INTERPRET; skips when this Triton cannot compile for sm_90 here."""

    def run(script: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode and ("ptxas" in proc.stderr or "GPUTarget" in proc.stderr):
            pytest.skip(f"this Triton cannot compile for sm_90 offline: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        shared = json.loads(proc.stdout.strip().splitlines()[-1])
        print("\nshared memory per configuration:", shared)
        return shared

    return run
