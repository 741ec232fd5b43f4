"""Fused Transition: the forward an engine can swap in (inference).

    from af3_kernels.transition.function import transition
    update = transition(x, params)            # x [..., c] -> [..., c]

One Triton kernel (kernels.py): LayerNorm, both projections, SiLU gating and the output projection,
with the n*c-wide activation kept on chip. Under autocast the products run in the autocast dtype
and the result comes out in it, as the eager module's linears do; fp32 dots at ``precision``
("ieee", or "tf32" as torch's matmul precision "high"). Widths up to MAX_C channels (AF3's pair
c = 128; the single representation's 384 stays with the eager module). Forward only: with
gradients required it raises.
"""
from __future__ import annotations

import os

import torch
import triton

from af3_kernels.transition import kernels
from af3_kernels.transition.limits import MAX_C
from af3_kernels.transition.reference import TransitionParams

PRECISIONS = ("ieee", "tf32")
#: Hopper's shared memory per block (227 KB on an H100 and an H200), less a margin for Triton's own
SHARED_LIMIT = 200 * 1024


def launch_config(dtype: torch.dtype, c: int) -> tuple[int, int, int, int, str]:
    """(BLOCK_M, BLOCK_H, num_stages, num_warps, weight layout of :func:`weights`). The hidden loop
    pipelines three weight tiles per stage, so fp32 needs narrower tiles and fewer stages: at
    (64, 64, 3) an fp32 c = 128 kernel asks for 320 KB of shared memory and fails to launch on an
    H100 (seen in a Ligo paper trunk run). tests/test_transition.py compiles every configuration for
    sm_90 and checks it fits SHARED_LIMIT. ``AF3_TRANSITION_CONFIG=BM,BH,STAGES,WARPS,LAYOUT``
    overrides it (the configuration sweep)."""
    override = os.environ.get("AF3_TRANSITION_CONFIG")
    if override:
        bm, bh, st, wp, layout = override.split(",")
        return int(bm), int(bh), int(st), int(wp), layout
    # c <= 128 (AF3's pair width): the fastest of a sweep at N = 768 on an H100 (docs/BENCHMARKS.md,
    # "Engines on af3 kernels"); wider: fitted to shared memory, not swept.
    if dtype == torch.float32:
        return (128, 32, 1, 8, "t") if c <= 128 else (32, 32, 2, 8, "module")
    return (64, 64, 2, 4, "t") if c <= 128 else (64, 32, 2, 8, "module")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the eager module's linears would run in: autocast's, else x's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def transition(x: torch.Tensor, p: TransitionParams, precision: str = "ieee") -> torch.Tensor:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if x.shape[-1] != p.c:
        raise ValueError(f"x must end in c={p.c} channels, got {tuple(x.shape)}")
    if p.c > MAX_C:
        raise ValueError(f"the fused transition handles up to {MAX_C} channels, got {p.c}")
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in p.tensors())):
        raise NotImplementedError("the fused transition is forward-only (inference): call it under torch.no_grad(), "
                                  "or use af3_kernels.transition.reference for training")
    dtype = compute_dtype(x)
    rows = x.reshape(-1, p.c)
    if rows.stride(-1) != 1 or rows.stride(0) != p.c:
        rows = rows.contiguous()
    M = rows.shape[0]
    out = torch.empty((M, p.c), device=x.device, dtype=dtype)
    interp = os.environ.get("TRITON_INTERPRET", "0") == "1"
    block_m, block_h, stages, warps, layout = launch_config(dtype, p.c)
    w1, w2, w3 = weights(p, dtype, layout)
    kernels._transition_fwd[(triton.cdiv(M, block_m),)](
        rows, p.ln_w, p.ln_b, w1, w2, w3, out, M, p.c, p.hidden, p.eps,
        w1.stride(0), w1.stride(1), w3.stride(0), w3.stride(1),
        BLOCK_M=block_m, BLOCK_C=triton.next_power_of_2(p.c), BLOCK_H=block_h,
        IN_PREC="tf32" if precision == "tf32" and dtype == torch.float32 else "ieee", INTERP=interp,
        num_warps=1 if interp else warps, num_stages=stages)
    return out.reshape(*x.shape[:-1], p.c)


def weights(p: TransitionParams, dtype: torch.dtype, layout: str) -> tuple[torch.Tensor, ...]:
    """W_1, W_2 [HID, C] and W_3 [C, HID] in ``dtype``, as the module holds them ("module") or
    stored transposed ("t": W_1^T, W_2^T [C, HID] and W_3^T [HID, C] contiguous, read as the
    same logical matrices through their strides), so the kernel's tiles read whole rows."""
    ws = [w.to(dtype) for w in (p.w1, p.w2, p.w3)]
    if layout == "t":
        return tuple(w.t().contiguous().t() for w in ws)
    return tuple(w.contiguous() for w in ws)


__all__ = ["transition", "compute_dtype", "launch_config", "PRECISIONS", "MAX_C", "SHARED_LIMIT"]
