"""Correctness of the fused triangle multiplicative update's forward (af3_kernels.tri_mul).

The bar of the other kernels: against a float64 reference, max abs error within 3x the same-dtype
PyTorch reference's (plus one unit in the last place of the dtype at the output's scale) and cosine
similarity at or above 0.999; inputs untouched. Without a GPU in Triton's interpreter on small odd
shapes; with one, the same compiled plus AF3's widths (c = h = 128) and bf16/fp16.
"""
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton", reason="the fused kernel needs triton")
CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":  # conftest.py sets it unless triton came first
    pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set: run the CPU tests "
                "with TRITON_INTERPRET=1 in the environment", allow_module_level=True)

from af3_kernels import registry  # noqa: E402
from af3_kernels.tri_mul.function import tri_mul  # noqa: E402
from af3_kernels.tri_mul.reference import VARIANTS, TriMulParams, tri_mul_reference  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}
#: (B, N, c, h, masked): odd N, N = 1, c != h, a batch; AF3's widths on the GPU
SHAPES = [(1, 7, 16, 8, False), (2, 9, 32, 16, True), (1, 1, 16, 8, True), (1, 13, 24, 40, True)]
if CUDA:
    SHAPES += [(1, 97, 128, 128, True), (2, 64, 128, 128, False), (1, 200, 128, 64, True)]
DTYPES = [torch.float32] + ([torch.bfloat16, torch.float16] if CUDA else [])


def _inputs(B, N, c, h, masked, dtype, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    p = TriMulParams.random(c, h, device=DEVICE, generator=g)
    z = torch.randn((B, N, N, c), device=DEVICE, generator=g)
    mask = (torch.rand((B, N, N), device=DEVICE, generator=g) < 0.8).float() if masked else None
    return z.to(dtype), None if mask is None else mask.to(dtype), p.to(dtype)


def _judge(out, ref64, same):
    err = (out.double() - ref64).abs().max().item()
    ref_err = (same.double() - ref64).abs().max().item()
    ulp = EPS[same.dtype] * ref64.abs().max().item()
    cos = torch.nn.functional.cosine_similarity(out.double().flatten(), ref64.flatten(), dim=0).item()
    assert torch.isfinite(out).all()
    assert err <= 3 * ref_err + ulp, f"max abs err {err:.3e} > 3 x eager's {ref_err:.3e} + {ulp:.1e}"
    assert cos >= 0.999, cos


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-N{}-c{}-h{}-{}".format(*s[:4], "mask" if s[4] else "nomask"))
def test_forward_matches_float64(shape, variant, dtype):
    z, mask, p = _inputs(*shape, dtype)
    before = z.clone()
    with torch.no_grad():
        out = tri_mul(z, mask, p, variant)
        ref64 = tri_mul_reference(z.double(), None if mask is None else mask.double(), p.to(torch.float64), variant)
        same = tri_mul_reference(z, mask, p, variant)
    assert out.shape == z.shape and out.dtype == z.dtype
    _judge(out, ref64, same)
    assert torch.equal(z, before)


def test_the_variants_differ_and_the_mask_matters():
    """outgoing and incoming on one input are different contractions, and masking changes the
    result: the checks above cannot pass by computing one thing for all."""
    z, mask, p = _inputs(1, 9, 16, 8, True, torch.float32)
    with torch.no_grad():
        out, inc = tri_mul(z, mask, p, "outgoing"), tri_mul(z, mask, p, "incoming")
        unmasked = tri_mul(z, None, p, "outgoing")
    assert (out - inc).abs().max() > 1e-2 and (out - unmasked).abs().max() > 1e-2


#: the training path at the shapes that keep the interpreter quick (all three ln_linear-sized)
GRAD_SHAPES = [(1, 5, 16, 8, True), (2, 6, 24, 16, False)] + ([(1, 64, 128, 128, True)] if CUDA else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=lambda s: "B{}-N{}-c{}-h{}-{}".format(*s[:4], "mask" if s[4] else "nomask"))
def test_every_gradient_matches_float64(shape, variant, dtype):
    """With gradients required, the update and the gradients of z and all 16 parameters against
    float64 autograd of the reference, under the same bar."""
    z, mask, p = _inputs(*shape, dtype, seed=3)
    dout = torch.randn(z.shape, device=DEVICE, generator=torch.Generator(device=DEVICE).manual_seed(4)).to(dtype)

    def grads(fn, z_, mask_, p_):
        leaves = [z_.detach().clone().requires_grad_(), *(t.detach().clone().requires_grad_() for t in p_.tensors())]
        q = TriMulParams(*leaves[1:], eps_in=p_.eps_in, eps_out=p_.eps_out)
        out = fn(leaves[0], mask_, q, variant)
        out.backward(dout.to(out.dtype))
        return [out.detach()] + [t.grad for t in leaves]

    got = grads(tri_mul, z, mask, p)
    want = grads(tri_mul_reference, z.double(), None if mask is None else mask.double(), p.to(torch.float64))
    eager = grads(tri_mul_reference, z, mask, p)
    for index, (a, b, e) in enumerate(zip(got, want, eager)):
        assert a.shape == e.shape and a.dtype == e.dtype, index
        _judge(a, b, e)


def test_bad_input_is_refused_with_a_clear_error():
    z, mask, p = _inputs(1, 5, 16, 8, True, torch.float32)
    with pytest.raises(ValueError, match="variant"):
        tri_mul(z, mask, p, "sideways")
    with pytest.raises(ValueError, match=r"\[B, N, N, c=16\]"):
        tri_mul(z[:, :, :4], None, p)
    with pytest.raises(ValueError, match="mask"):
        tri_mul(z, mask[:, :4], p)


@pytest.mark.skipif(not CUDA, reason="autocast of the engines' bf16 path: a CUDA GPU")
def test_under_autocast_it_follows_the_autocast_dtype():
    z, mask, p = _inputs(1, 64, 128, 128, True, torch.float32)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = tri_mul(z, mask, p)
        same = tri_mul_reference(z, mask, p)
    ref64 = tri_mul_reference(z.double(), mask.double(), p.to(torch.float64))
    assert out.dtype == torch.bfloat16
    _judge(out, ref64, same)


def test_registered_with_its_variants_and_forward_only_fused():
    spec = registry.kernel("tri_mul")
    assert set(spec.impls) >= {"fused", "torch", "compile"}
    base = {**registry.defaults(), "kernel": "tri_mul"}
    assert registry.validate({**base, "variant": "incoming"}, "cpu") == []
    (problem,) = registry.validate({**base, "variant": "tri_start"}, "cpu")
    assert "not a variant of tri_mul" in problem
    (problem,) = registry.validate({**base, "precision": "bf16x6"}, "cpu")
    assert "tri_mul supports precision auto, ieee, tf32" in problem
