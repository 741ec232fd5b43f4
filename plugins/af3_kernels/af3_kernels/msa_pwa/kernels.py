"""The Triton kernels of MSA pair-weighted averaging (AF3 Algorithm 10); launched by launch.py.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j softmax_j(bias[b,i,j,h] | mask) * v[b,s,j,h,:]

For each (b, h) this is a GEMM, P[i, j] (R x R, the softmax of the bias over j) times V_h[j, n]
(R x S*C, n = s*C + c), so the S rows share one softmax and tensor cores do the work.
- ``_stats_kernel`` computes, once per (b, h, i), the row maximum m and log2 of the row sum l of
  the (masked) logits in base 2; it reads bias rows [j, h] contiguously. Optionally it also writes
  P = exp2(x - m - l) as a [B,H,R,R] buffer ("stored" mode) so the GEMMs read P coalesced.
- In "recompute" mode the GEMM kernels rebuild P tiles from the bias and (m, l) in registers, so
  nothing of size R*R beyond the bias itself and its gradient is ever allocated (largest R).
- GEMM operands are 2-D [rows, n] tiles read in place ("flat" layout) or from a [B,H,R,S*C] copy
  ("gemm" layout); see _view and launch.use_gemm_layout.
- ``_fwd_kernel``: acc[i, n] = sum_j P[i, j] V[j, n], then the sigmoid gate in the epilogue; when a
  gradient is needed, y = acc is kept in fp32 for the backward. ``_fwd_tma_kernel`` is the same for
  16-bit inputs at larger sizes, reading the stored P (and v's gemm copy) through TMA descriptors.
- Every tiled kernel launches heads first (see launch.grid): neighbouring heads share memory
  sectors. On tensor cores, where one head's C channels fill half a 32-byte sector (bf16, C = 8), a
  forward program owns two adjacent heads (HEADS = 2, launch.group_heads) so v, g and out move in
  whole sectors.
- Backward as in flash attention:
    dY' = dout * sigmoid(g) (rounded);  dg = dout * y * sigmoid(g) * (1 - sigmoid(g));  D[i] = sum_n dY' * y
    dV = P^T dY';  dP = dY' V^T (summed over n inside the kernel);  dbias = P * (dP - D)
  Nothing of size S*R*R exists at any point; inputs are never written.
Offsets that can exceed 2**31 (anything multiplied by S*R*H*C or R*R*H) are computed in int64.
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret
from af3_kernels.msa_pwa.reference import MASKED_LOGIT

try:  # grid dependency control (programmatic dependent launch), Triton 3.4 and newer
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton: options.use_pdl has no effect
    gdc_launch_dependents = gdc_wait = None

LOG2E = tl.constexpr(1.4426950408889634)
MASKED2 = tl.constexpr(MASKED_LOGIT * 1.4426950408889634)  # the same in base 2


@triton.jit
def _stats_kernel(
    bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    R, H, smb, smi, smj,
    HAS_MASK: tl.constexpr, COMPUTE_STATS: tl.constexpr, WRITE_P: tl.constexpr, INTERP: tl.constexpr,
    SINGLE: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_H: tl.constexpr, TRIGGER_DEPENDENTS: tl.constexpr,
):
    """One program per (b, i): softmax statistics over j for every head, and optionally P. SINGLE:
    the whole row is one block (R <= BLOCK_J), read once for both (H100, bf16 R=384, H=8: 5.8 us
    with two reads, 4.7 with one; torch.profiler). TRIGGER_DEPENDENTS: see MSAPWAOptions.use_pdl."""
    if TRIGGER_DEPENDENTS:
        gdc_launch_dependents()
    pid = tl.program_id(0).to(tl.int64)
    b = pid // R
    i = pid % R
    offs_h = tl.arange(0, BLOCK_H)
    hmask = offs_h < H
    row = pid * R * H  # bias[b, i, 0, 0]
    stat_off = (b * H + offs_h) * R + i
    p_row = (b * H + offs_h) * R * R + i * R  # P[b, h, i, 0]: transposed relative to the bias
    if COMPUTE_STATS and SINGLE:
        x, jmask = _logits2(bias_ptr, mask_ptr, row, b, i, 0, offs_h, hmask, R, H, smb, smi, smj,
                            HAS_MASK, BLOCK_J)
        x = tl.where(jmask[:, None], x, float("-inf"))
        m = tl.max(x, axis=0)
        l = tl.log2(tl.sum(tl.exp2(x - m[None, :]), axis=0))
        tl.store(m2_ptr + stat_off, m, mask=hmask)
        tl.store(l2_ptr + stat_off, l, mask=hmask)
        if WRITE_P:
            p = tl.exp2(x - m[None, :] - l[None, :])
            tl.store(p_ptr + p_row[None, :] + tl.arange(0, BLOCK_J)[:, None],
                     _cast(p, p_ptr.dtype.element_ty, INTERP), mask=jmask[:, None] & hmask[None, :])
    else:
        if COMPUTE_STATS:
            m = tl.full([BLOCK_H], float("-inf"), tl.float32)
            l = tl.zeros([BLOCK_H], tl.float32)
            for j0 in range(0, R, BLOCK_J):
                x, jmask = _logits2(bias_ptr, mask_ptr, row, b, i, j0, offs_h, hmask, R, H, smb, smi, smj,
                                    HAS_MASK, BLOCK_J)
                # Padded columns j >= R drop out; each block has at least one real j: m stays finite.
                x = tl.where(jmask[:, None], x, float("-inf"))
                m_new = tl.maximum(m, tl.max(x, axis=0))
                l = l * tl.exp2(m - m_new) + tl.sum(tl.exp2(x - m_new[None, :]), axis=0)
                m = m_new
            l = tl.log2(l)
            tl.store(m2_ptr + stat_off, m, mask=hmask)
            tl.store(l2_ptr + stat_off, l, mask=hmask)
        else:
            m = tl.load(m2_ptr + stat_off, mask=hmask, other=0.0)
            l = tl.load(l2_ptr + stat_off, mask=hmask, other=0.0)
        if WRITE_P:
            for j0 in range(0, R, BLOCK_J):
                x, jmask = _logits2(bias_ptr, mask_ptr, row, b, i, j0, offs_h, hmask, R, H, smb, smi, smj,
                                    HAS_MASK, BLOCK_J)
                p = tl.exp2(x - m[None, :] - l[None, :])
                tl.store(p_ptr + p_row[None, :] + (j0 + tl.arange(0, BLOCK_J))[:, None],
                         _cast(p, p_ptr.dtype.element_ty, INTERP), mask=jmask[:, None] & hmask[None, :])


@triton.jit
def _logits2(bias_ptr, mask_ptr, row, b, i, j0, offs_h, hmask, R, H, smb, smi, smj,
             HAS_MASK: tl.constexpr, BLOCK_J: tl.constexpr):
    """Masked logits of bias[b, i, j0 .. j0+BLOCK_J, :] in base 2 as a [BLOCK_J, BLOCK_H] tile, and
    the mask of real columns j < R."""
    offs_j = j0 + tl.arange(0, BLOCK_J)
    jmask = offs_j < R
    x = tl.load(bias_ptr + row + offs_j[:, None] * H + offs_h[None, :],
                mask=jmask[:, None] & hmask[None, :], other=0.0).to(tl.float32) * LOG2E
    if HAS_MASK:
        keep = tl.load(mask_ptr + b * smb + i * smi + offs_j * smj, mask=jmask, other=1)
        x = tl.where((keep != 0)[:, None], x, MASKED2)
    return x, jmask


# INTERP marks a run in Triton's numpy interpreter (TRITON_INTERPRET=1, the CPU tests), whose bf16
# support has two faults worked around here so that the CPU tests see the GPU's numerics:
# its bf16 dot multiplies the raw bit patterns, and its fp32 -> bf16 cast truncates.


_cast = interpret.cast


@triton.jit
def _dot(a, b, acc, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """acc + a @ b. In the interpreter: dot the same, already-rounded operands in fp32 (products of
    bf16 numbers are exact in fp32, so the result is what tensor cores give)."""
    if INTERP:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=IN_PREC)


@triton.jit
def _p_tile(
    bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr,
):
    """Softmax probabilities P[i, j] for head h as a [BLOCK_I, BLOCK_J] tile (0 outside R): the
    stored dtype when P_STORED, else fp32 rebuilt from the bias and the row statistics."""
    imask = offs_i < R
    valid = imask[:, None] & (offs_j < R)[None, :]
    rows = offs_i.to(tl.int64)
    if P_STORED:
        p = tl.load(p_ptr + ((b * H + h) * R + rows[:, None]) * R + offs_j[None, :], mask=valid, other=0.0)
    else:
        x = tl.load(bias_ptr + ((b * R + rows[:, None]) * R + offs_j[None, :]) * H + h,
                    mask=valid, other=0.0).to(tl.float32) * LOG2E
        if HAS_MASK:
            keep = tl.load(mask_ptr + b * smb + rows[:, None] * smi + offs_j[None, :] * smj, mask=valid, other=1)
            x = tl.where(keep != 0, x, MASKED2)
        stat = (b * H + h) * R + offs_i
        m = tl.load(m2_ptr + stat, mask=imask, other=0.0)
        l = tl.load(l2_ptr + stat, mask=imask, other=0.0)
        p = tl.where(valid, tl.exp2(x - m[:, None] - l[:, None]), 0.0)
    return p


# The GEMM view. For one (b, h), the operands v, g, out, dout, dv are matrices X[row, n] with
# row in R (i or j) and n = s*C + c in S*C. Two memory layouts are read:
# - "flat": the caller's [B,S,R,H,C] tensor itself; X[row, n] sits at s*R*H*C + row*H*C + h*C + c,
#   so a tile's C contiguous channels load as one vector when C is a power of two (Triton's axis
#   analysis sees n % C as contiguous) and no reshape sits between the load and the dot;
# - "gemm": a copy in [B,H,R,S*C] (written by _to_gemm_layout_kernel or the backward's prep
#   kernel), where X is row-major and contiguous: full-width coalesced tile loads.


@triton.jit
def _view(b, h, S, R, H: tl.constexpr, C: tl.constexpr, GEMM: tl.constexpr):
    """(base offset, row stride) of X for (b, h) in the flat or the gemm layout."""
    if GEMM:
        return (b * H + h) * R * (S * C), S * C
    else:
        return b * S * R * (H * C) + h * C, H * C


@triton.jit
def _n_offsets(n0, S, R, H: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr, GEMM: tl.constexpr):
    """Offsets of columns n0 .. n0+BLOCK_N of X (n = s*C + c) and their mask."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    if GEMM:
        off = offs_n.to(tl.int64)
    else:
        off = (offs_n // C).to(tl.int64) * (R * (H * C)) + offs_n % C
    return off, offs_n < S * C


@triton.jit
def _xtile(ptr, base, stride, rows, R, off, nmask):
    """X[rows, n-block] as a [rows, BLOCK_N] tile (0 outside)."""
    return tl.load(ptr + base + rows.to(tl.int64)[:, None] * stride + off[None, :],
                   mask=(rows < R)[:, None] & nmask[None, :], other=0.0)


@triton.jit
def _program(H: tl.constexpr, HEADS_FIRST: tl.constexpr):
    """(first, second tile index, b, h) of a program launched on the grid launch.grid made: (B*H, second,
    first) with HEADS_FIRST, else (first, second, B*H)."""
    if HEADS_FIRST:
        pid_bh = tl.program_id(0).to(tl.int64)
        return tl.program_id(2), tl.program_id(1), pid_bh // H, pid_bh % H
    else:
        pid_bh = tl.program_id(2).to(tl.int64)
        return tl.program_id(0), tl.program_id(1), pid_bh // H, pid_bh % H


@triton.jit
def _flat_io(b, h, rows, n0, S, R, H: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr):
    """Offsets and mask of X[rows, n0 + ...] in the caller's [B,S,R,H,C] layout (v, g, out, dout, dv)."""
    base, stride = _view(b, h, S, R, H, C, False)
    off, nmask = _n_offsets(n0, S, R, H, C, BLOCK_N, False)
    return base + rows.to(tl.int64)[:, None] * stride + off[None, :], (rows < R)[:, None] & nmask[None, :]


@triton.jit
def _nmajor_or_gemm(b, h, rows, n0, S, R, H: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr,
                    NMAJOR: tl.constexpr):
    """Offsets of X[rows, n0 + ...] in the gemm layout [B,H,R,S*C], or with NMAJOR in [B,H,S*C,R]."""
    offs_n = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
    head = (b * H + h) * R * (S * C)
    if NMAJOR:
        return head + offs_n[None, :] * R + rows[:, None]
    else:
        return head + rows.to(tl.int64)[:, None] * (S * C) + offs_n[None, :]


@triton.jit
def _to_gemm_layout_kernel(
    x_ptr, xt_ptr, S, R, H: tl.constexpr, C: tl.constexpr, NMAJOR: tl.constexpr, HEADS_FIRST: tl.constexpr,
    INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """xt[b, h, i, s*C + c] = x[b, s, i, h, c]: the operand copy the "gemm" layout reads; with
    NMAJOR the copy is [B,H,S*C,R] (xt[b, h, s*C + c, i]) instead."""
    pid_n, pid_i, b, h = _program(H, HEADS_FIRST)
    rows = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    io, msk = _flat_io(b, h, rows, pid_n * BLOCK_N, S, R, H, C, BLOCK_N)
    x = tl.load(x_ptr + io, mask=msk, other=0.0)
    tl.store(xt_ptr + _nmajor_or_gemm(b, h, rows, pid_n * BLOCK_N, S, R, H, C, BLOCK_N, NMAJOR), x, mask=msk)


@triton.jit
def _group_cols(n0, h0, S, R, H: tl.constexpr, C: tl.constexpr, HEADS: tl.constexpr, BLOCK_N: tl.constexpr):
    """Columns n0 .. n0+BLOCK_N of a head group's [rows, n] view of a flat [B,S,R,H,C] tensor: the
    HEADS heads from h0 side by side, n = s*HEADS*C + t*C + c for head h0 + t. Returns the offsets
    from row 0 of head h0, the mask of real columns (s < S, h0 + t < H) and t per column. With
    HEADS = 1 this is the flat view of _n_offsets; with more, the channels of a group are one
    contiguous piece (bf16, C = 8, two heads: a whole 32-byte sector instead of half of one)."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    piece = offs_n % (HEADS * C)
    off = (offs_n // (HEADS * C)).to(tl.int64) * (R * (H * C)) + piece
    t = piece // C
    if H % HEADS == 0:  # no head past H: a mask Triton's vectorizer can see through (s < S only)
        return off, offs_n < S * (HEADS * C), t
    return off, (offs_n < S * (HEADS * C)) & (h0 + t < H), t


@triton.jit
def _second_head(h0, H: tl.constexpr):
    """The second head of a pair, clamped to a real head: past H (odd H) its columns are masked
    off, so any finite P serves."""
    if H % 2 == 0:
        return h0 + 1
    return tl.minimum(h0 + 1, H - 1)


@triton.jit
def _fwd_tile(S, R, H: tl.constexpr, C: tl.constexpr, HEADS: tl.constexpr, HEADS_FIRST: tl.constexpr,
              BLOCK_I: tl.constexpr, BLOCK_N: tl.constexpr):
    """The tile of a forward program (both forward kernels): b, its first head h0, n0, the rows
    offs_i, and in the flat layout the base of head h0 with the head group's column offsets, mask
    and head per column (_group_cols), plus the epilogue's offsets and mask for v, g, out and y."""
    pid_n, pid_i, b, hg = _program((H + HEADS - 1) // HEADS, HEADS_FIRST)
    h0 = hg * HEADS
    n0 = pid_n * BLOCK_N
    base = b * S * R * (H * C) + h0 * C  # head h0 in the flat layout (v, g, out, y)
    off, nmask, col_t = _group_cols(n0, h0, S, R, H, C, HEADS, BLOCK_N)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    io = base + offs_i.to(tl.int64)[:, None] * (H * C) + off[None, :]
    iomask = (offs_i < R)[:, None] & nmask[None, :]
    return pid_i, b, h0, n0, offs_i, base, off, nmask, col_t, io, iomask


@triton.jit
def _fwd_kernel(
    v_ptr, g_ptr, out_ptr, y_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, V_GEMM: tl.constexpr, STORE_Y: tl.constexpr,
    IN_PREC: tl.constexpr, HEADS_FIRST: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr,
    WAIT_PRIOR: tl.constexpr = False,
):
    """out[i, n] = sigmoid(g[i, n]) * y[i, n], y = sum_j P[i, j] v[j, n], for one (b, head group)
    and an (i, n) tile; with STORE_Y also y itself in fp32 (for the backward).

    HEADS = 2: a program owns two adjacent heads (see _group_cols). Per j-block it loads one v tile
    holding both heads' channels, in the caller's (s, h, c) column order, and multiplies it by
    each head's P into that head's accumulator; the epilogue keeps, per column, the accumulator of
    the column's head. Twice the tensor-core work buys whole memory sectors for v, g and out when a
    head's C channels fill only half of one (bf16, C = 8). V_GEMM (the per-head copy of v) needs
    HEADS = 1. WAIT_PRIOR: launched before the statistics kernel ended (options.use_pdl), wait for it here."""
    pid_i, b, h0, n0, offs_i, base, off, nmask, col_t, io, iomask = _fwd_tile(
        S, R, H, C, HEADS, HEADS_FIRST, BLOCK_I, BLOCK_N)
    if WAIT_PRIOR:
        gdc_wait()
    if V_GEMM:
        vbase, vstride = _view(b, h0, S, R, H, C, True)
        voff, vmask = _n_offsets(n0, S, R, H, C, BLOCK_N, True)
    acc = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    if HEADS == 2:
        acc1 = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    for j0 in range(0, R, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        # P before v: with v first the fp32 forward took 76.4 instead of 75.0 us (H100, same run)
        p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h0, offs_i, offs_j, R, H, smb, smi, smj,
                    HAS_MASK, P_STORED)
        if V_GEMM:
            vt = _xtile(v_ptr, vbase, vstride, offs_j, R, voff, vmask)
        else:
            vt = _xtile(v_ptr, base, H * C, offs_j, R, off, nmask)
        acc = _dot(_cast(p, vt.dtype, INTERP), vt, acc, IN_PREC, INTERP)
        if HEADS == 2:
            p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, _second_head(h0, H), offs_i, offs_j, R, H,
                        smb, smi, smj, HAS_MASK, P_STORED)
            acc1 = _dot(_cast(p, vt.dtype, INTERP), vt, acc1, IN_PREC, INTERP)
    if HEADS == 2:
        acc = tl.where((col_t == 0)[None, :], acc, acc1)
    _gate_and_store(acc, g_ptr, out_ptr, y_ptr, io, iomask, STORE_Y, INTERP)


@triton.jit
def _gate_and_store(acc, g_ptr, out_ptr, y_ptr, io, iomask, STORE_Y: tl.constexpr, INTERP: tl.constexpr):
    """The forward's epilogue: out = sigmoid(g) * acc at offsets io, and with STORE_Y acc itself."""
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=iomask, other=0.0).to(tl.float32))
    tl.store(out_ptr + io, _cast(acc * gate, out_ptr.dtype.element_ty, INTERP), mask=iomask)
    if STORE_Y:
        tl.store(y_ptr + io, acc, mask=iomask)


@triton.jit
def _fwd_tma_kernel(
    p_desc, v_desc, v_ptr, g_ptr, out_ptr, y_ptr, S, R, H: tl.constexpr, C: tl.constexpr,
    V_GEMM: tl.constexpr, V_TMA: tl.constexpr, STORE_Y: tl.constexpr, HEADS_FIRST: tl.constexpr,
    INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr,
    WAIT_PRIOR: tl.constexpr = False,
):
    """_fwd_kernel from a stored 16-bit P read through a TMA descriptor ([B*H*R, R]: columns past
    R arrive as zeros), and v either the same way from its gemm copy ([B*H*R, S*C], V_TMA: needs
    R % BLOCK_J == 0, or a tile's last rows would be the next head's) or with pointer loads (from v
    in place, or from the gemm copy with V_GEMM). HEADS as in _fwd_kernel (v in place only).
    The bulk copies free the load path for the larger tiles that cut the re-reads of P and v.
    WAIT_PRIOR as in _fwd_kernel."""
    pid_i, b, h0, n0, offs_i, base, off, nmask, col_t, io, iomask = _fwd_tile(
        S, R, H, C, HEADS, HEADS_FIRST, BLOCK_I, BLOCK_N)
    if WAIT_PRIOR:
        gdc_wait()
    if V_GEMM and not V_TMA:
        vbase, vstride = _view(b, h0, S, R, H, C, True)
        voff, vmask = _n_offsets(n0, S, R, H, C, BLOCK_N, True)
    acc = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    if HEADS == 2:
        acc1 = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    bh = (b * H + h0).to(tl.int32)
    for j0 in range(0, R, BLOCK_J):
        p = p_desc.load([bh * R + pid_i * BLOCK_I, j0])  # P before v: the order measured fastest
        if V_TMA:
            vt = v_desc.load([bh * R + j0, n0])
        elif V_GEMM:
            vt = _xtile(v_ptr, vbase, vstride, j0 + tl.arange(0, BLOCK_J), R, voff, vmask)
        else:
            vt = _xtile(v_ptr, base, H * C, j0 + tl.arange(0, BLOCK_J), R, off, nmask)
        acc = _dot(p, vt, acc, "ieee", INTERP)
        if HEADS == 2:
            bh1 = (b * H + _second_head(h0, H)).to(tl.int32)
            acc1 = _dot(p_desc.load([bh1 * R + pid_i * BLOCK_I, j0]), vt, acc1, "ieee", INTERP)
    if HEADS == 2:
        acc = tl.where((col_t == 0)[None, :], acc, acc1)
    _gate_and_store(acc, g_ptr, out_ptr, y_ptr, io, iomask, STORE_Y, INTERP)


@triton.jit
def _bwd_prep_kernel(
    dout_ptr, y_ptr, g_ptr, dy_ptr, dg_ptr, d_ptr,
    S, R, H: tl.constexpr, C: tl.constexpr, DY_GEMM: tl.constexpr, dyn_ptr, DY_NMAJOR: tl.constexpr,
    HEADS_FIRST: tl.constexpr, INTERP: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Elementwise part of the backward for one (b, h) and an (i, n) tile, from the forward's fp32 y.
    With DY_NMAJOR, dY' is also written n-major ([B,H,S*C,R]) for the fp32 FMA dbias kernel.

    dY' = dout * sigmoid(g), rounded to the GEMM operand dtype and written in the layout the GEMMs
    read; dg = dout * y * sigmoid(g) * (1 - sigmoid(g)); D[b,h,i] += sum_n dY' * y (atomically over
    the n-blocks). D from the *rounded* dY' and the unrounded y equals sum_j P[i,j] dP[i,j] for the
    dP the dbias kernel computes, so dP - D cancels where it should (a row with one dominant j:
    with D from the rounded output instead, bf16 rounding left gradients of 25% of scale there).
    """
    pid_n, pid_i, b, h = _program(H, HEADS_FIRST)
    rows = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    io, msk = _flat_io(b, h, rows, pid_n * BLOCK_N, S, R, H, C, BLOCK_N)
    do = tl.load(dout_ptr + io, mask=msk, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + io, mask=msk, other=0.0)
    sg = tl.sigmoid(tl.load(g_ptr + io, mask=msk, other=0.0).to(tl.float32))
    tl.store(dg_ptr + io, _cast(do * y * sg * (1.0 - sg), dg_ptr.dtype.element_ty, INTERP), mask=msk)
    dy = _cast(do * sg, dy_ptr.dtype.element_ty, INTERP)
    dbase, dstride = _view(b, h, S, R, H, C, DY_GEMM)
    doff, _ = _n_offsets(pid_n * BLOCK_N, S, R, H, C, BLOCK_N, DY_GEMM)
    tl.store(dy_ptr + dbase + rows.to(tl.int64)[:, None] * dstride + doff[None, :], dy, mask=msk)
    if DY_NMAJOR:
        tl.store(dyn_ptr + _nmajor_or_gemm(b, h, rows, pid_n * BLOCK_N, S, R, H, C, BLOCK_N, True), dy, mask=msk)
    tl.atomic_add(d_ptr + (b * H + h) * R + rows, tl.sum(dy.to(tl.float32) * y, axis=1), mask=rows < R)


@triton.jit
def _bwd_dv_kernel(
    dy_ptr, dv_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, DY_GEMM: tl.constexpr, IN_PREC: tl.constexpr,
    HEADS_FIRST: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dv[j, n] = sum_i P[i, j] dY'[i, n] for one (b, h) and a (j, n) tile."""
    pid_n, pid_j, b, h = _program(H, HEADS_FIRST)
    dbase, dstride = _view(b, h, S, R, H, C, DY_GEMM)
    doff, nmask = _n_offsets(pid_n * BLOCK_N, S, R, H, C, BLOCK_N, DY_GEMM)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    acc = tl.zeros([BLOCK_J, BLOCK_N], dtype=tl.float32)
    for i0 in range(0, R, BLOCK_I):
        offs_i = i0 + tl.arange(0, BLOCK_I)
        p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
                    HAS_MASK, P_STORED)
        dy = _xtile(dy_ptr, dbase, dstride, offs_i, R, doff, nmask)
        acc = _dot(tl.trans(_cast(p, dy.dtype, INTERP)), dy, acc, IN_PREC, INTERP)
    io, iomask = _flat_io(b, h, offs_j, pid_n * BLOCK_N, S, R, H, C, BLOCK_N)
    tl.store(dv_ptr + io, _cast(acc, dv_ptr.dtype.element_ty, INTERP), mask=iomask)


@triton.jit
def _bwd_dbias_kernel(
    dy_ptr, v_ptr, d_ptr, dbias_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, DY_GEMM: tl.constexpr, V_GEMM: tl.constexpr,
    NMAJOR: tl.constexpr, IN_PREC: tl.constexpr, HEADS_FIRST: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr, COMPENSATED: tl.constexpr = False,
):
    """dbias[i, j, h] = P[i, j] * (sum_n dY'[i, n] v[j, n] - D[i]) for one (b, h) and an (i, j) tile.

    NMAJOR: dY' and v are [B,H,S*C,R] copies, so both operands load contiguous along their M/N
    dimension (i, j) rather than along the reduction n (what the fp32 FMA dot wants).
    COMPENSATED (fp32 at ieee and bf16x6): each n-block's dot starts from zero and its sum joins the
    running one through a compensated (Kahan) add. One accumulator carried through every dot sums
    the S*C products of dP one after another (the FMA dot, and Triton folds ``acc + dot(a, b, 0)``
    back into that), whose rounding error grows with S*C: at S*C = 8192 to 65536 (C = 64, 128) it
    exceeds 3x eager's, whose GEMM splits the reduction (see MSAPWAOptions.compensated_dbias)."""
    pid_j, pid_i, b, h = _program(H, HEADS_FIRST)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    imask = offs_i < R
    jmask = offs_j < R
    dbase, dstride = _view(b, h, S, R, H, C, DY_GEMM)
    vbase, vstride = _view(b, h, S, R, H, C, V_GEMM)
    acc = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    if COMPENSATED:
        comp = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)  # the low part acc has lost (Kahan)
    for n0 in range(0, S * C, BLOCK_N):  # the reduction over s stays inside: no S*R*R tensor
        if NMAJOR:
            offs_n = n0 + tl.arange(0, BLOCK_N)
            kmask = (offs_n < S * C)[:, None]
            head = (b * H + h) * (S * C) * R
            col = head + offs_n.to(tl.int64)[:, None] * R
            dyn = tl.load(dy_ptr + col + offs_i[None, :], mask=kmask & imask[None, :], other=0.0)
            vn = tl.load(v_ptr + col + offs_j[None, :], mask=kmask & jmask[None, :], other=0.0)
            a = tl.trans(dyn)
            bt = vn
        else:
            doff, nmask = _n_offsets(n0, S, R, H, C, BLOCK_N, DY_GEMM)
            voff, _ = _n_offsets(n0, S, R, H, C, BLOCK_N, V_GEMM)
            a = _xtile(dy_ptr, dbase, dstride, offs_i, R, doff, nmask)
            bt = tl.trans(_xtile(v_ptr, vbase, vstride, offs_j, R, voff, nmask))
        if COMPENSATED:
            part = _dot(a, bt, tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32), IN_PREC, INTERP) - comp
            total = acc + part
            comp = (total - acc) - part
            acc = total
        else:
            acc = _dot(a, bt, acc, IN_PREC, INTERP)
    p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
                HAS_MASK, P_STORED).to(tl.float32)
    d = tl.load(d_ptr + (b * H + h) * R + offs_i, mask=imask, other=0.0)
    ds = p * (acc - d[:, None])
    rows = offs_i.to(tl.int64)
    if HAS_MASK:  # a masked pair's logit is a constant: no gradient, even in a fully masked row
        keep = tl.load(mask_ptr + b * smb + rows[:, None] * smi + offs_j[None, :] * smj,
                       mask=imask[:, None] & jmask[None, :], other=1)
        ds = tl.where(keep != 0, ds, 0.0)
    tl.store(dbias_ptr + ((b * R + rows[:, None]) * R + offs_j[None, :]) * H + h,
             _cast(ds, dbias_ptr.dtype.element_ty, INTERP), mask=imask[:, None] & jmask[None, :])
