"""The kernels plugin as the harness sees it: registration is light, the runner yields sane rows."""
import importlib.util
import os
import subprocess
import sys

import pytest

from af3core import Case, CaseError

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None


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


def run_case(mode, impl, device="cpu", **settings):
    from af3_kernels.runner import KernelRunner

    base = dict(impl=impl, dtype="fp32", S=3, H=2, C=5, reps=2)
    base.update(settings)
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=20, device=device, settings=base))
    facts = runner.setup()
    compiled = runner.compile()
    row = runner.step()
    return facts, compiled, row, runner


@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwdbwd"])
def test_fused_rows_on_cpu(mode):
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before the runner could set TRITON_INTERPRET=1 "
                    "(the harness runs each case in a fresh process); set it in the environment")
    facts, compiled, row, _ = run_case(mode, "fused", mask=True)
    assert facts["triton_interpret"] is True
    # timing defaults to events and is recorded both in the setup facts and in every pass row
    assert facts["timing"] == "events" and row["timing"] == "events"
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


def test_fp32_split_precision_floors():
    """bf16x6 / bf16x3 do 6 / 3 bf16 tensor-core products per fp32 product: at fp32 (128, 384, 8)
    bf16x6 is tensor-bound at 18.3 us, bf16x3 memory-bound at 14.2, both far under the FMA floor."""
    from af3_kernels.floors import BF16_TENSOR_FLOPS, msa_pwa_floor

    fma = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "fp32")
    expect = {"bf16x6": (18.3, "tensor"), "bf16x3": (14.2, "memory")}
    for precision, (us, bound) in expect.items():
        f = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "fp32", precision)
        assert f.bound == bound and abs(f.seconds * 1e6 - us) < 0.1 and f.seconds < fma.seconds / 2, (precision, f)
        big = msa_pwa_floor("fwd", 1, 128, 4096, 8, 8, "fp32", precision)
        assert big.bound == "tensor" and big.seconds == pytest.approx(big.flops * int(precision[-1]) / BF16_TENSOR_FLOPS)


# -- the timing setting: events (default) or graph (CUDA-graph replays, GPU time only) ----------


@pytest.mark.parametrize("settings,mode,message", [
    (dict(timing="wallclock"), "fwd", "timing must be"),
    (dict(timing="graph"), "fwd", "CUDA" if not CUDA else None),
    (dict(timing="graph"), "fwdbwd", "CUDA" if not CUDA else None),
    (dict(timing="graph"), "bwd", "CUDA" if not CUDA else "not bwd"),
])
def test_timing_setting_errors(settings, mode, message):
    """timing=graph needs CUDA (on a CPU it is a case error, not a silent fallback to events)
    and cannot time bwd (its untimed forward would have to sit outside the graph)."""
    from af3_kernels.runner import KernelRunner

    if message is None:
        pytest.skip("timing=graph is valid for fwd and fwdbwd on a CUDA GPU")
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=8, device="cuda" if CUDA else "cpu",
                               settings=dict(impl="fused", **settings)))
    with pytest.raises(CaseError, match=message):
        runner.setup()


def test_graph_on_cpu_fails_before_any_work():
    """Validation comes first: no inputs are allocated and triton is not needed for the error."""
    from af3_kernels.runner import KernelRunner

    runner = KernelRunner(Case(plugin="kernels", mode="fwd", seq_len=8, device="cpu",
                               settings=dict(impl="fused", timing="graph")))
    with pytest.raises(CaseError, match="timing=graph"):
        runner.setup()
    assert not hasattr(runner, "v")


@pytest.mark.parametrize("timing", ["events", "graph"])
def test_timing_recorded_in_rows(timing):
    """The chosen timing is in the facts and in every pass row (CPU: events only; graph on a GPU)."""
    if timing == "graph" and not CUDA:
        pytest.skip("timing=graph needs a CUDA GPU (its CPU case error is tested above)")
    facts, _, row, _ = run_case("fwd", "torch", device="cuda" if CUDA else "cpu", timing=timing)
    assert facts["timing"] == timing and row["timing"] == timing
    assert row["elapsed_ms"] > 0 and row["reps"] == 2


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", ["fused", "torch"])
def test_graph_timing_on_gpu(mode, impl):
    facts, compiled, row, _ = run_case(mode, impl, device="cuda", timing="graph", S=16, C=8, H=4)
    assert facts["timing"] == "graph" and row["timing"] == "graph"
    assert row["elapsed_ms"] > 0 and row["reps"] == 2 and row["min_ms"] <= row["elapsed_ms"]
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
def test_graph_replay_recomputes_from_current_inputs():
    """The captured call replays on its captured tensors: inputs refilled outside the graph (as
    the runner's ``before`` does) give the new result, not the captured one."""
    from af3_kernels.ops.msa_pwa import msa_pair_weighted_averaging
    from af3_kernels.reference import msa_pwa_reference
    from af3_kernels.timing import time_cuda_graph

    gen = torch.Generator("cuda").manual_seed(0)
    kw = dict(device="cuda", dtype=torch.bfloat16, generator=gen)
    v, g = (torch.randn((1, 16, 64, 8, 8), **kw) for _ in range(2))
    b = torch.randn((1, 64, 64, 8), **kw)
    outs = []

    def call():
        with torch.no_grad():
            outs.append(msa_pair_weighted_averaging(v, b, g))

    times = time_cuda_graph(call, 3, before=lambda: v.normal_(generator=gen))
    assert len(times) == 3 and min(times) > 0
    captured = outs[-1]  # the graph's output buffer, rewritten by every replay
    torch.testing.assert_close(captured.float(), msa_pwa_reference(v, b, g).float(), rtol=2e-2, atol=2e-2)
