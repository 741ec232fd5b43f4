"""The Triton kernels of the fused LayerNorm -> Linear (function.py launches them).

Rows x [M, K] (K whole in one tile, K <= MAX_K), weight W [N, K], optional bias [N].

``_fwd``: program (m, n) normalises its BLOCK_M rows (fp32 statistics), casts them to the GEMM's
dtype and writes out[BLOCK_M, BLOCK_N] = xn W^T + b; the programs of column block 0 save each row's
mean and 1/std for the backward. The normalised rows never reach memory (the eager pair writes and
re-reads them).

Backward, without atomics:
``_bwd_dx``: program m recomputes its rows' x-hat, forms dxn = dout W over the N blocks, then
dx = rstd (g - mean(g) - x-hat mean(g x-hat)) with g = dxn * gamma, and writes its rows' partial
sums of dxn x-hat and dxn (dgamma, dbeta) to a [GM, K] buffer that torch sums.
``_bwd_dw``: program (n, s) accumulates dout^T xn over the s-th share of the rows (xn recomputed
from the saved statistics) into a [S, N, K] buffer, and dout's column sums (dbias) into [S, N].

INTERP (Triton's interpreter, the CPU tests): dots of the rounded operands in fp32 (interpret.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret

_cast = interpret.cast
_dot = interpret.mma


@triton.jit
def _normalised(x_ptr, lnw_ptr, lnb_ptr, rows, m_ok, offs_k, k_ok, K, eps):
    """x-hat, the LayerNorm output (fp32), mean and 1/std of rows ``rows``."""
    x = tl.load(x_ptr + rows[:, None] * K + offs_k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
    x = x.to(tl.float32)
    mean = tl.sum(x, axis=1) / K
    xc = tl.where(k_ok[None, :], x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / K + eps)
    xhat = xc * rstd[:, None]
    lnw = tl.load(lnw_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    lnb = tl.load(lnb_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    return xhat, xhat * lnw[None, :] + lnb[None, :], mean, rstd


@triton.jit
def _fwd(x_ptr, lnw_ptr, lnb_ptr, w_ptr, b_ptr, out_ptr, mean_ptr, rstd_ptr, M, N, K, eps,
         HAS_BIAS: tl.constexpr, SAVE_STATS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
         BLOCK_K: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok, n_ok, k_ok = offs_m < M, offs_n < N, offs_k < K
    rows = offs_m.to(tl.int64)  # M * K passes 2**31 for large pair tensors
    _, xn, mean, rstd = _normalised(x_ptr, lnw_ptr, lnb_ptr, rows, m_ok, offs_k, k_ok, K, eps)
    dtype = w_ptr.dtype.element_ty
    # W [N, K] read as its transpose [K, BLOCK_N]
    w = tl.load(w_ptr + offs_n[None, :] * K + offs_k[:, None], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
    acc = _dot(_cast(xn, dtype, INTERP), w, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32), IN_PREC, INTERP)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None] * N + offs_n[None, :], _cast(acc, out_ptr.dtype.element_ty, INTERP),
             mask=m_ok[:, None] & n_ok[None, :])
    if SAVE_STATS:
        if pid_n == 0:
            tl.store(mean_ptr + offs_m, mean, mask=m_ok)
            tl.store(rstd_ptr + offs_m, rstd, mask=m_ok)


@triton.jit
def _bwd_dx(x_ptr, lnw_ptr, w_ptr, dout_ptr, mean_ptr, rstd_ptr, dx_ptr, dlnw_part_ptr, dlnb_part_ptr, M, N, K,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IN_PREC: tl.constexpr,
            INTERP: tl.constexpr):
    pid_m = tl.program_id(0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok, k_ok = offs_m < M, offs_k < K
    rows = offs_m.to(tl.int64)
    x = tl.load(x_ptr + rows[:, None] * K + offs_k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
    mean = tl.load(mean_ptr + offs_m, mask=m_ok, other=0.0)
    rstd = tl.load(rstd_ptr + offs_m, mask=m_ok, other=0.0)
    xhat = tl.where(k_ok[None, :], (x.to(tl.float32) - mean[:, None]) * rstd[:, None], 0.0)
    dxn = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        dout = tl.load(dout_ptr + rows[:, None] * N + offs_n[None, :], mask=m_ok[:, None] & n_ok[None, :], other=0.0)
        w = tl.load(w_ptr + offs_n[:, None] * K + offs_k[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0)
        dxn = _dot(dout, w, dxn, IN_PREC, INTERP)
    lnw = tl.load(lnw_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    g = dxn * lnw[None, :]
    c1 = tl.sum(g * xhat, axis=1) / K
    c2 = tl.sum(g, axis=1) / K
    dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    tl.store(dx_ptr + rows[:, None] * K + offs_k[None, :], _cast(dx, dx_ptr.dtype.element_ty, INTERP),
             mask=m_ok[:, None] & k_ok[None, :])
    # rows past M hold xhat = 0 and dout = 0: they add nothing to the partial sums
    tl.store(dlnw_part_ptr + pid_m * K + offs_k, tl.sum(dxn * xhat, axis=0), mask=k_ok)
    tl.store(dlnb_part_ptr + pid_m * K + offs_k, tl.sum(dxn, axis=0), mask=k_ok)


@triton.jit
def _bwd_dw(x_ptr, lnw_ptr, lnb_ptr, dout_ptr, mean_ptr, rstd_ptr, dw_part_ptr, db_part_ptr, M, N, K, rows_per_split,
            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IN_PREC: tl.constexpr,
            INTERP: tl.constexpr):
    pid_n, split = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    n_ok, k_ok = offs_n < N, offs_k < K
    lnw = tl.load(lnw_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    lnb = tl.load(lnb_ptr + offs_k, mask=k_ok, other=0.0).to(tl.float32)
    dtype = dout_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_N,), dtype=tl.float32)
    start = split * rows_per_split
    for m0 in range(start, start + rows_per_split, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        m_ok = offs_m < M
        rows = offs_m.to(tl.int64)
        x = tl.load(x_ptr + rows[:, None] * K + offs_k[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        mean = tl.load(mean_ptr + offs_m, mask=m_ok, other=0.0)
        rstd = tl.load(rstd_ptr + offs_m, mask=m_ok, other=0.0)
        xn = (x.to(tl.float32) - mean[:, None]) * rstd[:, None] * lnw[None, :] + lnb[None, :]
        xn = tl.where(m_ok[:, None] & k_ok[None, :], xn, 0.0)
        # dout read as its transpose [BLOCK_N, BLOCK_M]
        dout_t = tl.load(dout_ptr + rows[None, :] * N + offs_n[:, None], mask=n_ok[:, None] & m_ok[None, :], other=0.0)
        acc = _dot(dout_t, _cast(xn, dtype, INTERP), acc, IN_PREC, INTERP)
        dbias += tl.sum(dout_t.to(tl.float32), axis=1)
    base = split.to(tl.int64) * N
    tl.store(dw_part_ptr + (base + offs_n[:, None]) * K + offs_k[None, :], acc, mask=n_ok[:, None] & k_ok[None, :])
    tl.store(db_part_ptr + base + offs_n, dbias, mask=n_ok)
