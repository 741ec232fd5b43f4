"""Correctness of the all-heads, single-launch MSA pair-weighted averaging forward
(af3_kernels.ops.msa_pwa_heads) and of its backward (msa_pwa's kernels fed with its statistics).

Same bar as tests/test_kernels_msa_pwa.py: against a float64 reference, max abs error within 3x the
same-dtype PyTorch reference's error plus one unit in the last place, cosine similarity >= 0.999,
for the output and the gradients of v, bias and g, with every output buffer NaN-poisoned first.
Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1) on small odd shapes.
"""
import importlib.util
import os
import sys

import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("triton") is None:
    pytest.skip("the fused kernel needs triton", allow_module_level=True)

CUDA = torch.cuda.is_available()
if not CUDA:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set: run the CPU tests "
                    "with TRITON_INTERPRET=1 in the environment", allow_module_level=True)
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton's first import

from af3_kernels.ops import msa_pwa, msa_pwa_heads  # noqa: E402
from af3_kernels.ops.msa_pwa_heads import (  # noqa: E402
    MSAWeightedAveragingFusedHeads, msa_pair_weighted_averaging_heads)
from af3_kernels.reference import msa_pwa_reference  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}

# (B, S, R, H, C). In the interpreter the tiles are 16 rows of i and j and 16 // pow2(C) rows of
# s: R = 17, 33 span two and three i/j blocks, S = 5 at C = 3 two s-blocks; H = 3, 5 and C = 3,
# 7, 20 are padded (H*C rows not contiguous in the tile); (1, 4, 16, 2, 8) has the unpadded layout.
SMALL = [
    (1, 1, 1, 1, 1),
    (2, 3, 5, 2, 7),
    (1, 1, 17, 3, 5),
    (1, 4, 16, 2, 8),
    (2, 2, 19, 2, 20),
    (1, 5, 33, 2, 3),
    (1, 2, 18, 5, 4),
]
LARGE = [  # compiled (GPU) only
    (1, 128, 384, 8, 8),
    (1, 128, 384, 8, 32),
    (2, 37, 129, 3, 24),
    (1, 7, 300, 5, 33),
    (1, 1, 1000, 4, 4),
]


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    """NaN-fill every buffer the kernels should overwrite: an unwritten element fails the test."""
    monkeypatch.setattr(msa_pwa, "POISON_OUTPUTS", True)


def make_inputs(shape, dtype, masked, seed=0):
    B, S, R, H, C = shape
    gen = torch.Generator(DEVICE).manual_seed(seed)
    kw = dict(device=DEVICE, dtype=dtype, generator=gen)
    v = torch.randn((B, S, R, H, C), **kw)
    g = torch.randn((B, S, R, H, C), **kw)
    b = 2 * torch.randn((B, R, R, H), **kw)  # a spread-out softmax exercises the running max
    dout = torch.randn((B, S, R, H * C), **kw)
    mask = None
    if masked:
        mask = torch.rand((B, R, R), device=DEVICE, generator=gen) < 0.7
        mask[0, R // 2, :] = False  # a fully masked row: uniform average, no bias gradient
    return v, b, g, dout, mask


def run(fn, v, b, g, dout, mask, dtype):
    ins = [x.detach().to(dtype).requires_grad_() for x in (v, b, g)]
    out = fn(*ins, mask)
    grads = torch.autograd.grad(out, ins, dout.to(dtype))
    return [out.detach()] + [x.detach() for x in grads]


def assert_close(kernel, ref_same, ref64, dtype, what):
    for name, k, r, r64 in zip(("out", "dv", "dbias", "dg"), kernel, ref_same, ref64):
        assert k.shape == r64.shape, (what, name)
        k, r = k.double(), r.double()
        assert torch.isfinite(k).all(), f"{what} {name}: non-finite values (unwritten or overflow)"
        scale = max(r64.abs().max().item(), 1.0)
        err, ref_err = (k - r64).abs().max().item(), (r - r64).abs().max().item()
        bound = 3 * ref_err + EPS[dtype] * scale
        assert err <= bound, f"{what} {name}: max abs error {err:.3e} > {bound:.3e} (eager {ref_err:.3e})"
        if r64.norm() > 0:
            cos = torch.nn.functional.cosine_similarity(k.flatten(), r64.flatten(), dim=0).item()
            assert cos >= 0.999, f"{what} {name}: cosine similarity {cos:.6f}"


def check(shape, dtype, masked, p_mode="auto"):
    v, b, g, dout, mask = make_inputs(shape, dtype, masked)
    originals = [x.clone() for x in (v, b, g, dout)]

    def fused(v_, b_, g_, m_):
        return msa_pair_weighted_averaging_heads(v_, b_, g_, m_, p_mode=p_mode)

    kernel = run(fused, v, b, g, dout, mask, dtype)
    ref_same = run(msa_pwa_reference, v, b, g, dout, mask, dtype)
    ref64 = run(msa_pwa_reference, v, b, g, dout, mask, torch.float64)
    assert_close(kernel, ref_same, ref64, dtype, f"{shape} {dtype} mask={masked} {p_mode}")
    # The inference path (no autograd: no statistics written) gives the same output bit for bit.
    with torch.no_grad():
        out = msa_pair_weighted_averaging_heads(v, b, g, mask)
    assert torch.equal(out, kernel[0])
    for before, after in zip(originals, (v, b, g, dout)):
        assert torch.equal(before, after), "an input was modified"


@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_float64_reference(shape, dtype, masked):
    # Alternate the backward's P handling so both paths meet the new statistics.
    check(shape, dtype, masked, p_mode="recompute" if (SMALL.index(shape) + masked) % 2 else "stored")


def test_fp16():
    check((1, 3, 21, 2, 6), torch.float16, True)


@pytest.mark.skipif(not CUDA, reason="large shapes run only compiled, on a CUDA GPU")
@pytest.mark.parametrize("shape", LARGE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_large_on_gpu(shape, dtype, masked):
    check(shape, dtype, masked)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_statistics_match_msa_pwa_stats_kernel(masked):
    """The backward trusts the forward's (m2, l2): they must be msa_pwa's statistics."""
    shape = (2, 5, 33, 3, 3)  # several s-blocks: only the first may write, all rows i covered
    B, S, R, H, C = shape
    v, b, g, _, mask = make_inputs(shape, torch.float32, masked)
    mask_u8, mstrides = msa_pwa._prepare_mask(mask, B, R, v.device)
    _, m2, l2 = msa_pwa_heads._forward(v, b, g, mask_u8, mstrides, "ieee", True)
    m2_ref, l2_ref, _ = msa_pwa._softmax_stats(b, mask_u8, mstrides, B, R, H, False)
    torch.testing.assert_close(m2, m2_ref, rtol=0, atol=0)  # a max is exact
    torch.testing.assert_close(l2, l2_ref, rtol=1e-6, atol=1e-6)


def test_matches_msa_pwa_and_ligo_additive_mask():
    """A [R, R] mask broadcasts over B; outside fully masked rows it equals Ligo's additive mask;
    the output agrees with msa_pwa's fused kernel."""
    shape = (2, 3, 18, 2, 5)
    v, b, g, _, mask = make_inputs(shape, torch.float32, True)
    pair = mask[0]
    full = shape[2] // 2
    ours = msa_pair_weighted_averaging_heads(v, b, g, pair)
    ligo = msa_pair_weighted_averaging_heads(v, b + 1e8 * (pair.float() - 1)[None, :, :, None], g)
    rows = torch.arange(shape[2], device=DEVICE) != full
    torch.testing.assert_close(ours[:, :, rows], ligo[:, :, rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, msa_pwa.msa_pair_weighted_averaging(v, b, g, pair), rtol=1e-5, atol=1e-6)


def test_module_and_only_requested_gradients():
    v, b, g, dout, _ = make_inputs((1, 2, 9, 3, 4), torch.float32, False)
    out = MSAWeightedAveragingFusedHeads()(v, b, g)
    assert out.shape == (1, 2, 9, 12)
    torch.testing.assert_close(out, msa_pwa_reference(v, b, g), rtol=1e-5, atol=1e-6)
    b.requires_grad_()
    (db,) = torch.autograd.grad(msa_pair_weighted_averaging_heads(v, b, g), (b,), dout)
    b64 = b.detach().double().requires_grad_()
    (db64,) = torch.autograd.grad(msa_pwa_reference(v.double(), b64, g.double()), (b64,), dout.double())
    torch.testing.assert_close(db.double(), db64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", ["bias_shape", "dtype_mix", "rank", "p_mode"])
def test_rejects_bad_inputs(bad):
    v, b, g, _, _ = make_inputs((1, 2, 5, 2, 3), torch.float32, False)
    kw = {}
    if bad == "bias_shape":
        b = b[:, :4]
    elif bad == "dtype_mix":
        b = b.to(torch.bfloat16)
    elif bad == "rank":
        v, g = v[0], g[0]
    else:
        kw["p_mode"] = "nope"
    with pytest.raises(ValueError):
        msa_pair_weighted_averaging_heads(v, b, g, **kw)


# -- the harness runner: impl=fused_heads and the timing setting ------------------------------


def run_case(mode, **settings):
    from af3core import Case
    from af3_kernels.runner import KernelRunner

    base = dict(impl="fused_heads", dtype="fp32", S=3, H=2, C=5, reps=2)
    base.update(settings)
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=20, device=DEVICE, settings=base))
    facts = runner.setup()
    compiled = runner.compile()
    return facts, compiled, runner.step()


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_runner_fused_heads(mode):
    facts, compiled, row = run_case(mode, mask=True)
    assert facts["impl"] == "fused_heads" and facts["timing"] == "events" and row["timing"] == "events"
    assert facts["triton_interpret"] is (not CUDA)
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6
    assert row["elapsed_ms"] > 0 and row["reps"] == 2


@pytest.mark.parametrize("settings,mode,message", [
    (dict(timing="wallclock"), "fwd", "timing must be"),
    (dict(timing="graph"), "fwd", "CUDA" if not CUDA else None),
    (dict(timing="graph"), "bwd", "CUDA" if not CUDA else "not bwd"),
])
def test_runner_timing_setting_errors(settings, mode, message):
    """timing=graph needs CUDA (on a CPU it is a case error, not a silent fallback) and no bwd."""
    from af3core import Case, CaseError
    from af3_kernels.runner import KernelRunner

    if message is None:
        pytest.skip("timing=graph is valid for fwd on a CUDA GPU")
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=8, device=DEVICE,
                               settings=dict(impl="torch", **settings)))
    with pytest.raises(CaseError, match=message):
        runner.setup()


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("impl", ["fused_heads", "torch"])
def test_runner_graph_timing_on_gpu(mode, impl):
    _, compiled, row = run_case(mode, impl=impl, timing="graph", S=16, C=8, H=4)
    assert row["timing"] == "graph" and row["elapsed_ms"] > 0 and row["reps"] == 2


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
def test_graph_replay_recomputes_from_current_inputs():
    """The captured call replays on its captured tensors: refilled inputs give the new result."""
    from af3_kernels.timing import time_cuda_graph

    v, b, g, _, _ = make_inputs((1, 16, 64, 8, 8), torch.bfloat16, False)
    outs = []

    def call():
        with torch.no_grad():
            outs.append(msa_pair_weighted_averaging_heads(v, b, g))

    times = time_cuda_graph(call, 3, before=lambda: v.normal_())
    assert len(times) == 3 and min(times) > 0
    captured = outs[-1]  # the graph's output buffer, rewritten by every replay
    torch.testing.assert_close(captured.float(), msa_pwa_reference(v, b, g).float(), rtol=2e-2, atol=2e-2)
