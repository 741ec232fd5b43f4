"""Fused Evoformer attention: the public call, its autograd Function and an nn.Module.

    from af3_kernels.evo_attn.function import evo_attention, EvoformerAttention

    out = evo_attention(q, k, v, bias, mask, gate, variant="tri_start")

    out[..., i, h, :] = sum_j softmax_j(scale * q_i . k_j + bias[b, h, i, j] | mask) v_j   (* sigmoid(gate))

Layouts (heads after the sequence dims: what a Linear projection followed by ``.view(..., H, D)``
produces, so no transpose is needed before the call; reference.py has the full table):

    tri_start, tri_end   q, k, v, gate [B, N, N, H, D]   bias [B, H, N, N]   mask [B, N, N]
    msa_row              q, k, v, gate [B, S, N, H, D]   bias [B, H, N, N]   mask [B, S, N]
    msa_col              q, k, v, gate [B, S, N, H, D]   (no bias)           mask [B, S, N]
    single               q, k, v, gate [B, N, H, D]      bias [B, H, N, N]   mask [B, N]

out has q's shape (a new contiguous tensor). tri_start attends along dim 2 (row i over keys j);
tri_end along dim 1, reading the same [B, N, N, H, D] tensors through transposed strides (no
copy): tri_end(q, k, v, bias, mask) == tri_start(q^T, k^T, v^T, bias, mask^T)^T with ^T swapping
dims 1 and 2. msa_col is msa_row's transpose likewise (attention over S within a column).

Any strides are read in place as long as the head dim is contiguous (otherwise that tensor is
copied first), e.g. q, k, v sliced from one fused projection, or heads-first tensors passed as
``x.transpose(-2, -3)``. The bias may broadcast over B (a [1, H, L, L] bias); the mask (nonzero =
keep) may broadcast to its shape, and may be of any dtype. ``scale`` defaults to D**-0.5.

Mask semantics (reference.py): masked keys get weight exactly 0; a fully masked row outputs 0 and
passes no gradient. Inputs are never written. Gradients: q, k, v, bias (reduced over the rows
sharing it, inside the kernels) and gate. fp32 dots: ``precision`` "ieee" (exact, FMA units),
"tf32", "tf32x3", "bf16x3", "bf16x6" (tensor cores; GPU); 16-bit inputs always multiply in their
own dtype on tensor cores with fp32 accumulation.
"""
from __future__ import annotations

import torch

from af3_kernels.evo_attn import launch
from af3_kernels.evo_attn.options import DEFAULT_OPTIONS, EvoAttnOptions
from af3_kernels.evo_attn.reference import VARIANTS, mask_rows_view, rows_view

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _head_contiguous(x):
    """x itself when its last (head) dim is contiguous, else a contiguous copy (never written)."""
    if x is None or x.stride(-1) == 1 or x.shape[-1] == 1:
        return x
    return x.contiguous()


def _check(q, k, v, bias, gate, variant, precision, scale=None):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    rank = 4 if variant == "single" else 5
    if q.dim() != rank:
        raise ValueError(f"variant {variant}: q, k, v must have {rank} dims, got q of shape {tuple(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape or (gate is not None and gate.shape != q.shape):
        raise ValueError(f"q, k, v (and gate) must share one shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}" + ("" if gate is None else f", {tuple(gate.shape)}"))
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in _FLOATS:
        raise ValueError(f"q, k, v must share one dtype of fp32, bf16, fp16; got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, x in (("bias", bias), ("gate", gate)):
        if x is not None and x.dtype not in _FLOATS:
            raise ValueError(f"{name} must be fp32, bf16 or fp16, not {x.dtype}")
        if x is not None and x.device != q.device:
            raise ValueError(f"{name} is on {x.device}, q on {q.device}")
    if q.shape[-1] > 256:
        raise ValueError(f"head dim {q.shape[-1]} > 256 is not supported")
    if scale is not None and not float(scale) > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    if precision not in launch.PRECISIONS:
        raise ValueError(f"precision must be one of {launch.PRECISIONS}, not {precision!r}")


def _bias_view(bias, B, H, L):
    """The bias broadcast to [B, H, L, L] (a view), its last dim contiguous (copied if it is not)."""
    if bias is None:
        return None
    try:
        view = torch.broadcast_to(bias, (B, H, L, L))
    except RuntimeError:
        raise ValueError(f"bias must be broadcastable to [B, H, L, L] = {(B, H, L, L)}, "
                         f"got {tuple(bias.shape)}") from None
    return view if view.stride(3) == 1 or L == 1 else view.contiguous()


class EvoAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias=None, mask=None, gate=None, variant="tri_start", scale=None,
                precision="ieee", grad_enabled=True, options=DEFAULT_OPTIONS):
        _check(q, k, v, bias, gate, variant, precision, scale)
        if not isinstance(options, EvoAttnOptions):
            raise TypeError(f"options must be an EvoAttnOptions, not {type(options).__name__}")
        q, k, v, gate = (_head_contiguous(x) for x in (q, k, v, gate))
        qv, kv, vv, gv = (rows_view(x, variant) for x in (q, k, v, gate))
        B, R, L, H, D = qv.shape
        scale = D ** -0.5 if scale is None else float(scale)
        keep = mask_rows_view(mask.to(q.device) if mask is not None else None, variant, q.shape[:-2])
        keep = keep.view(torch.uint8) if keep is not None else None
        biasv = _bias_view(bias, B, H, L)
        prec = precision if q.dtype == torch.float32 else "ieee"
        # needs_input_grad follows requires_grad even under torch.no_grad(): the caller's grad mode
        # decides whether the ungated output is kept for a backward
        training = grad_enabled and any(ctx.needs_input_grad[i] for i in (0, 1, 2, 3, 5))
        out = launch.new(q.shape, q.dtype, q.device, options)
        o = launch.new(q.shape, q.dtype, q.device, options) if gate is not None and training else None
        lse = launch.new((B, H, R, L), torch.float32, q.device, options)
        poly = options.poly_exp_rows if q.dtype != torch.float32 else 0
        launch.forward(qv, kv, vv, biasv, keep, gv, rows_view(out, variant), rows_view(o, variant), lse, scale,
                       prec, poly, options)
        if training:
            ctx.save_for_backward(q, k, v, bias, keep, gate, o if o is not None else out, lse)
        ctx.variant, ctx.scale, ctx.precision, ctx.options = variant, scale, prec, options
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, bias, keep, gate, o, lse = ctx.saved_tensors
        variant, opts = ctx.variant, ctx.options
        need_q, need_k, need_v, need_b, _, need_g = ctx.needs_input_grad[:6]
        dout = _head_contiguous(dout)
        qv = rows_view(q, variant)
        B, R, L, H, D = qv.shape
        grads = {name: launch.new(q.shape, x.dtype, q.device, opts) if wanted else None
                 for name, x, wanted in (("q", q, need_q), ("k", k, need_k), ("v", v, need_v))}
        doe = dg = None
        if gate is not None:
            doe = launch.new(q.shape, q.dtype, q.device, opts)
            dg = launch.new(q.shape, gate.dtype, q.device, opts)
        dbias = launch.backward(
            rows_view(dout, variant), qv, rows_view(k, variant), rows_view(v, variant), _bias_view(bias, B, H, L),
            keep, rows_view(gate, variant), rows_view(o, variant), lse, ctx.scale, ctx.precision,
            (need_q, need_k, need_v, need_b), *(rows_view(grads[n], variant) for n in "qkv"),
            rows_view(doe, variant), rows_view(dg, variant), opts)
        if dbias is not None and dbias.shape != bias.shape:  # a bias broadcast over B
            dbias = dbias.sum_to_size(bias.shape)
        return (grads["q"], grads["k"], grads["v"], dbias, None, dg if need_g else None,
                None, None, None, None, None)


def evo_attention(q, k, v, bias=None, mask=None, gate=None, *, variant: str = "tri_start", scale: float | None = None,
                  precision: str = "ieee", options: EvoAttnOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Fused attention of ``variant`` (layouts in the module docstring) -> out of q's shape."""
    return EvoAttentionFunction.apply(q, k, v, bias, mask, gate, variant, scale, precision, torch.is_grad_enabled(),
                                      options)


class EvoformerAttention(torch.nn.Module):
    """The attention core an engine can swap in for its softmax(q k^T * scale + bias + mask) v.

    ``forward(q, k, v, bias=None, mask=None, gate=None)`` takes the projected q, k, v (and the gate
    logits) in the variant's layout of the module docstring, heads after the sequence dims
    ([B, N, N, H, D] for triangle attention), and returns out in the same layout, ready for the
    output projection after ``.reshape(..., H * D)``. From OpenFold/Ligo-style heads-first tensors
    [B, I, H, J, D], pass ``x.transpose(-2, -3)`` (a view: no copy). The mask is the raw pair/MSA
    mask (1 = keep), not an additive bias: pass it as ``mask=`` rather than adding ``1e9*(mask-1)``
    to the bias. No parameters.
    """

    def __init__(self, variant: str = "tri_start", scale: float | None = None, precision: str = "ieee",
                 options: EvoAttnOptions = DEFAULT_OPTIONS):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        self.variant, self.scale, self.precision, self.options = variant, scale, precision, options

    def forward(self, q, k, v, bias=None, mask=None, gate=None):
        return evo_attention(q, k, v, bias, mask, gate, variant=self.variant, scale=self.scale,
                             precision=self.precision, options=self.options)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, precision={self.precision!r}"


__all__ = ["EvoAttentionFunction", "EvoformerAttention", "evo_attention"]
