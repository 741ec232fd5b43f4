"""The kernels plugin as the harness sees it: registration is light, the runner yields sane rows."""
import importlib.util
import os
import subprocess
import sys

import pytest

from af3core import Case, CaseError

pytest.importorskip("torch")


def collect_plugins():
    from af3_kernels import plugin

    found = []
    plugin.register_plugins(found.append)
    return found


def test_registers_kernel_plugin_without_heavy_imports():
    code = ("import sys; from af3_kernels import plugin; found = []; plugin.register_plugins(found.append); "
            "p = found[0]; print(p.name, p.kind, ','.join(p.modes), p.default_mode, p.availability().ok); "
            "print(sorted(m for m in ('torch', 'triton', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "kernels kernel fwd,bwd,fwdbwd fwd True"
    assert out[1] == "[]", "registering the plugin imported a heavy framework"


def test_entry_point_declared():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="af3bench") if ep.name == "kernels"]
    if not eps:
        pytest.skip("af3-kernels is not pip-installed in this environment")
    assert eps[0].value == "af3_kernels.plugin"


def run_case(mode, impl, **settings):
    from af3_kernels.runner import KernelRunner

    base = dict(impl=impl, dtype="fp32", S=3, H=2, C=5, reps=2)
    base.update(settings)
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=20, device="cpu", settings=base))
    facts = runner.setup()
    compiled = runner.compile()
    row = runner.step()
    return facts, compiled, row, runner


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="fused needs triton")
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwdbwd"])
def test_fused_rows_on_cpu(mode):
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before the runner could set TRITON_INTERPRET=1 "
                    "(the harness runs each case in a fresh process); set it in the environment")
    facts, compiled, row, _ = run_case(mode, "fused", mask=True)
    assert facts["triton_interpret"] is True
    assert facts["floor_ms"] > 0 and facts["floor_bound"] in ("memory", "fma", "tensor", "exp")
    # fp32: the kernel agrees with float64 about as well as eager fp32 does
    assert compiled["output_finite"]
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6
    assert row["elapsed_ms"] > 0 and row["reps"] == 2
    assert row["fraction_of_floor"] is None  # H100 floors mean nothing on a CPU


def test_floor_grows_with_direction():
    _, _, fwd, _ = run_case("fwd", "torch")
    _, _, fb, _ = run_case("fwdbwd", "torch")
    assert fb["floor_ms"] > fwd["floor_ms"]


@pytest.mark.parametrize("settings,message", [
    (dict(impl="seed"), "CUDA"),
    (dict(impl="nope"), "impl must be"),
    (dict(kernel="other"), "unknown kernel"),
    (dict(dtype="fp8"), "dtype must be"),
])
def test_bad_settings_are_case_errors(settings, message):
    from af3_kernels.runner import KernelRunner

    runner = KernelRunner(Case(plugin="kernels", mode="fwd", seq_len=8, device="cpu", settings=settings))
    with pytest.raises(CaseError, match=message):
        runner.setup()


def test_floors_match_anchors():
    """The H100 floors of docs/ANCHORS.md for B=1, H=8."""
    from af3_kernels.floors import msa_pwa_floor

    cases = {(128, 384, 8, "bf16"): (7.1, "memory"), (128, 384, 32, "bf16"): (26.0, "memory"),
             (128, 768, 32, "bf16"): (53.5, "memory"), (128, 1536, 8, "bf16"): (48.9, "tensor"),
             (128, 384, 8, "fp32"): (43.9, "fma")}
    for (S, R, C, dtype), (us, bound) in cases.items():
        f = msa_pwa_floor("fwd", 1, S, R, 8, C, dtype)
        assert f.bound == bound and abs(f.seconds * 1e6 - us) < 0.1, (S, R, C, dtype, f)
