"""Fused LayerNorm -> Linear: the forward and backward an engine can swap in.

    from af3_kernels.ln_linear.function import ln_linear
    y = ln_linear(x, ln_w, ln_b, w, b=None, eps=1e-5)      # x [..., k] -> [..., n]

Three Triton kernels (kernels.py): the forward never writes the normalised rows; the backward
recomputes them from two saved numbers per row and reduces the parameter gradients through
per-block partial sums (no atomics). Under autocast the product runs in the autocast dtype and the
result comes out in it, as ``nn.Linear`` under autocast does; the LayerNorm statistics are fp32.
fp32 products at ``precision`` ("ieee", or "tf32" as torch's matmul precision "high"). Input widths
up to MAX_K (the whole row is one tile: AF3's 128 pair and 384 single channels fit).
"""
from __future__ import annotations

import os

import torch
import triton

from af3_kernels.ln_linear import kernels
from af3_kernels.ln_linear.limits import MAX_K

PRECISIONS = ("ieee", "tf32")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _block(n: int) -> int:
    """A tile side for a tl.dot operand: a power of two, at least 16 (the smallest K of the tensor cores)."""
    return max(16, triton.next_power_of_2(n))


#: Pipeline stages of the forward (Triton's default on a GPU) and of the two backward kernels: with
#: three, the fp32 backward of a 384- or 512-wide row asks 272 KiB of shared memory, more than a
#: Hopper SM has (227 KiB).
FWD_STAGES, BWD_STAGES = 3, 2


def _config(K: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): the row tile holds all K channels, so wide rows get fewer of them."""
    if _interpreting():
        return 16, 16, 1
    wide = K > 128 or dtype == torch.float32
    return (32 if wide else 64), 64, 8 if wide else 4


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _prec(precision: str, dtype: torch.dtype) -> str:
    return "tf32" if precision == "tf32" and dtype == torch.float32 else "ieee"


class LnLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, ln_w, ln_b, w, b, eps, precision, dtype):
        K, N = x.shape[-1], w.shape[0]
        rows = x.reshape(-1, K).contiguous()
        M = rows.shape[0]
        wc = w.to(dtype).contiguous()
        out = torch.empty((M, N), device=x.device, dtype=dtype)
        mean = torch.empty(M, device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        bm, bn, warps = _config(K, dtype)
        kernels._fwd[(triton.cdiv(M, bm), triton.cdiv(N, bn))](
            rows, ln_w, ln_b, wc, b if b is not None else wc, out, mean, rstd, M, N, K, eps,
            HAS_BIAS=b is not None, SAVE_STATS=True, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=_block(K),
            IN_PREC=_prec(precision, dtype), INTERP=_interpreting(), num_warps=warps, num_stages=FWD_STAGES)
        ctx.save_for_backward(rows, ln_w, ln_b, wc, mean, rstd)
        ctx.meta = (x.shape, x.dtype, w.dtype, b is not None, precision, dtype)
        return out.reshape(*x.shape[:-1], N)

    @staticmethod
    def backward(ctx, dout):
        rows, ln_w, ln_b, wc, mean, rstd = ctx.saved_tensors
        x_shape, x_dtype, w_dtype, has_bias, precision, dtype = ctx.meta
        M, K = rows.shape
        N = wc.shape[0]
        dout = dout.reshape(M, N).to(dtype).contiguous()
        bm, bn, warps = _config(K, dtype)
        prec, interp = _prec(precision, dtype), _interpreting()
        gm = triton.cdiv(M, bm)
        dx = torch.empty((M, K), device=rows.device, dtype=x_dtype)
        dlnw_part = torch.empty((gm, K), device=rows.device, dtype=torch.float32)
        dlnb_part = torch.empty_like(dlnw_part)
        kernels._bwd_dx[(gm,)](rows, ln_w, wc, dout, mean, rstd, dx, dlnw_part, dlnb_part, M, N, K,
                               BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=_block(K), IN_PREC=prec, INTERP=interp,
                               num_warps=warps, num_stages=BWD_STAGES)
        # the rows split so that the column blocks times the splits fill the GPU about twice
        gn = triton.cdiv(N, bn)
        # (two in the interpreter, so that the CPU tests cover the split reduction)
        splits = min(2, triton.cdiv(M, bm)) if interp else max(1, min(triton.cdiv(M, bm),
                                                                       (2 * _sm_count(rows.device)) // gn))
        per_split = triton.cdiv(triton.cdiv(M, splits), bm) * bm
        splits = triton.cdiv(M, per_split)
        dw_part = torch.empty((splits, N, K), device=rows.device, dtype=torch.float32)
        db_part = torch.empty((splits, N), device=rows.device, dtype=torch.float32)
        kernels._bwd_dw[(gn, splits)](rows, ln_w, ln_b, dout, mean, rstd, dw_part, db_part, M, N, K, per_split,
                                      BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=_block(K), IN_PREC=prec, INTERP=interp,
                                      num_warps=warps, num_stages=BWD_STAGES)
        dw = dw_part.sum(0).to(w_dtype)
        db = db_part.sum(0).to(w_dtype) if has_bias else None
        return (dx.reshape(x_shape), dlnw_part.sum(0).to(ln_w.dtype), dlnb_part.sum(0).to(ln_b.dtype), dw, db,
                None, None, None)


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def ln_linear(x: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None,
              eps: float = 1e-5, precision: str = "ieee") -> torch.Tensor:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    K = x.shape[-1]
    if w.shape[-1] != K or ln_w.shape[0] != K:
        raise ValueError(f"x ends in {K} channels; ln_w has {ln_w.shape[0]}, w {tuple(w.shape)}")
    if K > MAX_K:
        raise ValueError(f"the fused LayerNorm-Linear handles up to {MAX_K} input channels, got {K}")
    return LnLinearFunction.apply(x, ln_w, ln_b, w, b, float(eps), precision, compute_dtype(x))


__all__ = ["ln_linear", "LnLinearFunction", "PRECISIONS", "MAX_K"]
