"""Fused triangle multiplicative update: the forward an engine can swap in (inference).

    from af3_kernels.tri_mul.function import tri_mul
    update = tri_mul(z, mask, params, variant="outgoing")     # z [B, N, N, c] -> [B, N, N, c]

Four steps instead of the eager module's dozen ops and copies (reference.py has the math):
1. LayerNorm of z (torch) and ONE GEMM for the five projections a_p, a_g, b_p, b_g and the output
   gate g (their weights concatenated: [M, 4h + c]);
2. ``_gate_pack`` (kernels.py): a = mask * sigmoid(a_g) * a_p and b likewise, written channel-major
   [B, h, N, N];
3. the contraction as one batched GEMM over the h channels (cuBLAS; tensor cores in bf16/fp16, and
   in fp32 under TF32 as torch's matmul precision says): x = a b^T (outgoing), a^T b (incoming), read
   through transposed strides, never copied;
4. ``_ln_linear_gate``: LayerNorm over h, the output projection, its bias and sigmoid(g) in one kernel.

Under autocast the GEMMs run in the autocast dtype, as the eager module's linears do, and the
update comes out in that dtype.

With gradients required (training), the same math runs as differentiable pieces whose backward is
fused where the work is: both LayerNorm-Linear pairs through ``af3_kernels.ln_linear`` (its Triton
forward and backward), the gates as torch elementwise ops, the contraction as cuBLAS batched GEMMs
in both directions (autograd). Slower than the inference forward above (it keeps a and b for the
backward), and exact to the same bar.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton

from af3_kernels.tri_mul import kernels
from af3_kernels.tri_mul.reference import VARIANTS, TriMulParams

PRECISIONS = ("ieee", "tf32")
BLOCK_M_PACK, BLOCK_M_OUT = 64, 32


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check(z, mask, p, variant, precision):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if z.dim() != 4 or z.shape[1] != z.shape[2] or z.shape[-1] != p.c:
        raise ValueError(f"z must be [B, N, N, c={p.c}], got {tuple(z.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(z.shape[:-1]):
        raise ValueError(f"mask must be [B, N, N] = {tuple(z.shape[:-1])}, got {tuple(mask.shape)}")
    if p.h > 256 or p.c > 256:
        raise ValueError(f"hidden and pair channels up to 256 are supported, got h={p.h}, c={p.c}")


def projection(p: TriMulParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The five input-side projections stacked for one GEMM: [4h + c, c] and [4h + c]."""
    weight = torch.cat([p.a_p_w, p.a_g_w, p.b_p_w, p.b_g_w, p.g_w])
    bias = torch.cat([p.a_p_b, p.a_g_b, p.b_p_b, p.b_g_b, p.g_b])
    return weight, bias


def tri_mul(z: torch.Tensor, mask: torch.Tensor | None, p: TriMulParams, variant: str = "outgoing",
            precision: str = "ieee", weight: torch.Tensor | None = None,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """The update of z [B, N, N, c] (not added to z). ``precision``: the fp32 dot of the output
    projection ("ieee" or "tf32"; the contraction follows torch's matmul precision). ``weight``,
    ``bias``: :func:`projection` of p, when the caller keeps them."""
    _check(z, mask, p, variant, precision)
    if torch.is_grad_enabled() and (z.requires_grad or any(t.requires_grad for t in p.tensors())):
        return _trainable(z, mask, p, variant, precision)
    B, N, _, C = z.shape
    H, NN = p.h, N * N
    if weight is None:
        weight, bias = projection(p)
    zn = F.layer_norm(z, (C,), p.ln_in_w, p.ln_in_b, p.eps_in)
    proj = F.linear(zn, weight, bias).reshape(B * NN, 4 * H + C)  # autocast: in the autocast dtype
    dtype = proj.dtype
    interp = _interpreting()
    a = torch.empty((B, H, N, N), device=z.device, dtype=dtype)
    b = torch.empty_like(a)
    keep = mask.reshape(B * NN).to(torch.float32) if mask is not None else proj
    block_h = min(64, triton.next_power_of_2(H))
    kernels._gate_pack[(triton.cdiv(NN, BLOCK_M_PACK), triton.cdiv(H, block_h), B)](
        proj, keep, a, b, NN, H, proj.stride(0),
        HAS_MASK=mask is not None, BLOCK_M=BLOCK_M_PACK, BLOCK_H=block_h, INTERP=interp, num_warps=4)
    x = torch.matmul(a, b.transpose(-1, -2)) if variant == "outgoing" else torch.matmul(a.transpose(-1, -2), b)
    x = x.contiguous()  # [B, H, N, N]; cuBLAS writes it contiguous already
    out = torch.empty((B, N, N, C), device=z.device, dtype=dtype)
    kernels._ln_linear_gate[(triton.cdiv(NN, BLOCK_M_OUT), B)](
        x, proj, p.z_w.to(dtype), p.z_b, p.ln_out_w, p.ln_out_b, out, NN, H, C, proj.stride(0), 4 * H,
        p.eps_out, BLOCK_M=BLOCK_M_OUT, BLOCK_H=_dot_block(H), BLOCK_C=_dot_block(C),
        IN_PREC="tf32" if precision == "tf32" and dtype == torch.float32 else "ieee", INTERP=interp,
        num_warps=8 if not interp else 1)
    return out



def _trainable(z: torch.Tensor, mask: torch.Tensor | None, p: TriMulParams, variant: str,
               precision: str) -> torch.Tensor:
    """The update as differentiable pieces (module doc): two fused LayerNorm-Linears around the
    gates and the batched contraction."""
    from af3_kernels.ln_linear.function import ln_linear

    H, C = p.h, p.c
    weight, bias = projection(p)
    proj = ln_linear(z, p.ln_in_w, p.ln_in_b, weight, bias, p.eps_in, precision)  # [B, N, N, 4h + c]
    a_p, a_g, b_p, b_g, g = proj.split([H, H, H, H, C], dim=-1)
    keep = 1.0 if mask is None else mask.unsqueeze(-1).to(proj.dtype)
    a = (keep * torch.sigmoid(a_g) * a_p).permute(0, 3, 1, 2)  # [B, h, N, N]
    b = (keep * torch.sigmoid(b_g) * b_p).permute(0, 3, 1, 2)
    x = a @ b.transpose(-1, -2) if variant == "outgoing" else a.transpose(-1, -2) @ b
    y = ln_linear(x.permute(0, 2, 3, 1), p.ln_out_w, p.ln_out_b, p.z_w, p.z_b, p.eps_out, precision)
    return torch.sigmoid(g) * y


def _dot_block(n: int) -> int:
    """A tile side for a tl.dot operand: a power of two, at least 16 (the tensor cores' smallest K)."""
    return max(16, triton.next_power_of_2(n))


__all__ = ["tri_mul", "projection", "PRECISIONS"]
