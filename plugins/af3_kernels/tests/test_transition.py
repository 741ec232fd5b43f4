"""Correctness of the fused Transition's forward (af3_kernels.transition), under the bar of the
other kernels: against float64, max abs error within 3x the same-dtype eager error plus one ulp at
the output's scale, cosine >= 0.999; inputs untouched. Triton's interpreter on small shapes without
a GPU; compiled, at AF3's widths and in bf16/fp16 and autocast with one.
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
from af3_kernels.transition.function import transition  # noqa: E402
from af3_kernels.transition.reference import TransitionParams, transition_reference  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
EPS = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}
#: (leading shape, c, n): rows not a multiple of the block, hidden not a multiple of the block
SHAPES = [((3, 5), 16, 4), ((2, 7, 7), 32, 2), ((1,), 24, 4), ((70,), 48, 3)]
if CUDA:
    SHAPES += [((1, 97, 97), 128, 4), ((1, 64, 64), 128, 2), ((300,), 256, 4)]
DTYPES = [torch.float32] + ([torch.bfloat16, torch.float16] if CUDA else [])


def _judge(out, ref64, same):
    err = (out.double() - ref64).abs().max().item()
    ref_err = (same.double() - ref64).abs().max().item()
    ulp = EPS[same.dtype] * ref64.abs().max().item()
    cos = torch.nn.functional.cosine_similarity(out.double().flatten(), ref64.flatten(), dim=0).item()
    assert err <= 3 * ref_err + ulp, f"max abs err {err:.3e} > 3 x eager's {ref_err:.3e} + {ulp:.1e}"
    assert cos >= 0.999, cos


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{'x'.join(map(str, s[0]))}-c{s[1]}-n{s[2]}")
def test_forward_matches_float64(shape, dtype):
    lead, c, n = shape
    g = torch.Generator(device=DEVICE).manual_seed(0)
    p = TransitionParams.random(c, n, device=DEVICE, generator=g).to(dtype)
    x = torch.randn((*lead, c), device=DEVICE, generator=g).to(dtype)
    before = x.clone()
    with torch.no_grad():
        out = transition(x, p)
        _judge(out, transition_reference(x.double(), p.to(torch.float64)), transition_reference(x, p))
    assert out.shape == x.shape and out.dtype == dtype and torch.equal(x, before)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{'x'.join(map(str, s[0]))}-c{s[1]}-n{s[2]}")
def test_every_gradient_matches_float64(shape, dtype):
    """The backward (recomputing a and b, partial sums over two shares of the rows in the
    interpreter) against float64 autograd of the reference, under the same bar, for dx and all five
    parameters."""
    lead, c, n = shape
    g = torch.Generator(device=DEVICE).manual_seed(2)
    p = TransitionParams.random(c, n, device=DEVICE, generator=g).to(dtype)
    x = torch.randn((*lead, c), device=DEVICE, generator=g).to(dtype)
    dout = torch.randn((*lead, c), device=DEVICE, generator=g).to(dtype)

    def grads(fn, x_, p_):
        leaves = [x_.detach().clone().requires_grad_(), *(t.detach().clone().requires_grad_() for t in p_.tensors())]
        fn(leaves[0], TransitionParams(*leaves[1:], eps=p_.eps)).backward(dout.to(x_.dtype))
        return [t.grad for t in leaves]

    got = grads(transition, x, p)
    want = grads(transition_reference, x.double(), p.to(torch.float64))
    eager = grads(transition_reference, x, p)
    for name, a, b, e in zip(("dx", "dln_w", "dln_b", "dw1", "dw2", "dw3"), got, want, eager):
        assert a.shape == e.shape and a.dtype == e.dtype, name
        _judge(a, b, e)


def test_every_weight_reaches_the_output():
    """Zeroing one weight matrix changes the result: the check above cannot pass with a branch missing."""
    g = torch.Generator(device=DEVICE).manual_seed(1)
    p = TransitionParams.random(16, 4, device=DEVICE, generator=g)
    x = torch.randn((5, 16), device=DEVICE, generator=g)
    with torch.no_grad():
        out = transition(x, p)
        for name in ("w1", "w2", "w3"):
            q = TransitionParams(*p.tensors())
            setattr(q, name, torch.zeros_like(getattr(p, name)))
            assert (transition(x, q) - out).abs().max() > 1e-3, name


def test_bad_input_is_refused_with_a_clear_error():
    p = TransitionParams.random(16, 2, device=DEVICE)
    with pytest.raises(ValueError, match="c=16"):
        transition(torch.zeros((3, 8), device=DEVICE), p)
    with pytest.raises(ValueError, match="up to 256"):
        transition(torch.zeros((3, 384), device=DEVICE), TransitionParams.random(384, 1, device=DEVICE))


@pytest.mark.skipif(not CUDA, reason="autocast of the engines' bf16 path: a CUDA GPU")
def test_under_autocast_it_follows_the_autocast_dtype():
    p = TransitionParams.random(128, 4, device=DEVICE)
    x = torch.randn((4096, 128), device=DEVICE)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out, same = transition(x, p), transition_reference(x, p)
    assert out.dtype == torch.bfloat16
    _judge(out, transition_reference(x.double(), p.to(torch.float64)), same)


def test_registered_and_wide_pairs_refused_at_plan_time():
    base = {**registry.defaults(), "kernel": "transition"}
    assert registry.validate(base, "cpu") == []
    (problem,) = registry.validate({**base, "pair_dim": 384}, "cpu")
    assert "pair_dim" in problem
    (problem,) = registry.validate({**base, "precision": "tf32x3"}, "cpu")
    assert "transition supports precision" in problem


# Compiles the forward kernel for sm_90a at every launch configuration function.launch_config picks,
# and the backward kernels at function._backward_config's,
# and prints the shared memory each asks for. In a process of its own, without TRITON_INTERPRET.
_COMPILE_SM90 = """
import json, torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from af3_kernels.transition import function, kernels
fn, out = kernels._transition_fwd, {}
FP32_PTRS = ("x_ptr", "lnw_ptr", "lnb_ptr", "dlnw_part_ptr", "dlnb_part_ptr", "dw1_part_ptr", "dw2_part_ptr",
             "dw3_part_ptr")


def shared(fn, name, const, warps, stages):
    sig = {n: "constexpr" if n in const else ("*fp32" if n in FP32_PTRS else "*" + name)
           if n in const or n.endswith("_ptr") else ("fp32" if n == "eps" else "i32") for n in fn.arg_names}
    src = ASTSource(fn, sig, constexprs={(fn.arg_names.index(k),): v for k, v in const.items()})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages)
                          ).metadata.shared


for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
    for c in (32, 64, 128, 256):
        prec = "tf32" if name == "fp32" else "ieee"
        block_m, block_h, stages, warps, _ = function.launch_config(dtype, c)
        const = dict(BLOCK_M=block_m, BLOCK_C=triton.next_power_of_2(c), BLOCK_H=block_h, IN_PREC=prec, INTERP=False)
        out[f"fwd-{name}-c{c}"] = shared(fn, name, const, warps, stages)
        block_m, block_h, warps = function._backward_config(dtype, c)
        const = dict(BLOCK_M=block_m, BLOCK_C=triton.next_power_of_2(c), BLOCK_H=block_h, IN_PREC=prec, INTERP=False)
        for kernel in (kernels._transition_bwd_dx, kernels._transition_bwd_dw):
            out[f"{kernel.fn.__name__[12:]}-{name}-c{c}"] = shared(kernel, name, const, warps, 2)
print(json.dumps(out))
"""


def test_every_launch_configuration_fits_hopper_shared_memory(sm90_shared):
    from af3_kernels.transition.function import SHARED_LIMIT

    shared = sm90_shared(_COMPILE_SM90)
    assert len(shared) == 24 and all(v <= SHARED_LIMIT for v in shared.values()), shared
