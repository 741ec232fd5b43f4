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


# ---------------------------------------------------------------- backward
# Recomputes what the forward kept on chip (the LayerNorm statistics, a, b); no atomics.
# With g = dout W_3 (the activation's gradient), s = sigmoid(a):
#   da = g * b * s * (1 + a (1 - s)),  db = g * a * s,
#   dxn = da W_1 + db W_2,  dW_1 = da^T xn,  dW_2 = db^T xn,  dW_3 = dout^T (a s b).

@triton.jit
def _ln_rows(x_ptr, lnw_ptr, lnb_ptr, rows, m_ok, offs_c, c_ok, C, eps):
    """x-hat, xn (fp32) and 1/std of rows ``rows``."""
    x = tl.load(x_ptr + rows[:, None] * C + offs_c[None, :], mask=m_ok[:, None] & c_ok[None, :], other=0.0)
    x = x.to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    xc = tl.where(c_ok[None, :], x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / C + eps)
    xhat = xc * rstd[:, None]
    lnw = tl.load(lnw_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    lnb = tl.load(lnb_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    return xhat, tl.where(m_ok[:, None] & c_ok[None, :], xhat * lnw[None, :] + lnb[None, :], 0.0), rstd


@triton.jit
def _hidden_grads(xn_c, dout, w1_ptr, w2_ptr, w3_ptr, offs_h, h_ok, offs_c, c_ok, C, HID,
                  IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """For one block of hidden channels: da, db [BLOCK_M, BLOCK_H] (fp32) and the activation."""
    wmask = c_ok[:, None] & h_ok[None, :]
    w1t = tl.load(w1_ptr + offs_h[None, :] * C + offs_c[:, None], mask=wmask, other=0.0)  # [C, BH]
    w2t = tl.load(w2_ptr + offs_h[None, :] * C + offs_c[:, None], mask=wmask, other=0.0)
    w3 = tl.load(w3_ptr + offs_c[:, None] * HID + offs_h[None, :], mask=wmask, other=0.0)  # [C, BH] of W_3
    zero = tl.zeros((xn_c.shape[0], offs_h.shape[0]), dtype=tl.float32)
    a = _dot(xn_c, w1t, zero, IN_PREC, INTERP)
    b = _dot(xn_c, w2t, zero, IN_PREC, INTERP)
    g = _dot(dout, w3, zero, IN_PREC, INTERP)
    s = tl.sigmoid(a)
    da = g * b * s * (1.0 + a * (1.0 - s))
    db = g * a * s
    return da, db, a * s * b


@triton.jit
def _transition_bwd_dx(x_ptr, lnw_ptr, lnb_ptr, w1_ptr, w2_ptr, w3_ptr, dout_ptr, dx_ptr, dlnw_part_ptr,
                       dlnb_part_ptr, M, C, HID, eps,
                       BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                       IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    pid_m = tl.program_id(0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_c = tl.arange(0, BLOCK_C)
    m_ok, c_ok = offs_m < M, offs_c < C
    rows = offs_m.to(tl.int64)
    xhat, xn, rstd = _ln_rows(x_ptr, lnw_ptr, lnb_ptr, rows, m_ok, offs_c, c_ok, C, eps)
    dtype = w1_ptr.dtype.element_ty
    xn_c = _cast(xn, dtype, INTERP)
    dout = tl.load(dout_ptr + rows[:, None] * C + offs_c[None, :], mask=m_ok[:, None] & c_ok[None, :], other=0.0)
    dxn = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        h_ok = offs_h < HID
        da, db, _ = _hidden_grads(xn_c, dout, w1_ptr, w2_ptr, w3_ptr, offs_h, h_ok, offs_c, c_ok, C, HID,
                                  IN_PREC, INTERP)
        wmask = h_ok[:, None] & c_ok[None, :]
        w1 = tl.load(w1_ptr + offs_h[:, None] * C + offs_c[None, :], mask=wmask, other=0.0)  # [BH, C]
        w2 = tl.load(w2_ptr + offs_h[:, None] * C + offs_c[None, :], mask=wmask, other=0.0)
        dxn = _dot(_cast(da, dtype, INTERP), w1, dxn, IN_PREC, INTERP)
        dxn = _dot(_cast(db, dtype, INTERP), w2, dxn, IN_PREC, INTERP)
    lnw = tl.load(lnw_ptr + offs_c, mask=c_ok, other=0.0).to(tl.float32)
    g = dxn * lnw[None, :]
    c1 = tl.sum(g * xhat, axis=1) / C
    c2 = tl.sum(g, axis=1) / C
    dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    tl.store(dx_ptr + rows[:, None] * C + offs_c[None, :], _cast(dx, dx_ptr.dtype.element_ty, INTERP),
             mask=m_ok[:, None] & c_ok[None, :])
    tl.store(dlnw_part_ptr + pid_m * C + offs_c, tl.sum(dxn * xhat, axis=0), mask=c_ok)
    tl.store(dlnb_part_ptr + pid_m * C + offs_c, tl.sum(dxn, axis=0), mask=c_ok)


@triton.jit
def _transition_bwd_dw(x_ptr, lnw_ptr, lnb_ptr, w1_ptr, w2_ptr, w3_ptr, dout_ptr, dw1_part_ptr, dw2_part_ptr,
                       dw3_part_ptr, M, C, HID, eps, rows_per_split,
                       BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
                       IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    pid_h, split = tl.program_id(0), tl.program_id(1)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_C)
    h_ok, c_ok = offs_h < HID, offs_c < C
    dtype = w1_ptr.dtype.element_ty
    acc1 = tl.zeros((BLOCK_H, BLOCK_C), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_H, BLOCK_C), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_H, BLOCK_C), dtype=tl.float32)  # dW_3 transposed: [hidden, C]
    start = split * rows_per_split
    for m0 in range(start, start + rows_per_split, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        m_ok = offs_m < M
        rows = offs_m.to(tl.int64)
        _, xn, _ = _ln_rows(x_ptr, lnw_ptr, lnb_ptr, rows, m_ok, offs_c, c_ok, C, eps)
        xn_c = _cast(xn, dtype, INTERP)
        dout = tl.load(dout_ptr + rows[:, None] * C + offs_c[None, :], mask=m_ok[:, None] & c_ok[None, :],
                       other=0.0)
        da, db, act = _hidden_grads(xn_c, dout, w1_ptr, w2_ptr, w3_ptr, offs_h, h_ok, offs_c, c_ok, C, HID,
                                    IN_PREC, INTERP)
        # rows past M: xn = 0 and dout = 0 make da, db and their products 0
        acc1 = _dot(tl.trans(_cast(da, dtype, INTERP)), xn_c, acc1, IN_PREC, INTERP)
        acc2 = _dot(tl.trans(_cast(db, dtype, INTERP)), xn_c, acc2, IN_PREC, INTERP)
        acc3 = _dot(tl.trans(_cast(act, dtype, INTERP)), dout, acc3, IN_PREC, INTERP)
    base = split.to(tl.int64) * HID
    ptrs = (base + offs_h[:, None]) * C + offs_c[None, :]
    ok = h_ok[:, None] & c_ok[None, :]
    tl.store(dw1_part_ptr + ptrs, acc1, mask=ok)
    tl.store(dw2_part_ptr + ptrs, acc2, mask=ok)
    tl.store(dw3_part_ptr + ptrs, acc3, mask=ok)
