"""The Triton kernels of the fused triangle multiplicative update's forward (function.py runs them).

Around the N^3 contraction (cuBLAS batched GEMM over the h channels), two kernels replace the
chain of element-wise ops, permutes and copies of the eager module:

``_gate_pack``: the four projections a_p, a_g, b_p, b_g (one GEMM's output, [M, 4h + c]) to
    a = mask * sigmoid(a_g) * a_p and b likewise, written channel-major [B, h, N, N] so that each
    channel is a contiguous N x N matrix for the batched GEMM (the eager module permutes and copies).
``_ln_linear_gate``: per block of positions, x [B, h, N, N] (channel-major, the GEMM's output) read
    transposed, LayerNorm over h in fp32, the output projection on the tensor cores, its bias, and
    the sigmoid gate (the last c columns of the projection GEMM's output): out [B, N, N, c].

INTERP (Triton's interpreter, the CPU tests): dots of the rounded operands in fp32 (its bf16 dot is
wrong; af3_kernels.interpret).
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret

_cast = interpret.cast


@triton.jit
def _gate_pack(proj_ptr, mask_ptr, a_ptr, b_ptr, NN, H, s_row,
               HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, INTERP: tl.constexpr):
    pid_m, pid_h, bat = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_p = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # positions i*N + j within the batch
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    ok = (offs_p < NN)[:, None] & (offs_h < H)[None, :]
    rows = bat.to(tl.int64) * NN + offs_p  # rows of proj: 64-bit (M * (4h + c) passes 2**31 at N ~ 2k)
    base = proj_ptr + rows[:, None] * s_row + offs_h[None, :]
    a_p = tl.load(base, mask=ok, other=0.0).to(tl.float32)
    a_g = tl.load(base + H, mask=ok, other=0.0).to(tl.float32)
    b_p = tl.load(base + 2 * H, mask=ok, other=0.0).to(tl.float32)
    b_g = tl.load(base + 3 * H, mask=ok, other=0.0).to(tl.float32)
    a = a_p * tl.sigmoid(a_g)
    b = b_p * tl.sigmoid(b_g)
    if HAS_MASK:
        m = tl.load(mask_ptr + rows, mask=offs_p < NN, other=0.0).to(tl.float32)
        a = a * m[:, None]
        b = b * m[:, None]
    # channel-major: element (bat, h, p) at (bat * H + h) * NN + p
    out = (bat.to(tl.int64) * H + offs_h[None, :]) * NN + offs_p[:, None]
    tl.store(a_ptr + out, _cast(a, a_ptr.dtype.element_ty, INTERP), mask=ok)
    tl.store(b_ptr + out, _cast(b, b_ptr.dtype.element_ty, INTERP), mask=ok)


@triton.jit
def _ln_linear_gate(x_ptr, proj_ptr, w_ptr, wb_ptr, lnw_ptr, lnb_ptr, out_ptr, NN, H, C, s_row, g_col, eps,
                    BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
                    IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    pid_m, bat = tl.program_id(0), tl.program_id(1)
    offs_p = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_C)
    p_ok = offs_p < NN
    h_ok = offs_h < H
    c_ok = offs_c < C
    # x [B, H, NN] read as a [positions, channels] tile: contiguous along positions
    xs = x_ptr + (bat.to(tl.int64) * H + offs_h[None, :]) * NN + offs_p[:, None]
    x = tl.load(xs, mask=p_ok[:, None] & h_ok[None, :], other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / H
    xc = tl.where(h_ok[None, :], x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / H + eps)
    lnw = tl.load(lnw_ptr + offs_h, mask=h_ok, other=0.0).to(tl.float32)
    lnb = tl.load(lnb_ptr + offs_h, mask=h_ok, other=0.0).to(tl.float32)
    xn = _cast(xc * rstd[:, None] * lnw[None, :] + lnb[None, :], w_ptr.dtype.element_ty, INTERP)
    # the output projection's weight [C, H] (nn.Linear), read as its transpose [H, C]
    w = tl.load(w_ptr + offs_c[None, :] * H + offs_h[:, None], mask=h_ok[:, None] & c_ok[None, :], other=0.0)
    acc = interpret.mma(xn, w, tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32), IN_PREC, INTERP)
    acc += tl.load(wb_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    rows = bat.to(tl.int64) * NN + offs_p
    ok = p_ok[:, None] & c_ok[None, :]
    g = tl.load(proj_ptr + rows[:, None] * s_row + g_col + offs_c[None, :], mask=ok, other=0.0).to(tl.float32)
    out = acc * tl.sigmoid(g)
    tl.store(out_ptr + rows[:, None] * C + offs_c[None, :], _cast(out, out_ptr.dtype.element_ty, INTERP), mask=ok)
