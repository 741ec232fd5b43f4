"""The kernels plugin as the harness sees it: its settings and plan-time checks, the registry of
kernels, the floors, and the kernel-agnostic runner's rows."""
import importlib.util
import os
import shlex
import sys
from pathlib import Path

import pytest

from af3core import Case, CaseError

from af3_kernels import floors, registry
from af3_kernels.kernel import KernelSpec
from af3_kernels.msa_pwa.spec import LIGO_SOURCE

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None
SUITE = Path(__file__).resolve().parent.parent / "suite.txt"


def plugin():
    from af3_kernels import plugin as module

    found = []
    module.register_plugins(found.append)
    return found[0]


def settings(**changes):
    return {**registry.defaults(), **changes}


def run_case(mode, impl, device="cpu", **changes):
    from af3_kernels.runner import KernelRunner

    base = dict(impl=impl, dtype="fp32", S=3, H=2, C=5, reps=2)
    base.update(changes)
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=20, device=device, settings=base))
    facts = runner.setup()
    compiled = runner.compile()
    row = runner.step()
    return facts, compiled, row, runner


# -- settings and plan-time validation ----------------------------------------------------------


def test_settings_keep_their_names_and_defaults():
    """The generic settings and msa_pwa's, as before the registry (timing and precision now "auto"),
    then evo_attn's own (B, mask and precision are shared with msa_pwa; variant with tri_mul), then
    tri_mul's (pair_dim shared with transition and ln_linear), then transition's, ln_linear's and
    simplicial's."""
    p = plugin()
    defaults = {k: s.default for k, s in p.settings.items()}
    assert defaults == dict(kernel="msa_pwa", impl="fused", dtype="bf16", reps=100, timing="auto", flush=True,
                            check=True, S=128, H=8, C=8, B=1, mask=False, precision="auto", p_mode="auto",
                            variant="auto", heads=4, head_dim=32, rows=512, gate=False, bias_scale=1.0,
                            pair_dim=128, tri_hidden=128, expansion=4, out_dim=512, bias=False, ln_rows="pair",
                            simplicial_variant="windowed", w1=512, w2=32)
    assert p.validate is registry.validate and tuple(p.libraries) == ("triton",)
    assert set(p.settings["impl"].choices) == {"fused", "torch", "compile", "seed", "sdpa", "trifast", "cueq", "liger",
                                               "lucidrains"}
    assert p.validate(settings(impl="fused", dtype="bf16", S=128, C=8), "cuda") == []


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_defaults_pass_validation(device_type):
    assert registry.validate(settings(), device_type) == []
    assert registry.validate(settings(impl="torch", dtype="fp32", mask=True, precision="tf32"), device_type) == []


@pytest.mark.parametrize("changes,device_type,message", [
    (dict(kernel="other"), "cuda", "unknown kernel"),
    (dict(S=0), "cuda", "S must be at least 1"),
    (dict(H=0, C=-1), "cuda", "H, C must be at least 1"),
    (dict(B=0), "cpu", "B must be at least 1"),
    (dict(reps=0), "cuda", "reps must be at least 1"),
    (dict(timing="graph"), "cpu", "needs a CUDA GPU"),
    (dict(impl="seed", dtype="fp32"), "cpu", "impl=seed (Ligo's Triton kernel) needs a CUDA GPU"),
    (dict(impl="seed", dtype="bf16"), "cuda", "supports dtype=fp32 only"),
    (dict(impl="nope"), "cuda", "has no impl 'nope'"),
])
def test_plan_time_problems(changes, device_type, message):
    problems = registry.validate(settings(**changes), device_type)
    assert any(message in p for p in problems), problems


def test_graph_timing_is_valid_on_cuda():
    assert registry.validate(settings(timing="graph"), "cuda") == []


def test_seed_source_missing_is_a_plan_time_problem_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("AF3_LIGO_SRC", str(tmp_path))
    problems = registry.validate(settings(impl="seed", dtype="fp32"), "cuda")
    assert len(problems) == 1 and "AF3_LIGO_SRC" in problems[0] and "fix:" in problems[0], problems


def test_seed_source_found_through_the_engine_locator(monkeypatch):
    monkeypatch.delenv("AF3_LIGO_SRC", raising=False)
    try:
        found = LIGO_SOURCE.locate()
    except Exception as exc:  # noqa: BLE001 - SourceNotFound: nothing to find here
        pytest.skip(f"Ligo's source is not in third_party here: {exc}")
    assert (found.root / "src/models/components/msa_kernel.py").is_file()


def test_timing_auto_resolves_per_device_and_direction():
    resolve = registry.resolve_timing
    assert [resolve("auto", "cuda", d) for d in ("fwd", "bwd", "fwdbwd")] == ["graph", "events", "graph"]
    assert {resolve(t, "cpu", d) for d in ("fwd", "bwd", "fwdbwd") for t in ("auto", "events")} == {"wall"}
    assert resolve("events", "cuda", "fwd") == "events" and resolve("graph", "cuda", "fwd") == "graph"


def test_precision_auto_is_bf16x6_on_hopper_only(monkeypatch):
    from af3_kernels.msa_pwa.case import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "ieee"
    assert resolve_precision("tf32", torch.device("cpu")) == "tf32"
    for capability, expect in (((9, 0), "bf16x6"), ((8, 0), "ieee"), ((10, 0), "ieee")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert resolve_precision("auto", torch.device("cuda")) == expect, capability


def test_a_kernel_may_not_redeclare_a_setting_differently(monkeypatch):
    """Settings share one namespace: a second kernel's S must mean what msa_pwa's S means."""
    clash = KernelSpec(name="other", description="", case="x:Y", impls={"fused": ""},
                       settings={"S": registry.Setting(64, "rows")})
    monkeypatch.setitem(registry.KERNELS, "other", clash)
    with pytest.raises(ValueError, match="setting 'S'"):
        registry.plugin_settings()
    same = KernelSpec(name="other", description="", case="x:Y", impls={"fused": ""},
                      settings={"S": registry.KERNELS["msa_pwa"].settings["S"]})
    monkeypatch.setitem(registry.KERNELS, "other", same)
    assert registry.plugin_settings()["S"].default == 128


def test_suite_lines_use_declared_settings():
    """Every case of suite.txt names the kernels plugin and only declared settings and choices."""
    declared = plugin().settings
    names = []
    for line in SUITE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, args = line.partition(":")
        names.append(name.strip())
        words = shlex.split(args)
        assert words[:2] == ["--plugin", "kernels"], line
        for key, value in (w.split("=", 1) for w, prev in zip(words[1:], words) if prev == "--set"):
            assert key in declared, (name, key)
            choices = declared[key].choices
            assert choices is None or value in map(str, choices) or value in ("true", "false"), (name, key, value)
        assert not {"--out", "--force", "--plain"} & set(words), line
    assert names and len(names) == len(set(names)), "suite case names must be unique"


# -- floors -------------------------------------------------------------------------------------


def test_rates_per_gpu_model():
    assert floors.rates_for_gpu("NVIDIA H100 80GB HBM3") is floors.H100_SXM
    assert floors.rates_for_gpu("NVIDIA H200") is floors.H200
    for other in ("NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA GH200 480GB", "NVIDIA A100-SXM4-80GB", "NVIDIA L4"):
        assert floors.rates_for_gpu(other) is None, other
    measured = floors.measured_rates("NVIDIA L4", 2.5e11)
    assert measured.gpu == "NVIDIA L4" and measured.hbm_bytes_per_s == 2.5e11
    assert measured.fp32_fma_flops == floors.H100_SXM.fp32_fma_flops and "measured" in measured.source


def test_h100_floors():
    """B=1, H=8 forward at the H100's rates: e.g. bf16 (128, 384, 8) moves 2 * (3*S*R*H*C + R*R*H) =
    21.2 MB at 3.0e12 B/s = 7.1 us; fp32 (128, 384, 8) does 2*S*R*R*H*C = 2.4 GFLOP on the FMA
    units at 55e12 = 43.9 us; bf16 (128, 1536, 8) does 38.7 GFLOP at 790e12 = 48.9 us."""
    from af3_kernels.msa_pwa.case import msa_pwa_floor

    cases = {(128, 384, 8, "bf16"): (7.1, "memory"), (128, 384, 32, "bf16"): (26.0, "memory"),
             (128, 768, 32, "bf16"): (53.5, "memory"), (128, 1536, 8, "bf16"): (48.9, "tensor"),
             (128, 384, 8, "fp32"): (43.9, "fma")}
    for (S, R, C, dtype), (us, bound) in cases.items():
        f = msa_pwa_floor("fwd", 1, S, R, 8, C, dtype, "ieee", False, floors.H100_SXM)
        assert f.bound == bound and abs(f.seconds * 1e6 - us) < 0.1, (S, R, C, dtype, f)


def test_h200_floor_is_lower_where_memory_bound():
    from af3_kernels.msa_pwa.case import msa_pwa_floor

    h100 = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "bf16", "ieee", False, floors.H100_SXM)
    h200 = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "bf16", "ieee", False, floors.H200)
    assert h100.bound == h200.bound == "memory" and h200.seconds == pytest.approx(h100.seconds * 3.0 / 4.3)


def test_fp32_split_precision_floors():
    """bf16x6 / bf16x3 do 6 / 3 bf16 tensor-core products per fp32 product: at fp32 (128, 384, 8)
    bf16x6 is tensor-bound at 18.3 us, bf16x3 memory-bound at 14.2, both far under the FMA floor."""
    from af3_kernels.msa_pwa.case import msa_pwa_floor

    rates = floors.H100_SXM
    fma = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "fp32", "ieee", False, rates)
    expect = {"bf16x6": (18.3, "tensor"), "bf16x3": (14.2, "memory")}
    for precision, (us, bound) in expect.items():
        f = msa_pwa_floor("fwd", 1, 128, 384, 8, 8, "fp32", precision, False, rates)
        assert f.bound == bound and abs(f.seconds * 1e6 - us) < 0.1 and f.seconds < fma.seconds / 2, (precision, f)
        big = msa_pwa_floor("fwd", 1, 128, 4096, 8, 8, "fp32", precision, False, rates)
        assert big.bound == "tensor" and big.seconds == pytest.approx(
            big.flops * int(precision[-1]) / rates.bf16_tensor_flops)


# -- the runner -----------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
@pytest.mark.skipif(CUDA, reason="Triton's interpreter path: on a GPU host it would switch this process's "
                                 "Triton to the interpreter (the GPU tests below cover the runner there)")
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwdbwd"])
def test_fused_rows_on_cpu(mode):
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before the runner could set TRITON_INTERPRET=1 "
                    "(the harness runs each case in a fresh process); set it in the environment")
    facts, compiled, row, _ = run_case(mode, "fused", mask=True)
    assert facts["triton_interpret"] is True
    # on a CPU the timing is the wall clock, recorded both in the setup facts and in every pass row
    assert facts["timing"] == "wall" and row["timing"] == "wall"
    assert facts["precision"] == "ieee" and facts["p_mode"] in ("stored", "recompute")
    assert facts["floor_ms"] > 0 and facts["floor_bound"] in ("memory", "fma", "tensor", "exp")
    assert facts["floor_rates"]["gpu"] == "H100 SXM"
    # fp32: the kernel agrees with float64 about as well as eager fp32 does
    assert compiled["output_finite"]
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6
    assert row["elapsed_ms"] > 0 and row["reps"] == 2
    assert row["fraction_of_floor"] is None  # GPU floors mean nothing on a CPU


def test_floor_grows_with_direction():
    _, _, fwd, _ = run_case("fwd", "torch")
    _, _, fb, _ = run_case("fwdbwd", "torch")
    assert fb["floor_ms"] > fwd["floor_ms"]


def test_check_off_records_no_error():
    _, compiled, row, _ = run_case("fwd", "torch", check=False)
    assert "max_abs_err" not in (compiled or {}) and row["elapsed_ms"] > 0


@pytest.mark.parametrize("changes,mode,device,message", [
    (dict(impl="seed"), "fwd", "cpu", "CUDA"),
    (dict(impl="nope"), "fwd", "cpu", "has no impl"),
    (dict(kernel="other"), "fwd", "cpu", "unknown kernel"),
    (dict(dtype="fp8"), "fwd", "cpu", "dtype"),
    (dict(timing="wallclock"), "fwd", "cpu", "timing must be"),
    (dict(timing="graph"), "fwd", "cpu", "timing=graph"),
    # decided before anything touches the device: checkable without a GPU
    (dict(timing="graph"), "bwd", "cuda", "not bwd"),
])
def test_bad_settings_are_case_errors_before_any_work(changes, mode, device, message):
    """The runner repeats the plan-time checks (a case may be built without the planner) and adds
    the mode-dependent one; it fails before allocating inputs or importing triton."""
    from af3_kernels.runner import KernelRunner

    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=8, device=device, settings=changes))
    with pytest.raises(CaseError, match=message):
        runner.setup()
    assert not hasattr(runner, "inputs")


def test_timing_recorded_in_rows():
    """The timing used is in the facts and in every pass row (the wall clock on a CPU; graph on a GPU)."""
    device = "cuda" if CUDA else "cpu"
    facts, _, row, _ = run_case("fwd", "torch", device=device)
    expect = "graph" if CUDA else "wall"
    assert facts["timing"] == expect and row["timing"] == expect
    assert row["elapsed_ms"] > 0 and row["reps"] == 2


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", ["fused", "torch", "compile"])
def test_graph_timing_on_gpu(mode, impl):
    facts, compiled, row, _ = run_case(mode, impl, device="cuda", timing="graph", S=16, C=8, H=4)
    assert facts["timing"] == "graph" and row["timing"] == "graph"
    assert row["elapsed_ms"] > 0 and row["reps"] == 2 and row["min_ms"] <= row["elapsed_ms"]
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_events_timing_and_rates_on_gpu():
    """timing=events still selectable; bwd under auto uses events; the rows carry the GPU's rates
    and a fraction of the floor."""
    facts, _, row, _ = run_case("bwd", "torch", device="cuda")
    assert facts["timing"] == "events" and row["timing"] == "events"
    facts, _, row, _ = run_case("fwd", "fused", device="cuda", timing="events", dtype="bf16")
    assert facts["timing"] == "events"
    name = torch.cuda.get_device_name(0)
    expect = floors.rates_for_gpu(name)
    assert facts["floor_rates"]["gpu"] == (expect.gpu if expect else name)
    assert 0 < row["fraction_of_floor"]


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.skipif(not HAS_TRITON, reason="fused needs triton")
def test_graph_replay_recomputes_from_current_inputs():
    """The captured call replays on its captured tensors: inputs refilled outside the graph (as
    the runner's ``before`` does) give the new result, not the captured one."""
    from af3_kernels.msa_pwa.function import msa_pair_weighted_averaging
    from af3_kernels.msa_pwa.reference import msa_pwa_reference
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
