"""MSA pair-weighted averaging with gating (AlphaFold 3, Algorithm 10), fused: the public call.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j softmax_j(bias[b,i,j,h] | mask) * v[b,s,j,h,:]

    v, g: [B,S,R,H,C]    bias: [B,R,R,H]    mask: broadcastable to [B,R,R] (nonzero = keep)
    out:  [B,S,R,H*C]    (the layout Ligo's MSAPairWeightedAveraging feeds to its output projection)

Mask semantics: a masked pair's logit is *replaced* by -1e9. A partly masked row ignores its masked
columns, as with Ligo's additive ``b + 1e8*(mask-1)``; a fully masked row averages uniformly. (In
Ligo's additive form such a row is left to fp32 rounding: -1e8 + b rounds to multiples of 8, so
the weights there follow the rounding, not the bias. Only fully masked rows differ.)

fp32 dots: FMA ("ieee", exact products); "bf16x6" splits each operand into three bf16 parts for
the tensor cores (fp32-class error, faster on Ampere and newer; on Hopper its forward is the Gluon
kernel of gluon_split.py); "bf16x3" / "tf32x3" / "tf32" trade accuracy for speed. The kernels are
in kernels.py, their launches in launch.py, the implementation choices in options.py.

Under torch.compile (fullgraph=True included) the call becomes the custom ops of ops.py, which run
the same launches; eager calls go through the autograd Function below.
"""
from __future__ import annotations

import torch

from af3_kernels.msa_pwa import launch, ops
from af3_kernels.msa_pwa.options import DEFAULT_OPTIONS, MSAPWAOptions


def _check(v, bias, g):
    if v.dim() != 5 or g.shape != v.shape:
        raise ValueError(f"v and g must be [B,S,R,H,C] of one shape, got {tuple(v.shape)} and {tuple(g.shape)}")
    B, S, R, H, C = v.shape
    if tuple(bias.shape) != (B, R, R, H):
        raise ValueError(f"bias must be [B,R,R,H] = {(B, R, R, H)}, got {tuple(bias.shape)}")
    if not (v.dtype == g.dtype == bias.dtype):
        raise ValueError(f"v, bias and g must share a dtype, got {v.dtype}, {bias.dtype}, {g.dtype}")
    if v.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {v.dtype}")


def _plan(v, bias, g, precision, p_mode, layout, options, training):
    """Checks, then the choices both paths hand the launches: (precision of the dots, P stored,
    forward's gemm copy of v, dY' in the gemm layout)."""
    _check(v, bias, g)
    if precision not in launch.PRECISIONS:
        raise ValueError(f"precision must be one of {launch.PRECISIONS}, not {precision!r}")
    if not isinstance(options, MSAPWAOptions):
        raise TypeError(f"options must be an MSAPWAOptions, not {type(options).__name__}")
    B, S, R, H, C = v.shape
    prec = precision if v.dtype == torch.float32 else "ieee"  # only matters for fp32 operands
    stored = launch.use_stored_p(p_mode, B, H, R, v.dtype, options)
    gemm = launch.use_gemm_layout(layout, v.dtype, S, C, training, options)
    dy_gemm = gemm or launch.use_gemm_layout_in_backward(layout, v.dtype, prec, C, gemm, training, options)
    return prec, stored, gemm, dy_gemm


class MSAPairWeightedAveragingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, bias, g, mask=None, precision="ieee", p_mode="auto", layout="auto", grad_enabled=True,
                options=DEFAULT_OPTIONS):
        # needs_input_grad follows requires_grad even under torch.no_grad(): the caller's grad mode
        # decides whether the fp32 y and P are kept (H100 fp32 (128, 384, 8), inputs that require
        # grad under no_grad: 81.6 -> 74.5 us)
        training = grad_enabled and any(ctx.needs_input_grad[:3])
        prec, stored, gemm, dy_gemm = _plan(v, bias, g, precision, p_mode, layout, options, training)
        B, S, R, H, C = v.shape
        # .contiguous() is a no-op for the usual inputs and never writes into the caller's tensor.
        v, bias, g = v.contiguous(), bias.contiguous(), g.contiguous()
        mask_u8, mstrides = launch.prepare_mask(mask, B, R, v.device)
        out, m2, l2, vop, y, p = launch.forward(v, bias, g, mask_u8, mstrides, prec, stored, gemm, training, options)
        if training:
            # P (stored mode: R*R*H, the size of the softmax eager autograd keeps) saves the backward
            # a second softmax pass (H100 fp32 fwd+bwd (128, 384, 8): about 10 us of 300).
            ctx.save_for_backward(v, vop, bias, g, m2, l2, mask_u8, p if options.keep_p_for_backward else None)
            # y (fp32, S*R*H*C) is an intermediate kept on ctx, not saved: the backward drops it
            # after its first kernel, before dv, dbias and P are allocated, so it adds nothing to
            # the backward's peak. A second backward through the same graph cannot have it.
            ctx.y = y
        ctx.training = training
        ctx.mstrides, ctx.precision, ctx.stored, ctx.gemm, ctx.options = mstrides, prec, stored, gemm, options
        ctx.dy_gemm = dy_gemm
        return out

    @staticmethod
    def backward(ctx, dout):
        # one slot per forward input; the mask and the settings have no gradient
        none = (None,) * 6
        if not ctx.training:
            # Autograd calls this when only the mask requires grad (a float mask from a
            # differentiable computation): the forward kept nothing, and no gradient is owed.
            return (None, None, None) + none
        v, vop, bias, g, m2, l2, mask_u8, p = ctx.saved_tensors
        if ctx.y is None:
            raise RuntimeError("msa_pair_weighted_averaging supports one backward per forward: its fp32 "
                               "intermediate is freed by the first (retain_graph=True does not keep it)")
        y_owner, ctx.y = [ctx.y], None  # handed over: launch.backward drops the last reference early
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        dv, dbias, dg = launch.backward(dout, v, vop, bias, g, y_owner, mask_u8, ctx.mstrides, m2, l2,
                                        ctx.precision, ctx.stored, ctx.gemm, need, ctx.options, p,
                                        dy_gemm=ctx.dy_gemm)
        return (dv, dbias, (dg if ctx.needs_input_grad[2] else None)) + none


def msa_pair_weighted_averaging(v, b, g, mask=None, *, precision="ieee", p_mode="auto", layout="auto",
                                options: MSAPWAOptions = DEFAULT_OPTIONS):
    """Functional form: ``v, g [B,S,R,H,C]``, ``b [B,R,R,H]``, optional pair ``mask`` -> ``[B,S,R,H*C]``.

    ``precision`` applies to fp32 inputs: "ieee" (exact fp32 FMA), "bf16x6" (each operand split
    into three bf16 parts, six tensor-core products: fp32-class error, the fastest fp32-accurate
    choice on Ampere and newer), "bf16x3" (two parts, three products: about 1e-5 relative error),
    "tf32x3" (three TF32 passes, close to fp32) or "tf32". ``p_mode``: "stored" keeps the softmax
    P in a [B,H,R,R] buffer between kernels, "recompute" rebuilds it in registers (least memory),
    "auto" stores it while small.
    ``layout``: the GEMMs read v (and dY') where they are ("flat") or from a [B,H,R,S*C] copy
    ("gemm"); "auto" picks the gemm copy for short channel pieces at large S (see
    launch.use_gemm_layout). ``options``: the implementation choices (options.py); the defaults
    are the measured best.
    The mask is not differentiable (a float mask that requires grad gets no gradient). Inside
    torch.compile the call is traced to the custom ops of ops.py (same launches, same results).
    """
    if torch.compiler.is_compiling():  # traced by torch.compile: the custom ops of ops.py
        training = torch.is_grad_enabled() and (v.requires_grad or b.requires_grad or g.requires_grad)
        prec, stored, gemm, dy_gemm = _plan(v, b, g, precision, p_mode, layout, options, training)
        return ops.apply(v, b, g, mask, prec, stored, gemm, training, dy_gemm, options)
    return MSAPairWeightedAveragingFunction.apply(v, b, g, mask, precision, p_mode, layout, torch.is_grad_enabled(),
                                                  options)


class MSAWeightedAveragingFused(torch.nn.Module):
    """Drop-in for Ligo's ``MSAWeightedAveragingFused(v, b, g)`` (same arguments, same output layout).

    Ligo adds its pair mask to ``b`` before the call; passing ``mask=`` instead lets the kernel apply
    it without materialising the masked bias.
    """

    def __init__(self, precision: str = "ieee", p_mode: str = "auto", layout: str = "auto",
                 options: MSAPWAOptions = DEFAULT_OPTIONS):
        super().__init__()
        self.precision = precision
        self.p_mode = p_mode
        self.layout = layout
        self.options = options

    def forward(self, v, b, g, mask=None):
        return msa_pair_weighted_averaging(v, b, g, mask, precision=self.precision, p_mode=self.p_mode,
                                           layout=self.layout, options=self.options)
