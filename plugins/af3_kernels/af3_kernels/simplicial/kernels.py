"""The Triton forward of 2-simplicial attention (function.py launches it).

``_simplicial_fwd``: one program per (group of GROUP queries, batch x head). It walks the keys j of
the group's window in blocks of BLOCK_J, loading the K1 and V1 tiles [BLOCK_J, d] once for all the
group's queries; for each query i of the group it forms the operand (q_i * k1_j) [BLOCK_J, d]
(the trilinear logit is a dot product of it with k2_k), then walks the k of i's window in blocks
of BLOCK_K:

    s   = (q_i * K1) @ K2^T            [BLOCK_J, BLOCK_K] on the tensor cores (log2 units)
    m   = max(m, max s);  p = exp2(s - m);  l = l * alpha + sum p       (one online softmax per
    acc = acc * alpha + sum_j V1 * (p @ V2)    [d]                       query over all its pairs)

so the (j, k) pairs of one query never leave the chip, and out_i = acc / l. The queries' running
max, sum and accumulator live in [GROUP] and [GROUP, d] tiles; query g's row is picked with a
mask (GROUP * d work per query and j block, beside the 4 * BLOCK_J * BLOCK_K * d of its dots).

Windows (Roy et al., causal): j in (i - W1, i], k in (i - W2, i]; FULL: every j and k in [0, n).
A j block with no key in i's window is skipped for that query. The running max starts at -1e30,
not -inf, so a fully masked tile leaves the state unchanged instead of making NaN.

INTERP (Triton's interpreter, the CPU tests): dots of the rounded operands in fp32 (interpret.py).
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret

_cast = interpret.cast
_dot = interpret.mma


@triton.jit
def _simplicial_fwd(q_ptr, k1_ptr, k2_ptr, v1_ptr, v2_ptr, out_ptr, lse_ptr, n, H, D, W1, W2, qk_scale,
                    s_b, s_n, s_h,
                    FULL: tl.constexpr, STORE_LSE: tl.constexpr, GROUP: tl.constexpr, BLOCK_J: tl.constexpr,
                    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    i0 = tl.program_id(0) * GROUP
    bh = tl.program_id(1)
    base = (bh // H).to(tl.int64) * s_b + (bh % H).to(tl.int64) * s_h  # B * n * H * d may pass 2**31
    dtype = k1_ptr.dtype.element_ty
    offs_g = tl.arange(0, GROUP)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    rows = i0 + offs_g
    g_ok = rows < n
    io_offs = base + rows.to(tl.int64)[:, None] * s_n + offs_d[None, :]
    io_mask = g_ok[:, None] & d_ok[None, :]
    # q scaled by 1/sqrt(d) * log2(e) in fp32: the logits come out in log2 units for exp2
    q_all = tl.load(q_ptr + io_offs, mask=io_mask, other=0.0).to(tl.float32) * qk_scale
    m_all = tl.full((GROUP,), -1.0e30, tl.float32)
    l_all = tl.zeros((GROUP,), tl.float32)
    acc_all = tl.zeros((GROUP, BLOCK_D), tl.float32)
    i_last = tl.minimum(i0 + GROUP, n) - 1
    if FULL:
        j_lo = 0
        j_hi = n
    else:
        j_lo = tl.maximum(i0 - W1 + 1, 0)
        j_hi = i_last + 1
    for j0 in range(j_lo, j_hi, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        j_in = offs_j < j_hi
        kv_offs = base + offs_j.to(tl.int64)[:, None] * s_n + offs_d[None, :]
        kv_mask = j_in[:, None] & d_ok[None, :]
        k1 = tl.load(k1_ptr + kv_offs, mask=kv_mask, other=0.0)
        v1 = tl.load(v1_ptr + kv_offs, mask=kv_mask, other=0.0)
        for g in range(GROUP):
            i = i0 + g
            sel = offs_g == g
            if FULL:
                k_lo = 0
                k_hi = n
                j_ok = j_in
                active = i < n
            else:
                k_lo = tl.maximum(i - W2 + 1, 0)
                k_hi = i + 1
                j_ok = j_in & (offs_j > i - W1) & (offs_j <= i)
                active = (i < n) & (j0 <= i) & (j0 + BLOCK_J > i - W1 + 1)
            k_hi = tl.where(active, k_hi, k_lo)  # nothing of this j block in query i's window: skip
            q_i = tl.sum(tl.where(sel[:, None], q_all, 0.0), axis=0)  # [BLOCK_D]
            m_i = tl.max(tl.where(sel, m_all, -1.0e30), axis=0)
            l_i = tl.sum(tl.where(sel, l_all, 0.0), axis=0)
            acc_i = tl.sum(tl.where(sel[:, None], acc_all, 0.0), axis=0)  # [BLOCK_D]
            qk1 = _cast(q_i[None, :] * k1.to(tl.float32), dtype, INTERP)  # [BLOCK_J, BLOCK_D]
            for k0 in range(k_lo, k_hi, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                k_ok = offs_k < k_hi
                k2_offs = base + offs_k.to(tl.int64)[:, None] * s_n + offs_d[None, :]
                k2_mask = k_ok[:, None] & d_ok[None, :]
                k2 = tl.load(k2_ptr + k2_offs, mask=k2_mask, other=0.0)
                v2 = tl.load(v2_ptr + k2_offs, mask=k2_mask, other=0.0)
                s = _dot(qk1, tl.trans(k2), tl.zeros((BLOCK_J, BLOCK_K), tl.float32), IN_PREC, INTERP)
                s = tl.where(j_ok[:, None] & k_ok[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=0))
                alpha = tl.exp2(m_i - m_new)
                p = tl.exp2(s - m_new)
                l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=0)
                pv = _dot(_cast(p, dtype, INTERP), v2, tl.zeros((BLOCK_J, BLOCK_D), tl.float32), IN_PREC, INTERP)
                acc_i = acc_i * alpha + tl.sum(v1.to(tl.float32) * pv, axis=0)
                m_i = m_new
            m_all = tl.where(sel, m_i, m_all)
            l_all = tl.where(sel, l_i, l_all)
            acc_all = tl.where(sel[:, None], acc_i[None, :], acc_all)
    out = acc_all / tl.where(l_all > 0, l_all, 1.0)[:, None]
    tl.store(out_ptr + io_offs, _cast(out, out_ptr.dtype.element_ty, INTERP), mask=io_mask)
    if STORE_LSE:  # log2 of the softmax's denominator, in log2 units: p = exp2(s - lse) [B*H, n]
        tl.store(lse_ptr + bh.to(tl.int64) * n + rows, m_all + tl.log2(tl.where(l_all > 0, l_all, 1.0)), mask=g_ok)


@triton.jit
def _simplicial_bwd(q_ptr, k1_ptr, k2_ptr, v1_ptr, v2_ptr, do_ptr, lse_ptr, delta_ptr,
                    dq_ptr, dk1_ptr, dk2_ptr, dv1_ptr, dv2_ptr, n, H, D, W1, W2, qk_scale, scale,
                    s_b, s_n, s_h,
                    FULL: tl.constexpr, GROUP: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_D: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """The backward, in the forward's loop order, the probabilities recomputed from the stored lse.
    With dA = p * (dP - delta_i), dP = (dO_i * V1) V2^T, delta_i = sum_c dO_ic out_ic:
    dq_i = scale sum_j K1_j * (dA K2)_j (owned by this program); dk1_j += scale q_i * (dA K2)_j and
    dv1_j += dO_i * (p V2)_j, summed over the group in registers and added once per j block;
    dk2 += scale dA^T (q_i * K1) and dv2 += p^T (dO_i * V1) per (query, j block, k block). The key
    gradients are fp32 buffers written with atomic adds (not deterministic in the last bits)."""
    i0 = tl.program_id(0) * GROUP
    bh = tl.program_id(1)
    base = (bh // H).to(tl.int64) * s_b + (bh % H).to(tl.int64) * s_h
    dtype = k1_ptr.dtype.element_ty
    offs_g = tl.arange(0, GROUP)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    rows = i0 + offs_g
    g_ok = rows < n
    io_offs = base + rows.to(tl.int64)[:, None] * s_n + offs_d[None, :]
    io_mask = g_ok[:, None] & d_ok[None, :]
    q_all = tl.load(q_ptr + io_offs, mask=io_mask, other=0.0).to(tl.float32) * qk_scale
    do_all = tl.load(do_ptr + io_offs, mask=io_mask, other=0.0).to(tl.float32)
    lse_all = tl.load(lse_ptr + bh.to(tl.int64) * n + rows, mask=g_ok, other=0.0)
    delta_all = tl.load(delta_ptr + bh.to(tl.int64) * n + rows, mask=g_ok, other=0.0)
    dq_all = tl.zeros((GROUP, BLOCK_D), tl.float32)
    i_last = tl.minimum(i0 + GROUP, n) - 1
    if FULL:
        j_lo = 0
        j_hi = n
    else:
        j_lo = tl.maximum(i0 - W1 + 1, 0)
        j_hi = i_last + 1
    for j0 in range(j_lo, j_hi, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        j_in = offs_j < j_hi
        kv_offs = base + offs_j.to(tl.int64)[:, None] * s_n + offs_d[None, :]
        kv_mask = j_in[:, None] & d_ok[None, :]
        k1 = tl.load(k1_ptr + kv_offs, mask=kv_mask, other=0.0).to(tl.float32)
        v1 = tl.load(v1_ptr + kv_offs, mask=kv_mask, other=0.0).to(tl.float32)
        dk1_acc = tl.zeros((BLOCK_J, BLOCK_D), tl.float32)
        dv1_acc = tl.zeros((BLOCK_J, BLOCK_D), tl.float32)
        for g in range(GROUP):
            i = i0 + g
            sel = offs_g == g
            if FULL:
                k_lo = 0
                k_hi = n
                j_ok = j_in
                active = i < n
            else:
                k_lo = tl.maximum(i - W2 + 1, 0)
                k_hi = i + 1
                j_ok = j_in & (offs_j > i - W1) & (offs_j <= i)
                active = (i < n) & (j0 <= i) & (j0 + BLOCK_J > i - W1 + 1)
            k_hi = tl.where(active, k_hi, k_lo)
            q_i = tl.sum(tl.where(sel[:, None], q_all, 0.0), axis=0)
            do_i = tl.sum(tl.where(sel[:, None], do_all, 0.0), axis=0)
            lse_i = tl.sum(tl.where(sel, lse_all, 0.0), axis=0)
            delta_i = tl.sum(tl.where(sel, delta_all, 0.0), axis=0)
            qk1 = _cast(q_i[None, :] * k1, dtype, INTERP)  # [BLOCK_J, BLOCK_D], log2 units
            dov1 = _cast(do_i[None, :] * v1, dtype, INTERP)
            t_acc = tl.zeros((BLOCK_J, BLOCK_D), tl.float32)  # dA K2, over i's k blocks
            pv_acc = tl.zeros((BLOCK_J, BLOCK_D), tl.float32)  # p V2
            for k0 in range(k_lo, k_hi, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                k_ok = offs_k < k_hi
                k2_offs = base + offs_k.to(tl.int64)[:, None] * s_n + offs_d[None, :]
                k2_mask = k_ok[:, None] & d_ok[None, :]
                k2 = tl.load(k2_ptr + k2_offs, mask=k2_mask, other=0.0)
                v2 = tl.load(v2_ptr + k2_offs, mask=k2_mask, other=0.0)
                s = _dot(qk1, tl.trans(k2), tl.zeros((BLOCK_J, BLOCK_K), tl.float32), IN_PREC, INTERP)
                p = tl.where(j_ok[:, None] & k_ok[None, :], tl.exp2(s - lse_i), 0.0)
                dp = _dot(dov1, tl.trans(v2), tl.zeros((BLOCK_J, BLOCK_K), tl.float32), IN_PREC, INTERP)
                da = _cast(p * (dp - delta_i), dtype, INTERP)
                pc = _cast(p, dtype, INTERP)
                t_acc = _dot(da, k2, t_acc, IN_PREC, INTERP)
                pv_acc = _dot(pc, v2, pv_acc, IN_PREC, INTERP)
                dk2 = _dot(tl.trans(da), qk1, tl.zeros((BLOCK_K, BLOCK_D), tl.float32), IN_PREC, INTERP)
                dv2 = _dot(tl.trans(pc), dov1, tl.zeros((BLOCK_K, BLOCK_D), tl.float32), IN_PREC, INTERP)
                tl.atomic_add(dk2_ptr + k2_offs, dk2 * (scale / qk_scale), mask=k2_mask)
                tl.atomic_add(dv2_ptr + k2_offs, dv2, mask=k2_mask)
            dq_i = scale * tl.sum(k1 * t_acc, axis=0)
            dq_all += tl.where(sel[:, None], dq_i[None, :], 0.0)
            dk1_acc += (scale / qk_scale) * q_i[None, :] * t_acc
            dv1_acc += do_i[None, :] * pv_acc
        tl.atomic_add(dk1_ptr + kv_offs, dk1_acc, mask=kv_mask)
        tl.atomic_add(dv1_ptr + kv_offs, dv1_acc, mask=kv_mask)
    tl.store(dq_ptr + io_offs, dq_all, mask=io_mask)
