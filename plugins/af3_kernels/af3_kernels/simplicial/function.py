"""Fused 2-simplicial attention: the forward (kernels.py) behind one call.

    from af3_kernels.simplicial.function import simplicial_attention
    out = simplicial_attention(q, k1, k2, v1, v2, variant="windowed", w1=512, w2=32)   # [B, n, H, d]

q, k1, k2, v1, v2 and out are [B, n, H, d] (any strides: non-contiguous inputs are copied); the
semantics are reference.py's. fp32 dots at ``precision`` ("ieee" exact, or "tf32"); bf16 and fp16
on the tensor cores with fp32 accumulation and an fp32 softmax. With gradients
required the call goes through an autograd Function whose backward (kernels._simplicial_bwd)
recomputes the probabilities from the stored log-sum-exp and gives dq, dk1, dk2, dv1 and dv2
(the key gradients through fp32 atomic adds).
"""
from __future__ import annotations

import math
import os

import torch
import triton

from af3_kernels.simplicial import kernels
from af3_kernels.simplicial.limits import MAX_HEAD_DIM, VARIANTS

PRECISIONS = ("ieee", "tf32")
LOG2E = 1.4426950408889634


def launch_config(variant: str, n: int, d: int, w2: int, interp: bool) -> tuple[int, int, int, int]:
    """(GROUP, BLOCK_J, BLOCK_K, num_warps). Not tuned on a GPU yet: GROUP queries share each K1/V1
    tile they load (16 divides the L2 re-reads of the w1 window by 16); BLOCK_K covers a w2 window
    in one block up to 64. ``AF3_SIMPLICIAL_CONFIG=GROUP,BLOCK_J,BLOCK_K,WARPS`` overrides it."""
    override = os.environ.get("AF3_SIMPLICIAL_CONFIG")
    if override:
        g, bj, bk, wp = (int(x) for x in override.split(","))
        return g, bj, bk, wp
    if interp:  # small tiles: several blocks in every loop at the tests' shapes
        return 4, 16, 16, 1
    kspan = n if variant == "full" else min(w2, n)
    block_k = min(64, max(16, triton.next_power_of_2(kspan)))
    block_j = 64 if d <= 128 else 32
    return (16 if variant == "windowed" else 4), block_j, block_k, 4


def simplicial_attention(q, k1, k2, v1, v2, variant: str = "windowed", w1: int = 512, w2: int = 32,
                         precision: str = "ieee", config: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if q.dim() != 4 or any(t.shape != q.shape for t in (k1, k2, v1, v2)):
        raise ValueError("q, k1, k2, v1, v2 must share one shape [B, n, H, d], got "
                         + ", ".join(str(tuple(t.shape)) for t in (q, k1, k2, v1, v2)))
    if len({t.dtype for t in (q, k1, k2, v1, v2)}) != 1:
        raise ValueError("q, k1, k2, v1, v2 must share one dtype")
    if variant == "windowed" and (w1 < 1 or w2 < 1):
        raise ValueError("w1 and w2 must be at least 1")
    B, n, H, d = q.shape
    if d > MAX_HEAD_DIM:
        raise ValueError(f"the fused kernel handles head dims up to {MAX_HEAD_DIM}, got {d}")
    cfg = config or launch_config(variant, n, d, w2, os.environ.get("TRITON_INTERPRET", "0") == "1")
    args = (variant, min(w1, n), min(w2, n), precision, cfg)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k1, k2, v1, v2)):
        return _SimplicialFunction.apply(q, k1, k2, v1, v2, *args)
    out, _ = _forward(q, k1, k2, v1, v2, *args, store_lse=False)
    return out


def _common(q, variant, w1, w2, precision, cfg):
    B, n, H, d = q.shape
    group, block_j, block_k, warps = cfg
    interp = os.environ.get("TRITON_INTERPRET", "0") == "1"
    return dict(grid=(triton.cdiv(n, group), B * H),
                shape=(n, H, d, w1, w2, LOG2E / math.sqrt(d)),
                const=dict(FULL=variant == "full", GROUP=group, BLOCK_J=block_j, BLOCK_K=block_k,
                           BLOCK_D=max(16, triton.next_power_of_2(d)),
                           IN_PREC="tf32" if precision == "tf32" and q.dtype == torch.float32 else "ieee",
                           INTERP=interp, num_warps=1 if interp else warps))


def _forward(q, k1, k2, v1, v2, variant, w1, w2, precision, cfg, store_lse):
    """(out, lse [B*H, n] fp32 in log2 units, or None)."""
    q, k1, k2, v1, v2 = (t if t.is_contiguous() else t.contiguous() for t in (q, k1, k2, v1, v2))
    B, n, H, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((B * H, n), device=q.device, dtype=torch.float32) if store_lse else None
    if out.numel() == 0:
        return out, lse
    c = _common(q, variant, w1, w2, precision, cfg)
    kernels._simplicial_fwd[c["grid"]](
        q, k1, k2, v1, v2, out, lse if store_lse else out, *c["shape"], q.stride(0), q.stride(1), q.stride(2),
        STORE_LSE=store_lse, **c["const"])
    return out, lse


class _SimplicialFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k1, k2, v1, v2, variant, w1, w2, precision, cfg):
        q, k1, k2, v1, v2 = (t.contiguous() for t in (q, k1, k2, v1, v2))
        out, lse = _forward(q, k1, k2, v1, v2, variant, w1, w2, precision, cfg, store_lse=True)
        ctx.save_for_backward(q, k1, k2, v1, v2, out, lse)
        ctx.args = (variant, w1, w2, precision, cfg)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k1, k2, v1, v2, out, lse = ctx.saved_tensors
        variant, w1, w2, precision, cfg = ctx.args
        B, n, H, d = q.shape
        dout = dout.contiguous()
        delta = (dout.float() * out.float()).sum(-1).transpose(1, 2).reshape(B * H, n).contiguous()
        grads = [torch.zeros(q.shape, device=q.device, dtype=torch.float32) for _ in range(5)]
        if q.numel():
            if q.dtype == torch.float32 and d > 128 and not os.environ.get("AF3_SIMPLICIAL_CONFIG"):
                # fp32 tiles at d = 256, BLOCK_J = 32: 224 KB of shared memory on sm_90 (offline
                # compile), at Hopper's 227 KB limit; BLOCK_J = 16 halves the [BLOCK_J, d] tiles
                cfg = (cfg[0], min(cfg[1], 16), cfg[2], cfg[3])
            c = _common(q, variant, w1, w2, precision, cfg)
            kernels._simplicial_bwd[c["grid"]](
                q, k1, k2, v1, v2, dout, lse, delta, *grads, *c["shape"], 1 / math.sqrt(d),
                q.stride(0), q.stride(1), q.stride(2), **c["const"])
        return (*(g.to(q.dtype) for g in grads), None, None, None, None, None)


__all__ = ["simplicial_attention", "launch_config", "PRECISIONS"]
