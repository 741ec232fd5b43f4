"""Correctness of the fused MSA pair-weighted averaging kernel (af3_kernels.msa_pwa).

Judged as trifast does: against a float64 reference, the kernel's max abs error must stay within
3x the error of the same-dtype PyTorch reference (plus a small epsilon) and its cosine similarity
at or above 0.999 (or no worse than that reference's, where it falls below 0.999 itself), for the
output and the gradients of v, bias and g.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1) on tiny odd shapes;
with one, the same tests run compiled, plus larger shapes and a case needing 64-bit offsets.
Implementation choices travel as an MSAPWAOptions per call, never as module state (two tests wrap a
launch function with monkeypatch, undone after each), so the tests run in any order and in parallel
(pytest-xdist).
"""
import os
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="the fused kernel needs triton")
CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":  # conftest.py sets it unless triton came first
    pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set: run the CPU tests "
                "with TRITON_INTERPRET=1 in the environment", allow_module_level=True)

from af3_kernels.msa_pwa import gluon_split, launch, ops  # noqa: E402
from af3_kernels.msa_pwa.function import MSAWeightedAveragingFused, msa_pair_weighted_averaging  # noqa: E402
from af3_kernels.msa_pwa.options import MSAPWAOptions  # noqa: E402
from af3_kernels.msa_pwa.reference import msa_pwa_reference  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
# The "small epsilon": one unit in the last place of the dtype at the output's scale (fp32: a few).
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}

# (B, S, R, H, C): R and S from 1, C not a power of two, H from 1.
SMALL = [
    (1, 1, 1, 1, 1),
    (1, 2, 3, 1, 3),
    (2, 3, 5, 2, 7),
    (1, 1, 17, 3, 5),
    (1, 4, 16, 1, 12),
    (2, 2, 19, 2, 20),
    (1, 5, 33, 2, 3),
    (2, 3, 24, 2, 8),  # R % 8 == 0 but not a multiple of the j-block: TMA P, pointer-load v
]
LARGE = [  # compiled (GPU) only: several blocks in every dimension, odd tails
    (1, 128, 384, 8, 8),
    (2, 37, 129, 3, 24),
    (1, 7, 300, 5, 33),
    (1, 1, 1000, 4, 4),
    (1, 16, 200, 2, 8),  # TMA P with pointer-load v (200 % 64 != 0), in both layouts
]


#: NaN-fill every buffer the kernels should overwrite: an unwritten element fails the test.
POISON = MSAPWAOptions(poison_outputs=True)


def pwa(v, b, g, mask=None, options=POISON, **kw):
    """The fused call with poisoned buffers (unless ``options`` says otherwise)."""
    return msa_pair_weighted_averaging(v, b, g, mask, options=options, **kw)


def make_inputs(shape, dtype, masked, seed=0):
    B, S, R, H, C = shape
    gen = torch.Generator(DEVICE).manual_seed(seed)
    kw = dict(device=DEVICE, dtype=dtype, generator=gen)
    v = torch.randn((B, S, R, H, C), **kw)
    g = torch.randn((B, S, R, H, C), **kw)
    b = 2 * torch.randn((B, R, R, H), **kw)  # a spread-out softmax exercises the max subtraction
    dout = torch.randn((B, S, R, H * C), **kw)
    mask = None
    if masked:
        mask = torch.rand((B, R, R), device=DEVICE, generator=gen) < 0.7
        mask[0, R // 2, :] = False  # a fully masked row: uniform average, no bias gradient
    return v, b, g, dout, mask


def run(fn, v, b, g, dout, mask, dtype):
    """Output and (dv, dbias, dg) of ``fn`` with inputs cast to ``dtype``."""
    ins = [x.detach().to(dtype).requires_grad_() for x in (v, b, g)]
    out = fn(*ins, mask)
    grads = torch.autograd.grad(out, ins, dout.to(dtype))
    return [out.detach()] + [x.detach() for x in grads]


def assert_close_as_trifast(kernel, ref_same, ref64, dtype, what):
    names = ("out", "dv", "dbias", "dg")
    for name, k, r, r64 in zip(names, kernel, ref_same, ref64):
        assert k.shape == r64.shape, (what, name)
        k, r = k.double(), r.double()
        assert torch.isfinite(k).all(), f"{what} {name}: non-finite values (unwritten or overflow)"
        # Inputs are of unit scale: the epsilon never falls below one unit in the dtype's last place
        # (dbias at R=1 is exactly zero in float64, and only rounding separates the others from it).
        scale = max(r64.abs().max().item(), 1.0)
        err, ref_err = (k - r64).abs().max().item(), (r - r64).abs().max().item()
        bound = 3 * ref_err + EPS[dtype] * scale
        assert err <= bound, f"{what} {name}: max abs error {err:.3e} > {bound:.3e} (eager {ref_err:.3e})"
        if r64.norm() > 0:
            cos = torch.nn.functional.cosine_similarity(k.flatten(), r64.flatten(), dim=0).item()
            # 0.999, unless the same-dtype eager reference cannot reach it either: tiny bf16 cases
            # (R=3, one dominant j per row: dbias is all cancellation) leave eager itself at 0.992,
            # or at 0 where both round a tiny gradient to zero. Then: no worse than eager.
            ref_cos = torch.nn.functional.cosine_similarity(r.flatten(), r64.flatten(), dim=0).item()
            need = min(0.999, ref_cos - 1e-3)
            assert cos >= need, f"{what} {name}: cosine similarity {cos:.6f} < {need:.6f} (eager {ref_cos:.6f})"


def check(shape, dtype, masked, p_mode="auto", precision="ieee", layout="auto", options=POISON):
    v, b, g, dout, mask = make_inputs(shape, dtype, masked)
    originals = [x.clone() for x in (v, b, g, dout)] + ([mask.clone()] if masked else [])

    def fused(v_, b_, g_, m_):
        return pwa(v_, b_, g_, m_, p_mode=p_mode, precision=precision, layout=layout, options=options)

    kernel = run(fused, v, b, g, dout, mask, dtype)
    ref_same = run(msa_pwa_reference, v, b, g, dout, mask, dtype)
    ref64 = run(msa_pwa_reference, v, b, g, dout, mask, torch.float64)
    assert_close_as_trifast(kernel, ref_same, ref64, dtype, f"{shape} {dtype} mask={masked} {p_mode} {layout}")
    for before, after in zip(originals, [v, b, g, dout] + ([mask] if masked else [])):
        assert torch.equal(before, after), "an input was modified"


@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("layout", ["flat", "gemm"])
def test_matches_float64_reference(shape, dtype, masked, layout):
    # Alternate the two ways of handling P so both code paths meet every kind of shape and layout.
    p_mode = "recompute" if (SMALL.index(shape) + masked + (layout == "gemm")) % 2 else "stored"
    check(shape, dtype, masked, p_mode=p_mode, layout=layout)


@pytest.mark.parametrize("p_mode", ["stored", "recompute"])
def test_fp16(p_mode):
    check((1, 3, 21, 2, 6), torch.float16, True, p_mode=p_mode)


@pytest.mark.skipif(not CUDA, reason="large shapes run only compiled, on a CUDA GPU")
@pytest.mark.parametrize("shape", LARGE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("p_mode,layout", [("stored", "gemm"), ("recompute", "flat")])
def test_large_on_gpu(shape, dtype, masked, p_mode, layout):
    check(shape, dtype, masked, p_mode=p_mode, layout=layout)


# One head with long channel pieces: dP = dY' V^T sums S*C products per (i, j). Summed in one
# running fp32 accumulator (the GPU's FMA dot) its error outgrew 3x eager's at S*C = 8192 and up
# (H200, C = 64 and 128); MSAPWAOptions.compensated_dbias. The interpreter's dot already sums each
# n-block apart (numpy), so the CPU sizes only run the compensated code; the GPU sizes are the failing ones.
LONG_N_CPU = [((1, 2, 20, 1, 128), False), ((2, 3, 13, 1, 64), True)]  # (shape, masked)
LONG_N_GPU = [(shape, masked) for shape in [(1, 128, 384, 1, 64), (1, 128, 384, 1, 128), (1, 512, 128, 1, 128),
                                            (1, 128, 200, 2, 64)] for masked in (False, True)]


@pytest.mark.parametrize("shape,masked", LONG_N_CPU + LONG_N_GPU,
                         ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else ("mask" if x else "nomask"))
@pytest.mark.parametrize("precision", ["ieee", "bf16x6"])
def test_fp32_bias_gradient_over_long_reductions(shape, masked, precision):
    """fp32 at one head and large C: the bias gradient (and the rest) within the fp32 bar, at both
    fp32-class precisions (ieee: the FMA dot with n-major operands; bf16x6: tensor cores)."""
    if (shape, masked) in LONG_N_GPU and not CUDA:
        pytest.skip("S*C of 8192 and more: compiled on a GPU only (the interpreter sums n-blocks apart anyway)")
    if precision == "bf16x6" and not CUDA:
        pytest.skip("tensor-core precisions exist only on a GPU")
    check(shape, torch.float32, masked, precision=precision)


@pytest.mark.parametrize("shape", [(2, 3, 19, 2, 8), (1, 5, 33, 3, 5), (1, 3, 40, 2, 8)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_layouts_agree_exactly(shape, dtype):
    """The two operand layouts change only where the forward reads v from, not the arithmetic."""
    v, b, g, _, mask = make_inputs(shape, dtype, True)
    flat = pwa(v, b, g, mask, layout="flat")
    gemm = pwa(v, b, g, mask, layout="gemm")
    assert torch.equal(flat, gemm)


@pytest.mark.parametrize("shape,p_mode", [((2, 3, 19, 2, 6), "stored"), ((1, 4, 21, 3, 5), "recompute")],
                         ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else x)
@pytest.mark.parametrize("dtype,precision", [(torch.bfloat16, "ieee"), (torch.float32, "bf16x6")], ids=["bf16", "fp32"])
def test_gemm_layout_in_backward_changes_no_bit(monkeypatch, shape, p_mode, dtype, precision):
    """MSAPWAOptions.gemm_layout_in_backward: after a forward that read v in place, the backward
    reads dY' and a copy of v in the gemm layout (one copy, made in the backward). The operands
    change address only: output and gradients are the same bit for bit."""
    copies = []
    real = launch.to_gemm_layout
    monkeypatch.setattr(launch, "to_gemm_layout",
                        lambda *a, **kw: copies.append(kw.get("nmajor", False)) or real(*a, **kw))
    v, b, g, dout, mask = make_inputs(shape, dtype, True)
    results = []
    for on in (False, True):
        options = MSAPWAOptions(poison_outputs=True, gemm_layout_in_backward=on)
        results.append(run(lambda *a: pwa(*a, precision=precision, p_mode=p_mode, options=options), v, b, g, dout,
                           mask, dtype))
    assert copies == [False]  # none without the option (flat forward), one gemm copy of v with it
    for off, on in zip(*results):
        assert torch.equal(off, on)


# The call the issue asks to compile, and two variants: a float mask requiring grad (fp32: the FMA
# path's n-major dbias), options with a backward-only gemm layout (bf16), a gemm-layout forward
# whose stored P is rebuilt in the backward (keep_p_for_backward=False).
COMPILE_CASES = {
    "fp32-floatmask": (torch.float32, "float", "auto", "auto", None),
    "bf16-bwdgemm": (torch.bfloat16, "bool", "auto", "recompute",
                     MSAPWAOptions(poison_outputs=True, gemm_layout_in_backward=True)),
    "fp32-gemm-rebuiltP": (torch.float32, None, "gemm", "stored",
                           MSAPWAOptions(poison_outputs=True, keep_p_for_backward=False)),
}


@pytest.mark.parametrize("case", sorted(COMPILE_CASES))
def test_torch_compile_fullgraph_matches_eager(monkeypatch, case):
    """torch.compile(fullgraph=True) of the public call runs the custom ops of ops.py (not the
    autograd Function): output and gradients equal eager's bit for bit (the same launches), the
    options reach the launches, a float mask requiring grad gets no gradient, and under no_grad the
    compiled forward keeps nothing for a backward."""
    dtype, mask_kind, layout, p_mode, options = COMPILE_CASES[case]
    torch._dynamo.reset()
    calls = {"backward": 0, "prep": 0, "forward": []}
    real_backward, real_prep, real_forward = launch.backward, launch.backward_prep, launch.forward

    def count(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(launch, "backward", count("backward", real_backward))
    monkeypatch.setattr(launch, "backward_prep", count("prep", real_prep))
    monkeypatch.setattr(launch, "forward", lambda *a: calls["forward"].append((a[-2], a[-1])) or real_forward(*a))
    v, b, g, dout, mask = make_inputs((2, 3, 17, 2, 4), dtype, mask_kind is not None)
    if mask_kind == "float":
        mask = mask.float().requires_grad_()
    if options is None:
        def fn(v, b, g, m):
            return msa_pair_weighted_averaging(v, b, g, m)
    else:
        def fn(v, b, g, m):
            return msa_pair_weighted_averaging(v, b, g, m, layout=layout, p_mode=p_mode, options=options)
    eager = run(fn, v, b, g, dout, mask, dtype)
    assert calls["backward"] == 1 and calls["prep"] == 1
    compiled = torch.compile(fn, fullgraph=True)
    got = run(compiled, v, b, g, dout, mask, dtype)
    assert calls["backward"] == 1 and calls["prep"] == 2, "the compiled call did not run the custom ops"
    for name, e, c in zip(("out", "dv", "dbias", "dg"), eager, got):
        assert torch.equal(e, c), name
    if options is not None:
        assert all(o == options for _, o in calls["forward"]), "the options did not reach the launch"
    if mask_kind == "float":
        assert mask.grad is None
    with torch.no_grad():
        out = compiled(*(x.detach().requires_grad_() for x in (v, b, g)), mask)
    assert calls["forward"][-1][0] is False and not out.requires_grad
    assert torch.equal(out, eager[0])


def test_custom_ops_pass_opcheck():
    """torch.library.opcheck on the three custom ops: schema, autograd registration, the fake
    (shape-only) implementations against the real ones, AOT dispatch with dynamic shapes."""
    key = POISON.key
    v, b, g, dout, mask = make_inputs((1, 2, 6, 2, 3), torch.float32, True)
    ins = [x.detach().requires_grad_() for x in (v, b, g)]
    for stored, gemm in ((True, False), (False, True)):
        torch.library.opcheck(ops.msa_pwa_fwd, (*ins, mask, "ieee", stored, gemm, True, gemm, key))
    _, m2, l2, _, y, p = ops.msa_pwa_fwd(v, b, g, mask, "ieee", True, False, True, True, key)
    for dy_gemm, nmajor in ((False, True), (True, False)):
        torch.library.opcheck(ops.msa_pwa_bwd_prep, (dout, y, g, dy_gemm, nmajor, key))
        dy, _, d, dyn = ops.msa_pwa_bwd_prep(dout, y, g, dy_gemm, nmajor, key)
        torch.library.opcheck(ops.msa_pwa_bwd_gemms, (dy, dyn if nmajor else None, d, v, None, b, mask, m2, l2, p,
                                                      "ieee", True, False, dy_gemm, True, True, key))


def test_launch_order_falls_back_past_the_grid_limit():
    """Heads first puts the tile counts on the grid's limited y and z axes: past 65535 tiles the
    launch must use the other order, and tell the kernel so."""
    assert launch.grid(8, 3, 16) == ((16, 3, 8), {"HEADS_FIRST": True})
    assert launch.grid(70000, 3, 16) == ((70000, 3, 16), {"HEADS_FIRST": False})
    assert launch.grid(8, 3, 16, heads_first=False) == ((8, 3, 16), {"HEADS_FIRST": False})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_launch_orders_agree_exactly(dtype):
    """Both launch orders give the same output and gradients: each program decodes the tile it was
    launched for, whichever order launch.grid picked. (S*C = 24 spans at most two n-blocks, so the
    atomically accumulated D sums at most two terms and cannot round differently between orders;
    R = 40 makes the row and n tile counts differ, so a program decoding the wrong axis misses tiles
    and leaves poisoned output.)"""
    v, b, g, dout, mask = make_inputs((2, 3, 40, 3, 8), dtype, True)
    results = []
    for heads_first in (True, False):
        options = MSAPWAOptions(poison_outputs=True, heads_first=heads_first)
        results.append(run(lambda *a: pwa(*a, layout="gemm", options=options), v, b, g, dout, mask, dtype))
    for first, last in zip(*results):
        assert torch.equal(first, last)


def test_config_overrides_reach_the_launch():
    """An override replaces a kernel's whole configuration, for one call only."""
    over = dict(BLOCK_I=32, BLOCK_J=16, BLOCK_N=16, num_warps=4, num_stages=1)
    options = POISON.with_overrides(fwd=over, dv=over)
    assert launch.config("fwd", torch.float32, "ieee", options) == {**launch.config("fwd", torch.float32, "ieee"),
                                                                     **over}
    assert POISON.config_overrides == {}
    check((1, 2, 37, 2, 4), torch.float32, True, p_mode="recompute", layout="flat", options=options)


# Max abs error of the output relative to its largest value, against float64, for the tensor-core
# precisions that do not reach fp32's bar: tf32 keeps a 10-bit mantissa, the 3-product splits lose
# the small cross terms.
LOOSE_PRECISION_BAR = {"tf32": 5e-3, "tf32x3": 1e-5, "bf16x3": 1e-4}


@pytest.mark.skipif(not CUDA, reason="tensor-core precisions exist only on a GPU")
@pytest.mark.parametrize("precision", sorted(LOOSE_PRECISION_BAR))
def test_fp32_tensor_core_precisions(precision):
    """TF32 paths and bf16x3 are judged against float64 with a looser bar."""
    v, b, g, dout, mask = make_inputs((1, 64, 200, 4, 8), torch.float32, False)
    out = pwa(v, b, g, precision=precision)
    ref = msa_pwa_reference(v.double(), b.double(), g.double())
    rel = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert rel < LOOSE_PRECISION_BAR[precision], rel


@pytest.mark.skipif(not CUDA, reason="tensor-core precisions exist only on a GPU")
@pytest.mark.parametrize("shape", SMALL + LARGE, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("gluon", [True, False], ids=["gluon", "triton"])
def test_fp32_bf16x6_meets_the_fp32_bar(monkeypatch, shape, masked, gluon):
    """bf16x6 (each fp32 operand split into three bf16 parts, six tensor-core products) is held to
    exact fp32's bar: within 3x eager fp32's error against float64 (plus 1e-6 of the scale), for
    the output and all three gradients, odd shapes and the mask included. Both forwards: the Gluon
    one (gluon_split, Hopper's default) and Triton's tl.dot."""
    if gluon:
        ok, why = gluon_split.available()
        if not ok:
            pytest.skip(f"Gluon bf16x6 forward unavailable: {why}")
        calls = []
        real = gluon_split.forward
        monkeypatch.setattr(gluon_split, "forward", lambda *a: calls.append(1) or real(*a))
    options = MSAPWAOptions(poison_outputs=True, use_gluon_split_forward=gluon)
    check(shape, torch.float32, masked, precision="bf16x6", options=options)
    if gluon:
        assert calls, "the Gluon forward was not used"
    # the forward alone (no fp32 y kept) to the same bar
    v, b, g, _, mask = make_inputs(shape, torch.float32, masked)
    with torch.no_grad():
        out = pwa(v, b, g, mask, precision="bf16x6", options=options)
        ref64 = msa_pwa_reference(v.double(), b.double(), g.double(), mask)
        ref_err = (msa_pwa_reference(v, b, g, mask).double() - ref64).abs().max().item()
    err = (out.double() - ref64).abs().max().item()
    assert err <= 3 * ref_err + EPS[torch.float32] * max(ref64.abs().max().item(), 1.0), (err, ref_err)


def _offline_ptx(script, *args):
    """stdout of ``script`` run by this Python in a process without TRITON_INTERPRET."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# Compiles the bf16x6 forward for sm_90 and prints its PTX. In a process of its own: with
# TRITON_INTERPRET=1 (the CPU tests) this process's kernels are interpreter functions.
_COMPILE_BF16X6 = """
import sys, torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from af3_kernels.msa_pwa import kernels, launch
fn = kernels._fwd_kernel
cfg = {k: v for k, v in launch.config("fwd", torch.float32, "bf16x6").items() if k.isupper()}
const = dict(H=8, C=8, HAS_MASK=False, P_STORED=True, V_GEMM=False, STORE_Y=False, IN_PREC="bf16x6",
             HEADS_FIRST=True, INTERP=False, HEADS=1, WAIT_PRIOR=False, **cfg)
names = fn.arg_names
sig = {n: "constexpr" if n in const else ("*u8" if n == "mask_ptr" else "*fp32" if n.endswith("_ptr") else "i32")
       for n in names}
# what the launcher specializes for R = 384, S = 128 and aligned tensors
attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n.endswith("_ptr") or n in ("S", "R")}
src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
print(cfg)
print(triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4, num_stages=3)).asm["ptx"])
"""


def test_fp32_bf16x6_forward_compiles_to_bf16_tensor_cores():
    """Compiled offline for sm_90 (no GPU needed): the bf16x6 forward's dots are bf16 wgmma, six per
    16-deep k-step (hi*hi, hi*mid, mid*hi, mid*mid, hi*lo, lo*hi), and no fp32 FMA is left. Guards
    against a Triton that drops the precision or falls back to FMA."""
    import ast
    import re

    first, ptx = _offline_ptx(_COMPILE_BF16X6).split("\n", 1)
    cfg = ast.literal_eval(first)
    wgmma = re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16\.f32\.bf16\.bf16", ptx)
    assert wgmma, "no bf16 wgmma in the bf16x6 forward"
    per_k_step = cfg["BLOCK_I"] // 64 * cfg["BLOCK_N"] // int(wgmma[0])  # instructions per product
    assert len(wgmma) == 6 * per_k_step * cfg["BLOCK_J"] // 16, (len(wgmma), cfg)
    assert not re.findall(r"\bfma\.rn\.f32\b", ptx)


# Compiles a Gluon kernel for sm_90 and prints its PTX. In a process of its own, like the bf16x6
# compile above: Triton's interpreter, once it has run kernels in this process (the CPU tests),
# leaves triton.language's tensor methods patched, and Gluon's code generator then fails on them.
_COMPILE_GLUON = """
import importlib, json, sys, triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
module, kernel, const, options = json.loads(sys.argv[1])
fn = getattr(importlib.import_module(module), kernel)
names = fn.arg_names
sig = {n: "constexpr" if n in const else ("*fp32" if n.endswith("_ptr") else "i32") for n in names}
# what the launcher specializes for R = 384, S = 128 and aligned tensors
attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names if n.endswith("_ptr") or n in ("S", "R")}
src = GluonASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
print(triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"])
"""


def _gluon_ptx(module, kernel, const, options):
    import json

    return _offline_ptx(_COMPILE_GLUON, json.dumps([module.__name__, kernel, const, options]))


def test_gluon_bf16x6_forward_compiles_for_hopper():
    """Compiled offline for sm_90 (no GPU needed): per 16-deep k-step the Gluon bf16x6 forward
    issues its six bf16 wgmma as one batch with a single wait (Triton's own bf16x6 waits after each),
    fits its register cap (three 8-warp programs per SM) and leaves no fp32 FMA."""
    if gluon_split._IMPORT_ERROR is not None:
        pytest.skip(f"no Gluon with wgmma here: {gluon_split._IMPORT_ERROR}")
    import re

    cfg = dict(gluon_split.DEFAULT_CONFIG)
    options = dict(num_warps=cfg.pop("num_warps"), maxnreg=cfg.pop("maxnreg"))
    const = dict(H=8, C=8, STORE_Y=True, HEADS_FIRST=True, **cfg)
    ptx = _gluon_ptx(gluon_split, "_fwd_bf16x6_kernel", const, options)
    wgmma = re.findall(r"wgmma\.mma_async\.sync\.aligned\.m64n(\d+)k16\.f32\.bf16\.bf16", ptx)
    assert wgmma and int(wgmma[0]) == cfg["BLOCK_N"], wgmma
    assert len(wgmma) == 6 * cfg["BLOCK_K"] // 16  # one k-step of the loop
    assert len(re.findall(r"wgmma\.wait_group", ptx)) == 1
    assert re.search(rf"\.maxnreg {options['maxnreg']}\b", ptx)
    assert not re.findall(r"\bfma\.rn\.f32\b", ptx)


def test_mask_broadcasts_and_matches_ligo_additive_mask():
    """A [R, R] mask broadcasts over B; on rows not fully masked it equals Ligo's additive
    ``b + 1e8 * (mask - 1)``; a fully masked row is the plain average of v, gated."""
    shape = (2, 3, 18, 2, 5)
    B, S, R, H, C = shape
    v, b, g, _, mask = make_inputs(shape, torch.float32, True)
    pair = mask[0]
    full = R // 2  # make_inputs masks this row entirely
    assert not pair[full].any() and pair.sum(1)[torch.arange(R) != full].min() > 0
    ours = pwa(v, b, g, pair)
    ligo = pwa(v, b + 1e8 * (pair.float() - 1)[None, :, :, None], g)
    rows = torch.arange(R, device=DEVICE) != full
    torch.testing.assert_close(ours[:, :, rows], ligo[:, :, rows], rtol=1e-5, atol=1e-5)
    uniform = torch.sigmoid(g[:, :, full]) * v.mean(dim=2)
    torch.testing.assert_close(ours[:, :, full], uniform.reshape(B, S, H * C), rtol=1e-5, atol=1e-5)
    as_float = pwa(v, b, g, pair[None].float())
    torch.testing.assert_close(ours, as_float, rtol=0, atol=0)


@pytest.mark.parametrize("others_require_grad", [True, False], ids=["vbg", "mask_only"])
def test_float_mask_requiring_grad(others_require_grad):
    """A float mask that requires grad (made by a differentiable computation) is not differentiable
    here, as in the reference (which compares it with 0): its gradient is None. With v, b and g
    requiring grad their gradients meet the bar; with the mask alone the backward has nothing to do
    (it used to unpack tensors the forward had not saved: "not enough values to unpack")."""
    shape, dtype = (2, 3, 18, 2, 5), torch.float32
    v, b, g, dout, mask = make_inputs(shape, dtype, True)
    fmask = mask.float().requires_grad_()
    if others_require_grad:
        kernel = run(lambda *a: pwa(*a[:3], fmask), v, b, g, dout, mask, dtype)
        ref_same = run(msa_pwa_reference, v, b, g, dout, mask, dtype)
        ref64 = run(msa_pwa_reference, v, b, g, dout, mask, torch.float64)
        assert_close_as_trifast(kernel, ref_same, ref64, dtype, "float mask requiring grad")
        ins = [x.detach().requires_grad_() for x in (v, b, g)]
        pwa(*ins, fmask).backward(dout)
        assert all(x.grad is not None for x in ins)
    else:
        out = pwa(v, b, g, fmask)
        torch.testing.assert_close(out, msa_pwa_reference(v, b, g, mask), rtol=1e-5, atol=1e-6)
        out.backward(dout)
    assert fmask.grad is None


def test_module_is_a_drop_in_for_ligo_call():
    """Same call as Ligo's ``MSAWeightedAveragingFused(v, b, g)``: [B,S,R,H,C], [B,R,R,H] -> [B,S,R,H*C]."""
    v, b, g, _, _ = make_inputs((1, 2, 9, 3, 4), torch.float32, False)
    out = MSAWeightedAveragingFused(options=POISON)(v, b, g)
    assert out.shape == (1, 2, 9, 12)
    torch.testing.assert_close(out, msa_pwa_reference(v, b, g), rtol=1e-5, atol=1e-6)


def test_only_requested_gradients():
    v, b, g, dout, _ = make_inputs((1, 2, 9, 2, 3), torch.float32, False)
    b.requires_grad_()
    out = pwa(v, b, g)
    (db,) = torch.autograd.grad(out, (b,), dout)
    b64 = b.detach().double().requires_grad_()
    (db64,) = torch.autograd.grad(msa_pwa_reference(v.double(), b64, g.double()), (b64,), dout.double())
    torch.testing.assert_close(db.double(), db64, rtol=1e-4, atol=1e-5)


def test_second_backward_is_a_clear_error():
    """The fp32 intermediate is released by the first backward (peak memory): a second backward
    through the same graph says so instead of computing from freed memory."""
    v, b, g, dout, _ = make_inputs((1, 2, 9, 2, 3), torch.float32, False)
    v.requires_grad_()
    out = pwa(v, b, g)
    torch.autograd.grad(out, (v,), dout, retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        torch.autograd.grad(out, (v,), dout)


@pytest.mark.parametrize("bad", ["bias_shape", "dtype_mix", "rank", "layout"])
def test_rejects_bad_inputs(bad):
    v, b, g, _, _ = make_inputs((1, 2, 5, 2, 3), torch.float32, False)
    if bad == "layout":
        with pytest.raises(ValueError, match="layout"):
            pwa(v, b, g, layout="rows")
        return
    if bad == "bias_shape":
        b = b[:, :4]
    elif bad == "dtype_mix":
        b = b.to(torch.bfloat16)
    else:
        v, g = v[0], g[0]
    with pytest.raises(ValueError):
        pwa(v, b, g)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU with about 10 GB free")
def test_int64_offsets_on_gpu():
    """B*R*R*H > 2**31: bias and dbias offsets overflow int32 unless computed in int64."""
    B, S, R, H, C = 1, 1, 16400, 8, 8
    if torch.cuda.get_device_properties(0).total_memory < 40e9:
        pytest.skip("needs a GPU with at least 40 GB")
    v, b, g, dout, _ = make_inputs((B, S, R, H, C), torch.bfloat16, False)
    assert B * R * R * H > 2**31
    ins = [x.requires_grad_() for x in (v, b, g)]
    out = pwa(*ins, p_mode="recompute", options=MSAPWAOptions())
    dv, db, dg = torch.autograd.grad(out, ins, dout)
    rows = slice(R - 40, R)  # the last rows sit past 2**31 elements into the bias
    b64 = b.detach()[:, rows].double().requires_grad_()
    w = torch.softmax(b64, dim=2)
    y = torch.einsum("bijh,bsjhc->bsihc", w, v.detach().double())
    ref = (torch.sigmoid(g.detach()[:, :, rows].double()) * y).reshape(B, S, -1, H * C)
    (db_ref,) = torch.autograd.grad(ref, (b64,), dout[:, :, rows].double())
    assert (out[:, :, rows].double() - ref).abs().max().item() < 2e-2
    assert (db[:, rows].double() - db_ref).abs().max().item() < 2e-2 * max(db_ref.abs().max().item(), 1e-3)


def test_no_grad_keeps_nothing_for_a_backward(monkeypatch):
    """Under torch.no_grad() the forward keeps no fp32 y (nor P) for a backward, even for inputs
    that require grad (autograd's needs_input_grad still says True there); with grad mode on it does."""
    kept = []
    forward = launch.forward
    # launch.forward(v, bias, g, mask_u8, mstrides, precision, stored, gemm, keep_y, opts)
    monkeypatch.setattr(launch, "forward", lambda *args: kept.append(args[-2]) or forward(*args))
    v, b, g, dout, _ = make_inputs((1, 2, 9, 2, 4), torch.float32, False)
    v.requires_grad_()
    with torch.no_grad():
        out = pwa(v, b, g)
    assert kept == [False] and not out.requires_grad
    out = pwa(v, b, g)
    assert kept == [False, True] and out.requires_grad
    torch.autograd.grad(out, v, dout)
