"""MSA pair-weighted averaging with gating (AlphaFold 3, Algorithm 10), fused in Triton.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j softmax_j(bias[b,i,j,h] | mask) * v[b,s,j,h,:]

    v, g: [B,S,R,H,C]    bias: [B,R,R,H]    mask: broadcastable to [B,R,R] (nonzero = keep)
    out:  [B,S,R,H*C]    (the layout Ligo's MSAPairWeightedAveraging feeds to its output projection)

Mask semantics: a masked pair's logit is *replaced* by -1e9. A partly masked row ignores its masked
columns, as with Ligo's additive ``b + 1e8*(mask-1)``; a fully masked row averages uniformly. (In
Ligo's additive form such a row is left to fp32 rounding: -1e8 + b rounds to multiples of 8, so
the weights there follow the rounding, not the bias. Only fully masked rows differ.)

Design: for each (b, h) this is a GEMM, P[i, j] (R x R, the softmax of the bias over j) times
V_h[j, n] (R x S*C, n = s*C + c), so the S rows share one softmax and tensor cores do the work.
- ``_stats_kernel`` computes, once per (b, h, i), the row maximum m and log2 of the row sum l of
  the (masked) logits in base 2; it reads bias rows [j, h] contiguously. Optionally it also writes
  P = exp2(x - m - l) as a [B,H,R,R] buffer ("stored" mode) so the GEMMs read P coalesced.
- In "recompute" mode the GEMM kernels rebuild P tiles from the bias and (m, l) in registers, so
  nothing of size R*R beyond the bias itself and its gradient is ever allocated (largest R).
- GEMM operands are 2-D [rows, n] tiles read in place ("flat" layout) or from a [B,H,R,S*C] copy
  ("gemm" layout); see _view and _use_gemm_layout.
- ``_fwd_kernel``: acc[i, n] = sum_j P[i, j] V[j, n], then the sigmoid gate in the epilogue; when a
  gradient is needed, y = acc is kept in fp32 for the backward. ``_fwd_tma_kernel`` is the same for
  16-bit inputs at larger sizes, reading the stored P (and v's gemm copy) through TMA descriptors.
- Every tiled kernel launches heads first (see _grid): neighbouring heads share memory sectors.
  On tensor cores, where one head's C channels fill half a 32-byte sector (bf16, C = 8), a forward
  program owns two adjacent heads (HEADS = 2, _group_heads) so v, g and out move in whole sectors.
- msa_pwa_fma holds an opt-in Gluon version of the exact fp32 forward (USE_GLUON_FMA_FORWARD);
  msa_pwa_split the Gluon bf16x6 forward that Hopper GPUs use by default (USE_GLUON_SPLIT_FORWARD).
- fp32 dots: FMA by default ("ieee"); "bf16x6" splits each operand into three bf16 parts for the
  tensor cores (fp32-class error, faster on Ampere and newer), "bf16x3" / "tf32x3" / "tf32" trade
  accuracy for speed.
- On Hopper the forward is launched while the statistics kernel runs (programmatic dependent
  launch, USE_PDL) and waits for it on the GPU.
- Backward as in flash attention:
    dY' = dout * sigmoid(g) (rounded);  dg = dout * y * sigmoid(g) * (1 - sigmoid(g));  D[i] = sum_n dY' * y
    dV = P^T dY';  dP = dY' V^T (summed over n inside the kernel);  dbias = P * (dP - D)
  Nothing of size S*R*R exists at any point; inputs are never written.
Offsets that can exceed 2**31 (anything multiplied by S*R*H*C or R*R*H) are computed in int64.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from af3_kernels.ops import msa_pwa_fma, msa_pwa_split
from af3_kernels.ops.msa_pwa_constants import MASKED_LOGIT

try:  # grid dependency control (programmatic dependent launch), Triton 3.4 and newer
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older Triton: USE_PDL has no effect
    gdc_launch_dependents = gdc_wait = None

LOG2E = tl.constexpr(1.4426950408889634)
MASKED2 = tl.constexpr(MASKED_LOGIT * 1.4426950408889634)  # the same in base 2

#: tests set this to fill every buffer the kernels are meant to overwrite with NaN first, so an
#: element the kernels forget to write fails the comparison instead of passing by luck.
POISON_OUTPUTS = False
#: optional per-kernel block-size overrides, used by the tuning sweep of the benchmark script:
#: {"fwd": {"BLOCK_I": 64, ...}, "dv": {...}, "dbias": {...}}
CONFIG_OVERRIDES: dict[str, dict] = {}
#: P buffers up to this size are stored between the softmax and the GEMMs ("auto" mode)
STORED_P_MAX_BYTES = 256 * 2**20
#: fp32 with precision="ieee" runs its dots on the FMA units: there dbias reads [B,H,S*C,R]
#: copies of dY' and v, operands contiguous along i and j rather than along the reduction n
#: (H100, fp32 fwd+bwd at S=128, R=384, C=8: 310 instead of 460 us; docs/KERNELS.md)
FMA_DBIAS_NMAJOR = True
#: bf16/fp16 forward from a stored P: read P (and v's gemm copy) through TMA descriptors with the
#: larger tiles of _fwd_tma_kernel (see _tma_ok); False keeps the pointer-load _fwd_kernel
USE_TMA_FORWARD = True
#: ... from this GEMM size R*S*C up. H100, bf16 (tune_msa_pwa.py, one run): (128, 384, 8), 0.4M,
#: 36 us with pointer loads vs 40 with TMA; (128, 384, 32), 1.6M, 62 vs 59; (128, 768, 32) 161 vs
#: 144; (512, 768, 8) 262 vs 231 (gemm layout). The smaller pointer-load tiles win only at the smallest.
TMA_FORWARD_MIN_RN = 2**20
#: layout="auto" also picks the gemm copy for short channel pieces at small S when a backward
#: follows. Off: faster (H100 bf16 fwd+bwd (128, 384, 8): 135 vs 171 us) but the saved copy of v
#: lifts the peak above eager's at R = 384 and 768 (tune_msa_pwa.py memory-variants); pass
#: layout="gemm" for the speed.
GEMM_LAYOUT_FOR_BACKWARD = False
#: the forward's stored P is kept for the backward instead of being rebuilt there (H100 fp32
#: fwd+bwd (128, 384, 8): 284 vs 289 us; the peak stays under eager's at R = 384 to 3072)
KEEP_P_FOR_BACKWARD = True
#: exact fp32 forward from a stored P in Gluon with explicit per-thread accumulator blocks
#: (msa_pwa_fma) instead of _fwd_kernel's tl.dot. Off: correct but not faster (H100, (128, 384, 8):
#: 78.4 us at its best configuration vs 76.6; docs/KERNELS.md)
USE_GLUON_FMA_FORWARD = False
#: fp32 forward at precision "bf16x6" from a stored P on Hopper in Gluon (msa_pwa_split): the six
#: products of a k-step as one batch of wgmma, 80 registers (H100 (128, 384, 8), same process:
#: 62.0-62.9 us vs 66.2-66.7 for _fwd_kernel's tl.dot bf16x6; docs/KERNELS.md)
USE_GLUON_SPLIT_FORWARD = True
#: launch order of the tiled kernels: all heads of a tile side by side (see _grid)
HEADS_FIRST = True
#: forward programs on tensor cores own two adjacent heads whose channel pieces are shorter than a
#: 32-byte sector (bf16 C = 8), so v, g and out move in whole sectors (see _fwd_kernel, _group_heads)
GROUP_HEADS = True
#: programmatic dependent launch (Hopper+): the forward kernel is launched while the statistics
#: kernel runs and waits for its results on the GPU (griddepcontrol), hiding the launch gap between
#: the two (H100, same run: bf16 (128, 384, 8) 33.4 -> 32.9 us, fp32 75.0 -> 74.7; 0.1-0.6 us at
#: the larger shapes)
USE_PDL = True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _stats_kernel(
    bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    R, H, smb, smi, smj,
    HAS_MASK: tl.constexpr, COMPUTE_STATS: tl.constexpr, WRITE_P: tl.constexpr, INTERP: tl.constexpr,
    SINGLE: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_H: tl.constexpr, TRIGGER_DEPENDENTS: tl.constexpr,
):
    """One program per (b, i): softmax statistics over j for every head, and optionally P. SINGLE:
    the whole row is one block (R <= BLOCK_J), read once for both (H100, bf16 R=384, H=8: 5.8 us
    with two reads, 4.7 with one; torch.profiler). TRIGGER_DEPENDENTS: see USE_PDL."""
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


@triton.jit
def _cast(x, dtype: tl.constexpr, INTERP: tl.constexpr):
    """x (fp32) to ``dtype``, rounding to nearest even as the GPU does."""
    if INTERP and dtype == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        x = (bits & 0xFFFF0000).to(tl.float32, bitcast=True)
    return x.to(dtype)


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
    """(first, second tile index, b, h) of a program launched on the grid _grid made: (B*H, second,
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
    HEADS = 1. WAIT_PRIOR: launched before the statistics kernel ended (USE_PDL), wait for it here."""
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
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dbias[i, j, h] = P[i, j] * (sum_n dY'[i, n] v[j, n] - D[i]) for one (b, h) and an (i, j) tile.

    NMAJOR: dY' and v are [B,H,S*C,R] copies, so both operands load contiguous along their M/N
    dimension (i, j) rather than along the reduction n (what the fp32 FMA dot wants)."""
    pid_j, pid_i, b, h = _program(H, HEADS_FIRST)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    imask = offs_i < R
    jmask = offs_j < R
    dbase, dstride = _view(b, h, S, R, H, C, DY_GEMM)
    vbase, vstride = _view(b, h, S, R, H, C, V_GEMM)
    acc = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    for n0 in range(0, S * C, BLOCK_N):  # the reduction over s stays inside: no S*R*R tensor
        if NMAJOR:
            offs_n = n0 + tl.arange(0, BLOCK_N)
            kmask = (offs_n < S * C)[:, None]
            head = (b * H + h) * (S * C) * R
            col = head + offs_n.to(tl.int64)[:, None] * R
            dyn = tl.load(dy_ptr + col + offs_i[None, :], mask=kmask & imask[None, :], other=0.0)
            vn = tl.load(v_ptr + col + offs_j[None, :], mask=kmask & jmask[None, :], other=0.0)
            acc = _dot(tl.trans(dyn), vn, acc, IN_PREC, INTERP)
        else:
            doff, nmask = _n_offsets(n0, S, R, H, C, BLOCK_N, DY_GEMM)
            voff, _ = _n_offsets(n0, S, R, H, C, BLOCK_N, V_GEMM)
            dy = _xtile(dy_ptr, dbase, dstride, offs_i, R, doff, nmask)
            vt = _xtile(v_ptr, vbase, vstride, offs_j, R, voff, nmask)
            acc = _dot(dy, tl.trans(vt), acc, IN_PREC, INTERP)
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


# ---------------------------------------------------------------------------------------------
# Launch configuration


def _config(kernel: str, dtype: torch.dtype, precision: str, gemm: bool = False, heads: int = 1) -> dict:
    """Block sizes (BLOCK_N is the width of the (s, c) tile) and launch options of one kernel.

    Defaults from the H100 sweep of plugins/af3_kernels/bench/tune_msa_pwa.py (CUDA-graph timing;
    docs/KERNELS.md): bf16 forward (128,384,8), (128,384,32), (128,768,32), (512,768,8); fp32
    (128,384,8) forward and forward+backward, ieee, bf16x6, bf16x3, tf32x3 and tf32."""
    if _interpreting():  # numpy interpreter: the smallest blocks tl.dot accepts keep it fast
        cfg = dict(BLOCK_I=16, BLOCK_J=16, BLOCK_N=16, num_warps=4, num_stages=1)
    elif dtype == torch.float32 and precision == "ieee":  # FMA path
        cfg = {
            "fwd": dict(BLOCK_I=128, BLOCK_J=32, BLOCK_N=64, num_warps=8, num_stages=3),
            "dv": dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=2),
            "dbias": dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif dtype == torch.float32 and precision.startswith("bf16x"):  # fp32 tiles split into bf16 parts
        cfg = {
            "fwd": dict(BLOCK_I=64, BLOCK_J=32, BLOCK_N=64, num_warps=4, num_stages=3),
            "dv": (dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3) if precision == "bf16x6"
                   else dict(BLOCK_I=64, BLOCK_J=128, BLOCK_N=128, num_warps=8, num_stages=2)),
            "dbias": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif dtype == torch.float32:  # tf32x3 / tf32 on tensor cores: fp32 tiles take twice the memory
        cfg = {
            "fwd": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3),
            "dv": dict(BLOCK_I=64, BLOCK_J=128, BLOCK_N=64, num_warps=8, num_stages=3),
            "dbias": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif kernel == "fwd_tma":
        cfg = dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=128, num_warps=8, num_stages=3)
        if not gemm and heads == 1:
            # v read in place, one head per program (C of 32 bytes and more): with a cap of 128
            # registers ptxas schedules the kernel with 128 instead of 104 (both fit 2 programs per
            # SM). H100, same process, bf16 (128, 384, 32) 59.2 -> 56.4 us, (128, 768, 32) 143.0 ->
            # 138.8; caps of 136 and up drop to one program per SM (73 and 172 us). The gemm-copy
            # case lost with it ((512, 768, 8) 233.7 -> 237.4): no cap there.
            cfg["maxnreg"] = 128
    else:
        cfg = {
            "fwd": (dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3) if gemm or heads == 2
                    else dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3)),
            "dv": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=128, num_warps=4, num_stages=3),
            "dbias": dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=32, num_warps=8, num_stages=2),
        }[kernel]
    over = CONFIG_OVERRIDES.get(kernel, {})
    if over and "maxnreg" not in over:  # an override is a whole configuration: no default register cap
        cfg.pop("maxnreg", None)
    return {**cfg, **over}


def _group_heads(dtype: torch.dtype, precision: str, H: int, C: int) -> int:
    """Heads per forward program in the flat layout (see _fwd_kernel): with GROUP_HEADS, two where
    a head's channels are shorter than a 32-byte memory sector and H > 1, on tensor cores only
    (each head's dot also runs over the other head's columns: the FMA path would pay in full)."""
    if not GROUP_HEADS or _fma(dtype, precision) or H == 1:
        return 1
    return 2 if C * torch.finfo(dtype).bits // 8 < 32 else 1


def _elementwise_config() -> dict:
    """The [rows, n] tile of the elementwise kernels (layout copy, backward prep)."""
    if _interpreting():
        return dict(BLOCK_I=16, BLOCK_N=16, num_warps=4)
    return {**dict(BLOCK_I=32, BLOCK_N=128, num_warps=4), **CONFIG_OVERRIDES.get("elementwise", {})}


#: CUDA's limit on the second and third grid dimensions
_GRID_YZ_MAX = 65535


def _grid(tiles0: int, tiles1: int, bh: int) -> tuple[tuple, dict]:
    """(launch grid, the HEADS_FIRST keyword it needs) for _program (tiles0: the n tiles of the
    GEMM kernels, tiles1: the row tiles). Heads first, then rows, the n tiles last: the programs of
    all heads of one tile run side by side, so the C-channel pieces of v, g and out that share a
    memory sector (adjacent heads) are read and written together and merge in L2 instead of being
    fetched, or partly written, once per head far apart in time; and the row tiles of one n range
    follow each other while its v columns are still in L2. (H100, bf16 (512, 768, 8), pointer
    kernel: heads last 370 us, heads first 262; n before rows helped there but sent the v re-reads
    of C=32 shapes to DRAM: docs/KERNELS.md.) Tile counts past CUDA's 65535 limit on the second and
    third grid dimensions fall back to heads last (tiles0 then takes the unlimited first one)."""
    heads_first = HEADS_FIRST and max(tiles0, tiles1) <= _GRID_YZ_MAX
    grid = (bh, tiles1, tiles0) if heads_first else (tiles0, tiles1, bh)
    return grid, dict(HEADS_FIRST=heads_first)


def _new(shape, dtype, device) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype, device=device)
    if POISON_OUTPUTS:
        t.fill_(float("nan"))
    return t


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


_PRECISIONS = ("ieee", "tf32", "tf32x3", "bf16x6", "bf16x3")
_LAYOUTS = ("auto", "flat", "gemm")


def _prepare_mask(mask, B, R, device):
    """A uint8 view of the pair mask broadcast to [B, R, R] (stride 0 where broadcast: no copy of v)."""
    if mask is None:
        return None, (0, 0, 0)
    if mask.dtype != torch.bool:
        mask = mask != 0
    mask = torch.broadcast_to(mask.to(device), (B, R, R))
    return mask.view(torch.uint8), mask.stride()


def _use_stored_p(p_mode: str, B, H, R, dtype) -> bool:
    if p_mode == "auto":
        return B * H * R * R * torch.finfo(dtype).bits // 8 <= STORED_P_MAX_BYTES
    if p_mode not in ("stored", "recompute"):
        raise ValueError(f"p_mode must be auto, stored or recompute, not {p_mode!r}")
    return p_mode == "stored"


def _use_gemm_layout(layout: str, dtype, S, C, training=False) -> bool:
    """"auto": copy v to the gemm layout only where the flat tiles are made of short pieces
    (C channels of under 32 bytes) and there are many of them (S*C >= 4096), or, with
    GEMM_LAYOUT_FOR_BACKWARD, whenever a backward follows. H100 sweeps (tune_msa_pwa.py): the copy
    paid off at bf16 forward (512, 768, 8) (231 vs 272 us with one head per program; head pairs in
    place come close, 236-238, but not level) and bf16 forward+backward (128, 384, 8) (135 vs 171
    us, at a memory cost); it cost time in the forward at C = 32 and fp32 (it adds a pass over v)."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, not {layout!r}")
    if layout == "auto":
        return C * torch.finfo(dtype).bits // 8 < 32 and (S * C >= 4096 or (training and GEMM_LAYOUT_FOR_BACKWARD))
    return layout == "gemm"


def _tma_ok(v) -> bool:
    """Whether the forward reads the stored P (and the gemm copy of v) through TMA descriptors:
    16-bit operands, P rows a multiple of 16 bytes (R % 8 == 0), a GEMM of at least
    TMA_FORWARD_MIN_RN = R*S*C, a Hopper or newer GPU (or the interpreter, where every size
    qualifies so the CPU tests meet this path), and USE_TMA_FORWARD."""
    _, S, R, _, C = v.shape
    if not USE_TMA_FORWARD or v.dtype not in (torch.bfloat16, torch.float16) or R % 8:
        return False
    if _interpreting():
        return True
    return R * S * C >= TMA_FORWARD_MIN_RN and v.is_cuda and torch.cuda.get_device_capability(v.device)[0] >= 9


def _gluon_fma_ok(v, precision) -> bool:
    """Whether the exact fp32 forward runs as msa_pwa_fma's Gluon kernel (USE_GLUON_FMA_FORWARD,
    a CUDA tensor, Gluon available) rather than as _fwd_kernel's tl.dot on the FMA units."""
    return (USE_GLUON_FMA_FORWARD and _fma(v.dtype, precision) and v.is_cuda and not _interpreting()
            and msa_pwa_fma.available()[0])


def _gluon_split_ok(v, precision) -> bool:
    """Whether the bf16x6 fp32 forward runs as msa_pwa_split's Gluon kernel (USE_GLUON_SPLIT_FORWARD,
    a CUDA tensor on a Hopper GPU, Gluon with wgmma) rather than as _fwd_kernel's tl.dot."""
    return (USE_GLUON_SPLIT_FORWARD and v.dtype == torch.float32 and precision == "bf16x6" and v.is_cuda
            and not _interpreting() and msa_pwa_split.available(v.device)[0])


def _pdl_ok(v) -> bool:
    """Whether the forward is launched with programmatic dependent launch (USE_PDL, Hopper or newer,
    compiled kernels, a Triton with grid dependency control)."""
    return (USE_PDL and gdc_wait is not None and v.is_cuda and not _interpreting()
            and torch.cuda.get_device_capability(v.device)[0] >= 9)


def _fma(dtype, precision) -> bool:
    return dtype == torch.float32 and precision == "ieee"


def _softmax_stats(bias, mask_u8, mstrides, B, R, H, stored, m2=None, l2=None, trigger=False):
    """(m2, l2) per (b, h, i), plus P [B,H,R,R] when ``stored``; with m2/l2 given, only P.
    ``trigger``: a forward launched with programmatic dependent launch follows (USE_PDL)."""
    compute = m2 is None
    if compute:
        m2 = _new((B, H, R), torch.float32, bias.device)
        l2 = _new((B, H, R), torch.float32, bias.device)
    p = _new((B, H, R, R), bias.dtype, bias.device) if stored else m2
    bh = _pow2(H)
    # A whole row in one block while it is small (at most 8192 logits per program), else blocks of
    # 2048 logits; the interpreter's blocks stay tiny but still meet the single-block path.
    single = _pow2(R) * bh <= (64 if _interpreting() else 8192)
    if single:
        block_j = max(16, _pow2(R))
    else:
        block_j = 16 if _interpreting() else max(16, min(_pow2(R), 2048 // bh))
    _stats_kernel[(B * R,)](
        bias, mask_u8 if mask_u8 is not None else bias, m2, l2, p, R, H, *mstrides,
        HAS_MASK=mask_u8 is not None, COMPUTE_STATS=compute, WRITE_P=stored, INTERP=_interpreting(),
        SINGLE=single, BLOCK_J=block_j, BLOCK_H=bh, TRIGGER_DEPENDENTS=trigger,
        num_warps=8 if block_j * bh >= 4096 else 4,
    )
    return m2, l2, (p if stored else None)


def _to_gemm_layout(x, nmajor=False):
    """x [B,S,R,H,C] copied to [B,H,R,S*C], the layout whose GEMM tiles load contiguously
    (``nmajor``: to [B,H,S*C,R])."""
    B, S, R, H, C = x.shape
    xt = _new((B, H, S * C, R) if nmajor else (B, H, R, S * C), x.dtype, x.device)
    cfg = _elementwise_config()
    grid, order = _grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
    _to_gemm_layout_kernel[grid](x, xt, S, R, H, C, NMAJOR=nmajor, **order, INTERP=_interpreting(), **cfg)
    return xt


def _fwd_launch_config(kernel, v, precision, gemm):
    """_config of a forward kernel with its HEADS (heads per program) settled: an override's
    number, else _group_heads's; always 1 with the gemm copy of v, which is per head."""
    heads = 1 if gemm else CONFIG_OVERRIDES.get(kernel, {}).get(
        "HEADS", _group_heads(v.dtype, precision, v.shape[3], v.shape[4]))
    return {**_config(kernel, v.dtype, precision, gemm, heads), "HEADS": heads}


def _forward(v, bias, g, mask_u8, mstrides, precision, stored, gemm, keep_y):
    """out, the softmax statistics, the v operand the kernels read (v itself or its gemm copy),
    with ``keep_y`` the ungated fp32 y the backward starts from, and P when ``stored``."""
    B, S, R, H, C = v.shape
    # a Gluon forward (msa_pwa_split or msa_pwa_fma) where one applies; they are launched the
    # ordinary way, after the statistics kernel has finished
    gluon = None
    if stored and not gemm:
        gluon = (msa_pwa_split if _gluon_split_ok(v, precision) else
                 msa_pwa_fma if _gluon_fma_ok(v, precision) else None)
    pdl = _pdl_ok(v) and gluon is None
    m2, l2, p = _softmax_stats(bias, mask_u8, mstrides, B, R, H, stored, trigger=pdl and not gemm)
    vop = _to_gemm_layout(v) if gemm else v
    # the forward kernel's launch may overlap the kernel before it, and waits for it on the GPU
    early = dict(WAIT_PRIOR=True, launch_pdl=True) if pdl else {}
    out = _new((B, S, R, H * C), v.dtype, v.device)
    y = _new(v.shape, torch.float32, v.device) if keep_y else None
    if stored and _tma_ok(v):
        cfg = _fwd_launch_config("fwd_tma", v, precision, gemm)
        bi, bj, bn, hp = cfg["BLOCK_I"], cfg["BLOCK_J"], cfg["BLOCK_N"], cfg["HEADS"]
        p_desc = TensorDescriptor(p, [B * H * R, R], [R, 1], [bi, bj])
        v_tma = gemm and (S * C) % 8 == 0 and R % bj == 0
        v_desc = TensorDescriptor(vop, [B * H * R, S * C], [S * C, 1], [bj, bn]) if v_tma else p_desc
        grid, order = _grid(triton.cdiv(S * hp * C, bn), triton.cdiv(R, bi), B * triton.cdiv(H, hp))
        _fwd_tma_kernel[grid](p_desc, v_desc, vop, g, out, y if keep_y else out, S, R, H, C,
                              V_GEMM=gemm, V_TMA=v_tma, STORE_Y=keep_y, **order, INTERP=_interpreting(), **cfg,
                              **early)
        return out, m2, l2, vop, y, p
    if gluon is not None:
        gluon.forward(p, v, g, out, y, _grid)
        return out, m2, l2, vop, y, p
    cfg = _fwd_launch_config("fwd", v, precision, gemm)
    hp = cfg["HEADS"]
    grid, order = _grid(triton.cdiv(S * hp * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]),
                        B * triton.cdiv(H, hp))
    _fwd_kernel[grid](
        vop, g, out, y if keep_y else out, bias, mask_u8 if mask_u8 is not None else bias, m2, l2,
        p if stored else m2, S, R, *mstrides, H, C,
        HAS_MASK=mask_u8 is not None, P_STORED=stored, V_GEMM=gemm, STORE_Y=keep_y, IN_PREC=precision,
        **order, INTERP=_interpreting(), **cfg, **early,
    )
    return out, m2, l2, vop, y, p


def _backward(dout, v, vop, bias, g, y_owner, mask_u8, mstrides, m2, l2, precision, stored, gemm, need, p=None):
    """dv, dbias, dg; ``vop`` is v in the layout the forward read (``gemm``: [B,H,R,S*C]);
    ``y_owner`` a list holding the only reference to the forward's fp32 y = sum_j P v (taken here
    and released after the first kernel); ``p`` the forward's stored P, rebuilt here when None."""
    y = y_owner.pop()
    B, R, _, H = bias.shape
    C = g.shape[-1]
    S = g.shape[1]
    dout = dout.contiguous()
    dy = _new((B, H, R, S * C) if gemm else g.shape, g.dtype, g.device)  # dout * sigmoid(g): a GEMM operand
    dg = _new(g.shape, g.dtype, g.device)
    d = torch.zeros((B, H, R), dtype=torch.float32, device=g.device)  # accumulated atomically
    need_v, need_bias = need
    nmajor = need_bias and FMA_DBIAS_NMAJOR and _fma(g.dtype, precision)
    dyn = _new((B, H, S * C, R), g.dtype, g.device) if nmajor else dy
    ecfg = _elementwise_config()
    grid, order = _grid(triton.cdiv(S * C, ecfg["BLOCK_N"]), triton.cdiv(R, ecfg["BLOCK_I"]), B * H)
    _bwd_prep_kernel[grid](dout, y, g, dy, dg, d, S, R, H, C, gemm, dyn, nmajor, **order, INTERP=_interpreting(),
                           **ecfg)
    del y  # the last reference: y's memory returns before dv, dbias and P are allocated
    if stored and (need_v or need_bias) and p is None:
        _, _, p = _softmax_stats(bias, mask_u8, mstrides, B, R, H, True, m2, l2)
    common = dict(HAS_MASK=mask_u8 is not None, P_STORED=stored, IN_PREC=precision, INTERP=_interpreting())
    mk = mask_u8 if mask_u8 is not None else bias
    pp = p if p is not None else m2
    dv = dbias = None
    if need_v:
        dv = _new(g.shape, g.dtype, g.device)
        cfg = _config("dv", g.dtype, precision)
        grid, order = _grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_J"]), B * H)
        _bwd_dv_kernel[grid](dy, dv, bias, mk, m2, l2, pp, S, R, *mstrides, H, C, DY_GEMM=gemm, **order, **common,
                             **cfg)
    if need_bias:
        dbias = _new(bias.shape, bias.dtype, bias.device)
        cfg = _config("dbias", g.dtype, precision)
        grid, order = _grid(triton.cdiv(R, cfg["BLOCK_J"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
        if nmajor:
            _bwd_dbias_kernel[grid](dyn, _to_gemm_layout(v, nmajor=True), d, dbias, bias, mk, m2, l2, pp,
                                    S, R, *mstrides, H, C, DY_GEMM=gemm, V_GEMM=gemm, NMAJOR=True, **order,
                                    **common, **cfg)
        else:
            _bwd_dbias_kernel[grid](dy, vop, d, dbias, bias, mk, m2, l2, pp, S, R, *mstrides, H, C,
                                    DY_GEMM=gemm, V_GEMM=gemm, NMAJOR=False, **order, **common, **cfg)
    return dv, dbias, dg


def _check(v, bias, g):
    if v.dim() != 5 or g.shape != v.shape:
        raise ValueError(f"v and g must be [B,S,R,H,C] of one shape, got {tuple(v.shape)} and {tuple(g.shape)}")
    B, S, R, H, C = v.shape
    if tuple(bias.shape) != (B, R, R, H):
        raise ValueError(f"bias must be [B,R,R,H] = {(B, R, R, H)}, got {tuple(bias.shape)}")
    if not (v.dtype == g.dtype == bias.dtype):
        raise ValueError(f"v, bias and g must share a dtype, got {v.dtype}, {bias.dtype}, {g.dtype}")
    if v.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {v.dtype}")


class MSAPairWeightedAveragingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, bias, g, mask=None, precision="ieee", p_mode="auto", layout="auto", grad_enabled=True):
        _check(v, bias, g)
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, not {precision!r}")
        B, S, R, H, C = v.shape
        # .contiguous() is a no-op for the usual inputs and never writes into the caller's tensor.
        v, bias, g = v.contiguous(), bias.contiguous(), g.contiguous()
        mask_u8, mstrides = _prepare_mask(mask, B, R, v.device)
        prec = precision if v.dtype == torch.float32 else "ieee"  # only matters for fp32 operands
        stored = _use_stored_p(p_mode, B, H, R, v.dtype)
        # needs_input_grad follows requires_grad even under torch.no_grad(): the caller's grad mode
        # decides whether the fp32 y and P are kept (H100 fp32 (128, 384, 8), inputs that require
        # grad under no_grad: 81.6 -> 74.5 us)
        training = grad_enabled and any(ctx.needs_input_grad[:3])
        gemm = _use_gemm_layout(layout, v.dtype, S, C, training)
        out, m2, l2, vop, y, p = _forward(v, bias, g, mask_u8, mstrides, prec, stored, gemm, training)
        if training:
            # P (stored mode: R*R*H, the size of the softmax eager autograd keeps) saves the backward
            # a second softmax pass (H100 fp32 fwd+bwd (128, 384, 8): about 10 us of 300).
            ctx.save_for_backward(v, vop, bias, g, m2, l2, mask_u8, p if KEEP_P_FOR_BACKWARD else None)
            # y (fp32, S*R*H*C) is an intermediate kept on ctx, not saved: the backward drops it
            # after its first kernel, before dv, dbias and P are allocated, so it adds nothing to
            # the backward's peak. A second backward through the same graph cannot have it.
            ctx.y = y
        ctx.mstrides, ctx.precision, ctx.stored, ctx.gemm = mstrides, prec, stored, gemm
        return out

    @staticmethod
    def backward(ctx, dout):
        v, vop, bias, g, m2, l2, mask_u8, p = ctx.saved_tensors
        if ctx.y is None:
            raise RuntimeError("msa_pair_weighted_averaging supports one backward per forward: its fp32 "
                               "intermediate is freed by the first (retain_graph=True does not keep it)")
        y_owner, ctx.y = [ctx.y], None  # handed over: _backward drops the last reference early
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        dv, dbias, dg = _backward(dout, v, vop, bias, g, y_owner, mask_u8, ctx.mstrides, m2, l2,
                                  ctx.precision, ctx.stored, ctx.gemm, need, p)
        return dv, dbias, (dg if ctx.needs_input_grad[2] else None), None, None, None, None, None


def msa_pair_weighted_averaging(v, b, g, mask=None, *, precision="ieee", p_mode="auto", layout="auto"):
    """Functional form: ``v, g [B,S,R,H,C]``, ``b [B,R,R,H]``, optional pair ``mask`` -> ``[B,S,R,H*C]``.

    ``precision`` applies to fp32 inputs: "ieee" (exact fp32 FMA), "bf16x6" (each operand split
    into three bf16 parts, six tensor-core products: fp32-class error, the fastest fp32-accurate
    choice on Ampere and newer), "bf16x3" (two parts, three products: about 1e-5 relative error),
    "tf32x3" (three TF32 passes, close to fp32) or "tf32". ``p_mode``: "stored" keeps the softmax
    P in a [B,H,R,R] buffer between kernels, "recompute" rebuilds it in registers (least memory),
    "auto" stores it while small.
    ``layout``: the GEMMs read v (and dY') where they are ("flat") or from a [B,H,R,S*C] copy
    ("gemm"); "auto" picks the gemm copy for short channel pieces at large S (see _use_gemm_layout).
    """
    return MSAPairWeightedAveragingFunction.apply(v, b, g, mask, precision, p_mode, layout, torch.is_grad_enabled())


class MSAWeightedAveragingFused(torch.nn.Module):
    """Drop-in for Ligo's ``MSAWeightedAveragingFused(v, b, g)`` (same arguments, same output layout).

    Ligo adds its pair mask to ``b`` before the call; passing ``mask=`` instead lets the kernel apply
    it without materialising the masked bias.
    """

    def __init__(self, precision: str = "ieee", p_mode: str = "auto", layout: str = "auto"):
        super().__init__()
        self.precision = precision
        self.p_mode = p_mode
        self.layout = layout

    def forward(self, v, b, g, mask=None):
        return msa_pair_weighted_averaging(v, b, g, mask, precision=self.precision, p_mode=self.p_mode,
                                           layout=self.layout)
