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
    dtype = compute_dtype(x)
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in p.tensors())):
        return TransitionFunction.apply(x, p.ln_w, p.ln_b, p.w1, p.w2, p.w3, p.eps, precision, dtype)
    return _forward(x, p, precision, dtype)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _in_prec(precision: str, dtype: torch.dtype) -> str:
    return "tf32" if precision == "tf32" and dtype == torch.float32 else "ieee"


def _rows(x: torch.Tensor, c: int) -> torch.Tensor:
    rows = x.reshape(-1, c)
    return rows if rows.stride(-1) == 1 and rows.stride(0) == c else rows.contiguous()


def _forward(x: torch.Tensor, p: TransitionParams, precision: str, dtype: torch.dtype) -> torch.Tensor:
    rows = _rows(x, p.c)
    M = rows.shape[0]
    out = torch.empty((M, p.c), device=x.device, dtype=dtype)
    interp = _interpreting()
    block_m, block_h, stages, warps, layout = launch_config(dtype, p.c)
    w1, w2, w3 = weights(p, dtype, layout)
    kernels._transition_fwd[(triton.cdiv(M, block_m),)](
        rows, p.ln_w, p.ln_b, w1, w2, w3, out, M, p.c, p.hidden, p.eps,
        w1.stride(0), w1.stride(1), w3.stride(0), w3.stride(1),
        BLOCK_M=block_m, BLOCK_C=triton.next_power_of_2(p.c), BLOCK_H=block_h,
        IN_PREC=_in_prec(precision, dtype), INTERP=interp,
        num_warps=1 if interp else warps, num_stages=stages)
    return out.reshape(*x.shape[:-1], p.c)


def _backward_config(dtype: torch.dtype, c: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_H, num_warps) of both backward kernels: a row block holds all c channels and
    the output gradient beside them, so wide rows get smaller blocks. Not yet tuned on a GPU."""
    if _interpreting():
        return 16, 16, 1
    if dtype == torch.float32 and c > 128:
        return 16, 16, 4  # larger blocks ask for more than Hopper's shared memory (tests/test_transition.py)
    if dtype == torch.float32 or c > 128:
        return 32, 32, 8
    return 64, 32, 8


class TransitionFunction(torch.autograd.Function):
    """The fused forward, and a backward that recomputes what the forward kept on chip (the
    LayerNorm statistics, a and b) instead of saving the n*c-wide activations: two kernels, the
    input gradient per row block and the weight gradients per hidden block over shares of the
    rows, reduced through partial sums (no atomics)."""

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, w1, w2, w3, eps, precision, dtype):
        p = TransitionParams(ln_w, ln_b, w1, w2, w3, eps)
        ctx.save_for_backward(x, ln_w, ln_b, w1, w2, w3)
        ctx.meta = (eps, precision, dtype)
        return _forward(x, p, precision, dtype)

    @staticmethod
    def backward(ctx, dout):
        x, ln_w, ln_b, w1, w2, w3 = ctx.saved_tensors
        eps, precision, dtype = ctx.meta
        p = TransitionParams(ln_w, ln_b, w1, w2, w3, eps)
        C, HID = p.c, p.hidden
        rows = _rows(x, C)
        M = rows.shape[0]
        dout = dout.reshape(M, C).to(dtype).contiguous()
        wm1, wm2, wm3 = weights(p, dtype, "module")  # the backward reads the module layout
        bm, bh, warps = _backward_config(dtype, C)
        interp, prec, block_c = _interpreting(), _in_prec(precision, dtype), triton.next_power_of_2(C)
        gm = triton.cdiv(M, bm)
        dx = torch.empty((M, C), device=x.device, dtype=x.dtype)
        dlnw_part = torch.empty((gm, C), device=x.device, dtype=torch.float32)
        dlnb_part = torch.empty_like(dlnw_part)
        kernels._transition_bwd_dx[(gm,)](rows, ln_w, ln_b, wm1, wm2, wm3, dout, dx, dlnw_part, dlnb_part,
                                          M, C, HID, eps, BLOCK_M=bm, BLOCK_C=block_c, BLOCK_H=bh,
                                          IN_PREC=prec, INTERP=interp, num_warps=warps)
        gh = triton.cdiv(HID, bh)
        # shares of the rows so that hidden blocks x shares fill the GPU about twice (two in the
        # interpreter, so that the CPU tests cover the reduction)
        if interp:
            splits = min(2, gm)
        else:
            sms = torch.cuda.get_device_properties(x.device).multi_processor_count
            splits = max(1, min(gm, (2 * sms) // gh))
        per_split = triton.cdiv(triton.cdiv(M, splits), bm) * bm
        splits = triton.cdiv(M, per_split)
        parts = [torch.empty((splits, HID, C), device=x.device, dtype=torch.float32) for _ in range(3)]
        kernels._transition_bwd_dw[(gh, splits)](rows, ln_w, ln_b, wm1, wm2, wm3, dout, *parts, M, C, HID, eps,
                                                 per_split, BLOCK_M=bm, BLOCK_C=block_c, BLOCK_H=bh,
                                                 IN_PREC=prec, INTERP=interp, num_warps=warps)
        dw1, dw2, dw3t = (part.sum(0) for part in parts)
        return (dx.reshape(x.shape), dlnw_part.sum(0).to(ln_w.dtype), dlnb_part.sum(0).to(ln_b.dtype),
                dw1.to(w1.dtype), dw2.to(w2.dtype), dw3t.t().to(w3.dtype), None, None, None)


def weights(p: TransitionParams, dtype: torch.dtype, layout: str) -> tuple[torch.Tensor, ...]:
    """W_1, W_2 [HID, C] and W_3 [C, HID] in ``dtype``, as the module holds them ("module") or
    stored transposed ("t": W_1^T, W_2^T [C, HID] and W_3^T [HID, C] contiguous, read as the
    same logical matrices through their strides), so the kernel's tiles read whole rows."""
    ws = [w.to(dtype) for w in (p.w1, p.w2, p.w3)]
    if layout == "t":
        return tuple(w.t().contiguous().t() for w in ws)
    return tuple(w.contiguous() for w in ws)


__all__ = ["transition", "TransitionFunction", "compute_dtype", "launch_config", "PRECISIONS", "MAX_C",
           "SHARED_LIMIT"]
