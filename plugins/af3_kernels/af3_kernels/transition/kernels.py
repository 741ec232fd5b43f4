"""The Triton kernel of the fused Transition's forward (function.py runs it).

``_transition_fwd``: one program per block of BLOCK_M rows keeps the rows' LayerNorm output and the
[BLOCK_M, c] output accumulator on chip and walks the n*c hidden channels in blocks of BLOCK_H:
a = xn W_1[h], b = xn W_2[h] on the tensor cores, silu(a) * b in fp32, then acc += that W_3[:, h].
The expanded [M, n*c] activation is never written to memory (the eager module writes it three
times: the two projections and their product).

INTERP (Triton's interpreter, the CPU tests): dots of the rounded operands in fp32.
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret

_cast = interpret.cast
_dot = interpret.mma




@triton.jit
def _transition_fwd(x_ptr, lnw_ptr, lnb_ptr, w1_ptr, w2_ptr, w3_ptr, out_ptr, M, C, HID, eps,
                    s_w12_h, s_w12_c, s_w3_c, s_w3_h,
                    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                    IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = tl.arange(0, BLOCK_C)
    m_ok, c_ok = offs_m < M, offs_c < C
    rows = offs_m.to(tl.int64)  # M * C passes 2**31 for large pair tensors
    x = tl.load(x_ptr + rows[:, None] * C + offs_c[None, :], mask=m_ok[:, None] & c_ok[None, :], other=0.0)
    x = x.to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    xc = tl.where(c_ok[None, :], x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / C + eps)
    lnw = tl.load(lnw_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    lnb = tl.load(lnb_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    dtype = w1_ptr.dtype.element_ty
    xn = _cast(xc * rstd[:, None] * lnw[None, :] + lnb[None, :], dtype, INTERP)
    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        h_ok = offs_h < HID
        wmask = c_ok[:, None] & h_ok[None, :]
        # W_1, W_2 [HID, C] read as their transposes [C, BLOCK_H] (any strides: the caller may pass
        # them stored transposed, so that each tile row is contiguous)
        w1 = tl.load(w1_ptr + offs_h[None, :] * s_w12_h + offs_c[:, None] * s_w12_c, mask=wmask, other=0.0)
        w2 = tl.load(w2_ptr + offs_h[None, :] * s_w12_h + offs_c[:, None] * s_w12_c, mask=wmask, other=0.0)
        a = _dot(xn, w1, tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32), IN_PREC, INTERP)
        b = _dot(xn, w2, tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32), IN_PREC, INTERP)
        act = _cast(a * tl.sigmoid(a) * b, dtype, INTERP)
        # W_3 [C, HID] read as its transpose [BLOCK_H, C]
        w3 = tl.load(w3_ptr + offs_c[None, :] * s_w3_c + offs_h[:, None] * s_w3_h, mask=h_ok[:, None] & c_ok[None, :],
                     other=0.0)
        acc = _dot(act, w3, acc, IN_PREC, INTERP)
    tl.store(out_ptr + rows[:, None] * C + offs_c[None, :], _cast(acc, out_ptr.dtype.element_ty, INTERP),
             mask=m_ok[:, None] & c_ok[None, :])
