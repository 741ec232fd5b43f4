"""Correctness of 2-simplicial attention (af3_kernels.simplicial): the reference against a brute
force in float64, and the fused forward against float64 under the bar of the other kernels (max abs
error within 3x the same-dtype eager error plus one ulp at the output's scale, cosine >= 0.999),
plus the roadmap's absolute bar for fp32 (max abs error < 1e-3 on unit-scale inputs). Windowed and
full, fp32 and bf16, odd n, odd windows, windows wider than n, head dims below 16 and not powers
of two. Triton's interpreter on small shapes without a GPU; compiled, larger shapes with one.
"""
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="the fused kernel needs triton")
CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":  # conftest.py sets it unless triton came first
    pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set: run the CPU tests "
                "with TRITON_INTERPRET=1 in the environment", allow_module_level=True)

from af3core import CaseError  # noqa: E402

from af3_kernels import registry  # noqa: E402
from af3_kernels.simplicial.function import simplicial_attention  # noqa: E402
from af3_kernels.simplicial.reference import random_inputs, simplicial_reference, triples  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7}
FP32_ABS_BAR = 1e-3  # the roadmap's bar for fp32: max abs error against float64

#: (variant, B, n, H, d, w1, w2): odd n, windows not powers of two, w1 spanning several j blocks
#: (the interpreter's BLOCK_J is 16, its query group 4), windows wider than n, d < 16, n = 1
CASES = [
    ("windowed", 1, 13, 2, 24, 5, 3),
    ("windowed", 1, 29, 1, 20, 19, 6),
    ("windowed", 2, 9, 1, 8, 512, 32),
    ("windowed", 1, 1, 1, 16, 4, 4),
    ("full", 1, 7, 2, 24, 0, 0),
    ("full", 1, 5, 1, 12, 0, 0),
]
if CUDA:
    CASES += [("windowed", 2, 301, 3, 128, 64, 32), ("windowed", 1, 1000, 2, 64, 512, 32),
              ("windowed", 1, 257, 2, 96, 33, 17), ("full", 1, 65, 2, 64, 0, 0), ("full", 1, 33, 1, 128, 0, 0)]
DTYPES = [torch.float32, torch.bfloat16]


def _judge(out, ref64, same):
    err = (out.double() - ref64).abs().max().item()
    ref_err = (same.double() - ref64).abs().max().item()
    ulp = EPS[same.dtype] * ref64.abs().max().item()
    cos = torch.nn.functional.cosine_similarity(out.double().flatten(), ref64.flatten(), dim=0).item()
    assert err <= 3 * ref_err + ulp, f"max abs err {err:.3e} > 3 x eager's {ref_err:.3e} + {ulp:.1e}"
    assert cos >= 0.999, cos
    if out.dtype == torch.float32:
        assert err < FP32_ABS_BAR, err
    return err


def _inputs(B, n, H, d, dtype, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    return random_inputs(B, n, H, d, dtype, device=DEVICE, generator=g)


def _brute64(q, k1, k2, v1, v2, variant, w1, w2):
    """Every (i, j, k) triple with a mask: the definition, independent of reference.py's windows."""
    q, k1, k2, v1, v2 = (t.double() for t in (q, k1, k2, v1, v2))
    n, d = q.shape[1], q.shape[-1]
    logits = torch.einsum("bihc,bjhc,bkhc->bhijk", q, k1, k2) / d ** 0.5
    if variant == "windowed":
        i = torch.arange(n, device=q.device)
        j_ok = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - w1)  # [i, j]
        k_ok = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - w2)  # [i, k]
        logits = logits.masked_fill(~(j_ok[:, :, None] & k_ok[:, None, :]), float("-inf"))
    B, H = logits.shape[:2]
    p = torch.softmax(logits.reshape(B, H, n, n * n), -1).reshape(logits.shape)
    return torch.einsum("bhijk,bjhc,bkhc->bihc", p, v1, v2)


@pytest.mark.parametrize("variant,n,w1,w2", [("windowed", 11, 4, 3), ("windowed", 6, 9, 2), ("full", 5, 0, 0)])
def test_reference_matches_the_definition(variant, n, w1, w2):
    x = _inputs(2, n, 3, 5, torch.float64)
    ref = simplicial_reference(*x, variant=variant, w1=max(w1, 1), w2=max(w2, 1))
    assert torch.allclose(ref, _brute64(*x, variant, w1, w2), atol=1e-12, rtol=0)
    part = simplicial_reference(*x, variant=variant, w1=max(w1, 1), w2=max(w2, 1), rows=(2, n - 1))
    assert torch.allclose(part, ref[:, 2:n - 1], atol=1e-12, rtol=0)
    assert triples(n, variant, w1, w2) == (n ** 3 if variant == "full" else sum(
        min(i + 1, w1) * min(i + 1, w2) for i in range(n)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_forward_matches_float64(case, dtype):
    variant, B, n, H, d, w1, w2 = case
    kw = dict(variant=variant, w1=max(w1, 1), w2=max(w2, 1))
    x = _inputs(B, n, H, d, dtype)
    before = [t.clone() for t in x]
    with torch.no_grad():
        out = simplicial_attention(*x, **kw)
        _judge(out, simplicial_reference(*(t.double() for t in x), **kw), simplicial_reference(*x, **kw))
    assert out.shape == x[0].shape and out.dtype == dtype
    assert all(torch.equal(a, b) for a, b in zip(x, before))


#: (variant, n, H, d, w1, w2) for the backward: a w1 window over two j blocks (BLOCK_J 16 in the
#: interpreter), so the atomic key gradients gather from several programs and blocks
BWD_CASES = [("windowed", 21, 1, 16, 18, 5), ("full", 6, 2, 12, 0, 0)]
if CUDA:
    BWD_CASES += [("windowed", 301, 2, 128, 64, 32), ("windowed", 700, 1, 64, 512, 32), ("full", 40, 2, 64, 0, 0)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", BWD_CASES, ids=lambda c: "-".join(map(str, c)))
def test_backward_matches_float64(case, dtype):
    """dq, dk1, dk2, dv1, dv2 (and the output) under the same bar, through autograd."""
    variant, n, H, d, w1, w2 = case
    kw = dict(variant=variant, w1=max(w1, 1), w2=max(w2, 1))
    x = [t.requires_grad_() for t in _inputs(1, n, H, d, dtype, seed=5)]
    dout = torch.randn(x[0].shape, device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(6)).to(dtype)
    out = simplicial_attention(*x, **kw)
    grads = torch.autograd.grad(out, x, dout)
    x64 = [t.detach().double().requires_grad_() for t in x]
    out64 = simplicial_reference(*x64, **kw)
    grads64 = torch.autograd.grad(out64, x64, dout.double())
    eager = simplicial_reference(*x, **kw)
    grads_eager = torch.autograd.grad(eager, x, dout)
    _judge(out.detach(), out64.detach(), eager.detach())
    for name, g, g64, ge in zip(("dq", "dk1", "dk2", "dv1", "dv2"), grads, grads64, grads_eager):
        assert g.dtype == dtype, name
        _judge(g, g64, ge)


@pytest.mark.parametrize("config", [(1, 16, 16, 1), (8, 32, 16, 1)], ids=lambda c: "g{}-j{}-k{}".format(*c[:3]))
def test_launch_configurations_agree(config):
    """Other query groups and block sizes (GROUP = 1: one query per program; a j block wider than
    the window): the same result as the default configuration, to rounding."""
    x = _inputs(1, 19, 1, 16, torch.float32, seed=3)
    with torch.no_grad():
        base = simplicial_attention(*x, w1=7, w2=5)
        other = simplicial_attention(*x, w1=7, w2=5, config=config)
    assert (base - other).abs().max().item() < 1e-5


def test_every_input_and_the_variant_reach_the_output():
    """Zeroing any one input, or switching the variant or a window, changes the result: the checks
    above cannot pass with a term missing."""
    x = _inputs(1, 6, 1, 16, torch.float32, seed=1)
    with torch.no_grad():
        out = simplicial_attention(*x, w1=3, w2=2)
        for idx, name in enumerate(("q", "k1", "k2", "v1", "v2")):
            y = list(x)
            y[idx] = torch.zeros_like(x[idx])
            assert (simplicial_attention(*y, w1=3, w2=2) - out).abs().max() > 1e-3, name
        assert (simplicial_attention(*x, variant="full") - out).abs().max() > 1e-3
        assert (simplicial_attention(*x, w1=2, w2=2) - out).abs().max() > 1e-3
        assert (simplicial_attention(*x, w1=3, w2=3) - out).abs().max() > 1e-3


def test_bad_input_is_refused_with_a_clear_error():
    x = _inputs(1, 4, 1, 8, torch.float32)
    with pytest.raises(ValueError, match="one shape"):
        simplicial_attention(x[0], x[1][:, :3], *x[2:])
    with pytest.raises(ValueError, match="variant"):
        simplicial_attention(*x, variant="causal")
    with pytest.raises(ValueError, match="up to 256"):
        simplicial_attention(*_inputs(1, 2, 1, 300, torch.float32))


def test_registered_and_checked_at_plan_time():
    base = {**registry.defaults(), "kernel": "simplicial"}
    assert registry.validate(base, "cpu") == []
    assert registry.validate({**base, "simplicial_variant": "full", "dtype": "fp32"}, "cpu") == []
    (problem,) = registry.validate({**base, "precision": "bf16x6"}, "cpu")
    assert "simplicial supports precision" in problem
    (problem,) = registry.validate({**base, "head_dim": 300}, "cpu")
    assert "head_dim" in problem
    (problem,) = registry.validate({**base, "variant": "tri_start"}, "cpu")
    assert "simplicial_variant" in problem
    problems = registry.validate({**base, "impl": "lucidrains", "head_dim": 128}, "cpu")
    assert any("CUDA" in p for p in problems) and any("head_dim <= 64" in p for p in problems)


def test_the_anchor_is_forward_only_and_the_floor_counts_the_triples():
    from af3_kernels import floors
    from af3_kernels.simplicial.case import SimplicialCase

    settings = {**registry.defaults(), "kernel": "simplicial", "dtype": "bf16", "head_dim": 128}
    case = SimplicialCase(settings, 8192, torch.device("cpu"))
    with pytest.raises(CaseError, match="forward only"):
        case.implementation("lucidrains", None, "fwdbwd")
    assert case.floor("fwdbwd", floors.H200).flops == 4 * case.floor("fwd", floors.H200).flops
    f = case.floor("fwd", floors.H200)
    t = 4 * triples(8192, "windowed", 512, 32)
    assert f.bound == "tensor" and f.flops == 4 * 128 * t and f.exps == t
    assert abs(f.ms - 4 * 128 * t / 790e12 * 1e3) < 1e-9


@pytest.mark.skipif(CUDA, reason="the CPU path through the harness (the GPU cases are in suite.txt)")
def test_a_case_runs_through_the_harness(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "kernels", "--device", "cpu",
                           "--set", "kernel=simplicial", "--set", "impl=fused", "--set", "dtype=fp32",
                           "--set", "heads=2", "--set", "head_dim=16", "--set", "w1=9", "--set", "w2=5",
                           "--seq-len", "16", "--passes", "1", "--out", str(out), "--plain", "--no-plot"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = [json.loads(line) for line in (out / "kernels.jsonl").read_text().splitlines()]
    assert row["ok"] and row["info"]["shape"] == {"B": 1, "n": 16, "H": 2, "d": 16, "w1": 9, "w2": 5}
    info = row["compile_info"]
    assert info["max_abs_err"] <= 3 * info["eager_same_dtype_max_abs_err"] + 1e-5 and info["max_abs_err"] < 1e-3


@pytest.mark.skipif(not CUDA, reason="PyPI simplicial-attention's kernel runs on CUDA only")
def test_the_anchor_agrees_where_it_applies():
    mod = pytest.importorskip("simplicial_attention.triton_two_simplicial_attention")
    x = _inputs(1, 300, 2, 64, torch.bfloat16)
    with torch.no_grad():
        ours = simplicial_attention(*x, w1=128, w2=32)
        theirs = mod.sliding_two_simplicial_attn(x[0], (x[1], x[2]), (x[3], x[4]), w1=128, w2=32, causal=True)
        ref64 = simplicial_reference(*(t.double() for t in x), w1=128, w2=32)
    assert (theirs.double() - ref64).abs().max() < 0.1 and (ours.double() - ref64).abs().max() < 0.1
