"""MSA pair-weighted averaging with gating (AlphaFold 3, Algorithm 10), fused in Triton.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j softmax_j(bias[b,i,j,h] | mask) * v[b,s,j,h,:]

    v, g: [B,S,R,H,C]    bias: [B,R,R,H]    mask: broadcastable to [B,R,R] (nonzero = keep)
    out:  [B,S,R,H*C]    (the layout Ligo's MSAPairWeightedAveraging feeds to its output projection)

Mask semantics: a masked pair's logit is *replaced* by -1e9. A partly masked row ignores its masked
columns, as with Ligo's additive ``b + 1e8*(mask-1)``; a fully masked row averages uniformly. (In
Ligo's additive form such a row is left to fp32 rounding: -1e8 + b rounds to multiples of 8, so
the weights there follow the rounding, not the bias. Only fully masked rows differ.)

Design: for each (b, h) this is a GEMM, P[i, j] (R x R, the softmax of the bias over j) times
V_h[j, (s, c)] (R x S*C), so the S rows share one softmax and tensor cores do the work.
- ``_stats_kernel`` computes, once per (b, h, i), the row maximum m and log2 of the row sum l of
  the (masked) logits in base 2; it reads bias rows [j, h] contiguously. Optionally it also writes
  P = exp2(x - m - l) as a [B,H,R,R] buffer ("stored" mode) so the GEMMs read P coalesced.
- In "recompute" mode the GEMM kernels rebuild P tiles from the bias and (m, l) in registers, so
  nothing of size R*R beyond the bias itself and its gradient is ever allocated (largest R).
- ``_fwd_kernel``: acc[i, n] = sum_j P[i, j] V[j, n] with n = (s, c) flattened (any C, no padding),
  then the sigmoid gate in the epilogue.
- Backward as in flash attention, with y = out / sigmoid(g) never formed:
    dY' = dout * sigmoid(g);  dg = dout * out * (1 - sigmoid(g));  D[i] = sum_(s,c) dout * out
    dV = P^T dY';  dP = dY' V^T (summed over s and c inside the kernel);  dbias = P * (dP - D)
  Nothing of size S*R*R exists at any point; inputs are never written.
Offsets that can exceed 2**31 (anything multiplied by S*R*H*C or R*R*H) are computed in int64.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from af3_kernels.ops.msa_pwa_constants import MASKED_LOGIT

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


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _stats_kernel(
    bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    R, H, smb, smi, smj,
    HAS_MASK: tl.constexpr, COMPUTE_STATS: tl.constexpr, WRITE_P: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """One program per (b, i): softmax statistics over j for every head, and optionally P."""
    pid = tl.program_id(0).to(tl.int64)
    b = pid // R
    i = pid % R
    offs_h = tl.arange(0, BLOCK_H)
    hmask = offs_h < H
    row = pid * R * H  # bias[b, i, 0, 0]
    stat_off = (b * H + offs_h) * R + i
    if COMPUTE_STATS:
        m = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_H], tl.float32)
        for j0 in range(0, R, BLOCK_J):
            offs_j = j0 + tl.arange(0, BLOCK_J)
            jmask = offs_j < R
            x = tl.load(bias_ptr + row + offs_j[:, None] * H + offs_h[None, :],
                        mask=jmask[:, None] & hmask[None, :], other=0.0).to(tl.float32) * LOG2E
            if HAS_MASK:
                keep = tl.load(mask_ptr + b * smb + i * smi + offs_j * smj, mask=jmask, other=1)
                x = tl.where((keep != 0)[:, None], x, MASKED2)
            # Padded columns j >= R drop out; each block has at least one real j, so m stays finite.
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
        # P[b, h, i, j]: written transposed relative to the bias so the GEMMs read it along j.
        p_row = (b * H + offs_h) * R * R + i * R
        for j0 in range(0, R, BLOCK_J):
            offs_j = j0 + tl.arange(0, BLOCK_J)
            jmask = offs_j < R
            x = tl.load(bias_ptr + row + offs_j[:, None] * H + offs_h[None, :],
                        mask=jmask[:, None] & hmask[None, :], other=0.0).to(tl.float32) * LOG2E
            if HAS_MASK:
                keep = tl.load(mask_ptr + b * smb + i * smi + offs_j * smj, mask=jmask, other=1)
                x = tl.where((keep != 0)[:, None], x, MASKED2)
            p = tl.exp2(x - m[None, :] - l[None, :])
            tl.store(p_ptr + p_row[None, :] + offs_j[:, None], _cast(p, p_ptr.dtype.element_ty, INTERP),
                     mask=jmask[:, None] & hmask[None, :])


# INTERP marks a run in Triton's numpy interpreter (TRITON_INTERPRET=1, the CPU tests), whose bf16
# support has two faults worked around here so that the CPU tests see the GPU's numerics:
# its bf16 dot multiplies the raw bit patterns, and its fp32 -> bf16 cast truncates.


@triton.jit
def _cast(x, dtype: tl.constexpr, INTERP: tl.constexpr):
    """x (fp32) to ``dtype``, rounding to nearest even as the GPU does."""
    if INTERP and dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
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
    """Softmax probabilities P[i, j] for head h as an fp32 [BLOCK_I, BLOCK_J] tile (0 outside R)."""
    imask = offs_i < R
    valid = imask[:, None] & (offs_j < R)[None, :]
    rows = offs_i.to(tl.int64)
    if P_STORED:
        p = tl.load(p_ptr + ((b * H + h) * R + rows[:, None]) * R + offs_j[None, :], mask=valid, other=0.0)
        p = p.to(tl.float32)
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


@triton.jit
def _sc_offsets(s0, R, H: tl.constexpr, C: tl.constexpr, S, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """Offsets [BLOCK_S, BLOCK_C] of (s, c) within one (b, j, h) and their mask.

    (s, c) is the GEMM's N dimension, kept as a 3-D tile [rows, s, c] so that the C contiguous
    channels load as vectors (H and C are compile-time constants: alignment is known)."""
    offs_s = s0 + tl.arange(0, BLOCK_S)
    offs_c = tl.arange(0, BLOCK_C)
    off = offs_s.to(tl.int64)[:, None] * R * (H * C) + offs_c[None, :]
    msk = (offs_s < S)[:, None] & (offs_c < C)[None, :]
    return off, msk


@triton.jit
def _load_rows(ptr, base, rows, R, off, msk, H: tl.constexpr, C: tl.constexpr,
               ROWS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """x[row, (s, c)] for a block of residue rows as a 2-D [rows, BLOCK_S*BLOCK_C] GEMM operand."""
    t = tl.load(ptr + base + rows.to(tl.int64)[:, None, None] * (H * C) + off[None, :, :],
                mask=(rows < R)[:, None, None] & msk[None, :, :], other=0.0)
    return tl.reshape(t, (ROWS, BLOCK_S * BLOCK_C))


@triton.jit
def _fwd_kernel(
    v_ptr, g_ptr, out_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """out[i, (s, c)] = sigmoid(g) * sum_j P[i, j] v[j, (s, c)] for one (b, h)."""
    pid_s = tl.program_id(0)
    pid_i = tl.program_id(1)
    pid_bh = tl.program_id(2).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    base = b * S * R * (H * C) + h * C
    off, msk = _sc_offsets(pid_s * BLOCK_S, R, H, C, S, BLOCK_S, BLOCK_C)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    acc = tl.zeros([BLOCK_I, BLOCK_S * BLOCK_C], dtype=tl.float32)
    for j0 in range(0, R, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
                    HAS_MASK, P_STORED)
        vt = _load_rows(v_ptr, base, offs_j, R, off, msk, H, C, BLOCK_J, BLOCK_S, BLOCK_C)
        acc = _dot(_cast(p, vt.dtype, INTERP), vt, acc, IN_PREC, INTERP)
    io = base + offs_i.to(tl.int64)[:, None, None] * (H * C) + off[None, :, :]
    iomask = (offs_i < R)[:, None, None] & msk[None, :, :]
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=iomask, other=0.0).to(tl.float32))
    y = tl.reshape(acc, (BLOCK_I, BLOCK_S, BLOCK_C))
    tl.store(out_ptr + io, _cast(y * gate, out_ptr.dtype.element_ty, INTERP), mask=iomask)


@triton.jit
def _bwd_prep_kernel(
    dout_ptr, out_ptr, g_ptr, dy_ptr, dg_ptr, d_ptr,
    S, R, H: tl.constexpr, C: tl.constexpr,
    INTERP: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Elementwise part of the backward for one (b, s) and a block of i, all heads.

    dY' = dout * sigmoid(g), dg = dout * out * (1 - sigmoid(g)), D[b,h,i] += sum_c dout * out.
    """
    pid_bs = tl.program_id(0).to(tl.int64)
    pid_i = tl.program_id(1)
    b = pid_bs // S
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_C)
    off = (pid_bs * R * (H * C) + offs_i.to(tl.int64)[:, None, None] * (H * C)
           + offs_h[None, :, None] * C + offs_c[None, None, :])
    msk = (offs_i < R)[:, None, None] & (offs_h < H)[None, :, None] & (offs_c < C)[None, None, :]
    do = tl.load(dout_ptr + off, mask=msk, other=0.0).to(tl.float32)
    o = tl.load(out_ptr + off, mask=msk, other=0.0).to(tl.float32)
    sg = tl.sigmoid(tl.load(g_ptr + off, mask=msk, other=0.0).to(tl.float32))
    tl.store(dy_ptr + off, _cast(do * sg, dy_ptr.dtype.element_ty, INTERP), mask=msk)
    tl.store(dg_ptr + off, _cast(do * o * (1.0 - sg), dg_ptr.dtype.element_ty, INTERP), mask=msk)
    d = tl.sum(do * o, axis=2)  # [BLOCK_I, BLOCK_H]
    dmask = (offs_i < R)[:, None] & (offs_h < H)[None, :]
    tl.atomic_add(d_ptr + (b * H + offs_h[None, :]) * R + offs_i[:, None], d, mask=dmask)


@triton.jit
def _bwd_dv_kernel(
    dy_ptr, dv_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """dv[j, (s, c)] = sum_i P[i, j] dY'[i, (s, c)] for one (b, h)."""
    pid_s = tl.program_id(0)
    pid_j = tl.program_id(1)
    pid_bh = tl.program_id(2).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    base = b * S * R * (H * C) + h * C
    off, msk = _sc_offsets(pid_s * BLOCK_S, R, H, C, S, BLOCK_S, BLOCK_C)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    acc = tl.zeros([BLOCK_J, BLOCK_S * BLOCK_C], dtype=tl.float32)
    for i0 in range(0, R, BLOCK_I):
        offs_i = i0 + tl.arange(0, BLOCK_I)
        p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
                    HAS_MASK, P_STORED)
        dy = _load_rows(dy_ptr, base, offs_i, R, off, msk, H, C, BLOCK_I, BLOCK_S, BLOCK_C)
        acc = _dot(tl.trans(_cast(p, dy.dtype, INTERP)), dy, acc, IN_PREC, INTERP)
    io = base + offs_j.to(tl.int64)[:, None, None] * (H * C) + off[None, :, :]
    iomask = (offs_j < R)[:, None, None] & msk[None, :, :]
    dv = tl.reshape(acc, (BLOCK_J, BLOCK_S, BLOCK_C))
    tl.store(dv_ptr + io, _cast(dv, dv_ptr.dtype.element_ty, INTERP), mask=iomask)


@triton.jit
def _bwd_dbias_kernel(
    dy_ptr, v_ptr, d_ptr, dbias_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, P_STORED: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """dbias[i, j, h] = P[i, j] * (sum_(s,c) dY'[i, (s, c)] v[j, (s, c)] - D[i]) for one (b, h)."""
    pid_j = tl.program_id(0)
    pid_i = tl.program_id(1)
    pid_bh = tl.program_id(2).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    base = b * S * R * (H * C) + h * C
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    imask = offs_i < R
    jmask = offs_j < R
    acc = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    for s0 in range(0, S, BLOCK_S):  # the reduction over s stays inside: no S*R*R tensor
        off, msk = _sc_offsets(s0, R, H, C, S, BLOCK_S, BLOCK_C)
        dy = _load_rows(dy_ptr, base, offs_i, R, off, msk, H, C, BLOCK_I, BLOCK_S, BLOCK_C)
        vt = _load_rows(v_ptr, base, offs_j, R, off, msk, H, C, BLOCK_J, BLOCK_S, BLOCK_C)
        acc = _dot(dy, tl.trans(vt), acc, IN_PREC, INTERP)
    p = _p_tile(bias_ptr, mask_ptr, m2_ptr, l2_ptr, p_ptr, b, h, offs_i, offs_j, R, H, smb, smi, smj,
                HAS_MASK, P_STORED)
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


def _config(kernel: str, dtype: torch.dtype, precision: str, C: int) -> dict:
    """Block sizes; BLOCK_N (the (s, c) tile width) becomes BLOCK_S rows of BLOCK_C channels.

    Defaults from a sweep on an H100 (plugins/af3_kernels/bench/bench_msa_pwa.py --tune)."""
    if _interpreting():  # numpy interpreter: the smallest blocks tl.dot accepts keep it fast
        cfg = dict(BLOCK_I=16, BLOCK_J=16, BLOCK_N=16, num_warps=4, num_stages=1)
    elif dtype == torch.float32 and precision == "ieee":  # FMA path: small tiles, fewer registers
        cfg = {
            "fwd": dict(BLOCK_I=64, BLOCK_J=16, BLOCK_N=64, num_warps=4, num_stages=3),
            "dv": dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=2),
            "dbias": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=2),
        }[kernel]
    else:
        cfg = {
            "fwd": dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=128, num_warps=8, num_stages=3),
            "dv": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=128, num_warps=4, num_stages=3),
            "dbias": dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=32, num_warps=8, num_stages=2),
        }[kernel]
    cfg.update(CONFIG_OVERRIDES.get(kernel, {}))
    block_c = _pow2(C)
    if dtype != torch.float32 and not _interpreting():
        # Triton 3.6 fails to compile (TritonGPUOptimizeDotOperands) 16-bit dots whose operand is
        # reshaped from a [rows, s, c] tile with c < 8 (seen on an H100 for C = 1, 3, 4); padding
        # the channel tile to 8 (masked) uses the layout that compiled and passed for C = 5, 7, 8.
        block_c = max(block_c, 8)
    cfg["BLOCK_C"] = block_c
    # tl.dot needs at least 16 columns
    cfg["BLOCK_S"] = max(cfg.pop("BLOCK_N") // block_c, 1, 16 // block_c)
    return cfg


def _new(shape, dtype, device) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype, device=device)
    if POISON_OUTPUTS:
        t.fill_(float("nan"))
    return t


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


_PRECISIONS = ("ieee", "tf32", "tf32x3")


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


def _softmax_stats(bias, mask_u8, mstrides, B, R, H, stored, m2=None, l2=None):
    """(m2, l2) per (b, h, i), plus P [B,H,R,R] when ``stored``; with m2/l2 given, only P."""
    compute = m2 is None
    if compute:
        m2 = _new((B, H, R), torch.float32, bias.device)
        l2 = _new((B, H, R), torch.float32, bias.device)
    p = _new((B, H, R, R), bias.dtype, bias.device) if stored else m2
    bh = _pow2(H)
    block_j = 16 if _interpreting() else max(16, min(_pow2(R), 2048 // bh))
    _stats_kernel[(B * R,)](
        bias, mask_u8 if mask_u8 is not None else bias, m2, l2, p, R, H, *mstrides,
        HAS_MASK=mask_u8 is not None, COMPUTE_STATS=compute, WRITE_P=stored, INTERP=_interpreting(),
        BLOCK_J=block_j, BLOCK_H=bh, num_warps=4,
    )
    return m2, l2, (p if stored else None)


def _forward(v, bias, g, mask_u8, mstrides, precision, stored):
    B, S, R, H, C = v.shape
    m2, l2, p = _softmax_stats(bias, mask_u8, mstrides, B, R, H, stored)
    out = _new((B, S, R, H * C), v.dtype, v.device)
    cfg = _config("fwd", v.dtype, precision, C)
    grid = (triton.cdiv(S, cfg["BLOCK_S"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
    _fwd_kernel[grid](
        v, g, out, bias, mask_u8 if mask_u8 is not None else bias, m2, l2, p if stored else m2,
        S, R, *mstrides, H, C,
        HAS_MASK=mask_u8 is not None, P_STORED=stored, IN_PREC=precision, INTERP=_interpreting(), **cfg,
    )
    return out, m2, l2


def _backward(dout, v, bias, g, out, mask_u8, mstrides, m2, l2, precision, stored, need):
    B, S, R, H, C = v.shape
    dout = dout.contiguous()
    dy = _new(v.shape, v.dtype, v.device)  # dout * sigmoid(g): the GEMM operand
    dg = _new(g.shape, g.dtype, g.device)
    d = torch.zeros((B, H, R), dtype=torch.float32, device=v.device)  # accumulated atomically
    bh, bc = _pow2(H), _pow2(C)
    block_i = 16 if _interpreting() else max(1, min(64, 4096 // (bh * bc)))
    _bwd_prep_kernel[(B * S, triton.cdiv(R, block_i))](
        dout, out, g, dy, dg, d, S, R, H, C, INTERP=_interpreting(), BLOCK_I=block_i, BLOCK_H=bh, BLOCK_C=bc, num_warps=4,
    )
    need_v, need_bias = need
    p = None
    if stored and (need_v or need_bias):
        _, _, p = _softmax_stats(bias, mask_u8, mstrides, B, R, H, True, m2, l2)
    common = dict(HAS_MASK=mask_u8 is not None, P_STORED=stored, IN_PREC=precision, INTERP=_interpreting())
    mk = mask_u8 if mask_u8 is not None else bias
    pp = p if p is not None else m2
    dv = dbias = None
    if need_v:
        dv = _new(v.shape, v.dtype, v.device)
        cfg = _config("dv", v.dtype, precision, C)
        grid = (triton.cdiv(S, cfg["BLOCK_S"]), triton.cdiv(R, cfg["BLOCK_J"]), B * H)
        _bwd_dv_kernel[grid](dy, dv, bias, mk, m2, l2, pp, S, R, *mstrides, H, C, **common, **cfg)
    if need_bias:
        dbias = _new(bias.shape, bias.dtype, bias.device)
        cfg = _config("dbias", v.dtype, precision, C)
        grid = (triton.cdiv(R, cfg["BLOCK_J"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
        _bwd_dbias_kernel[grid](dy, v, d, dbias, bias, mk, m2, l2, pp, S, R, *mstrides, H, C, **common, **cfg)
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
    def forward(ctx, v, bias, g, mask=None, precision="ieee", p_mode="auto"):
        _check(v, bias, g)
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, not {precision!r}")
        B, S, R, H, C = v.shape
        # .contiguous() is a no-op for the usual inputs and never writes into the caller's tensor.
        v, bias, g = v.contiguous(), bias.contiguous(), g.contiguous()
        mask_u8, mstrides = _prepare_mask(mask, B, R, v.device)
        prec = precision if v.dtype == torch.float32 else "ieee"  # only matters for fp32 operands
        stored = _use_stored_p(p_mode, B, H, R, v.dtype)
        out, m2, l2 = _forward(v, bias, g, mask_u8, mstrides, prec, stored)
        ctx.save_for_backward(v, bias, g, out, m2, l2, mask_u8)
        ctx.mstrides, ctx.precision, ctx.stored = mstrides, prec, stored
        return out

    @staticmethod
    def backward(ctx, dout):
        v, bias, g, out, m2, l2, mask_u8 = ctx.saved_tensors
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        dv, dbias, dg = _backward(dout, v, bias, g, out, mask_u8, ctx.mstrides, m2, l2,
                                  ctx.precision, ctx.stored, need)
        return dv, dbias, (dg if ctx.needs_input_grad[2] else None), None, None, None


def msa_pair_weighted_averaging(v, b, g, mask=None, *, precision="ieee", p_mode="auto"):
    """Functional form: ``v, g [B,S,R,H,C]``, ``b [B,R,R,H]``, optional pair ``mask`` -> ``[B,S,R,H*C]``.

    ``precision`` applies to fp32 inputs: "ieee" (exact fp32 FMA), "tf32x3" (three TF32 passes,
    close to fp32) or "tf32". ``p_mode``: "stored" keeps the softmax P in a [B,H,R,R] buffer between
    kernels, "recompute" rebuilds it in registers (least memory), "auto" stores it while small.
    """
    return MSAPairWeightedAveragingFunction.apply(v, b, g, mask, precision, p_mode)


class MSAWeightedAveragingFused(torch.nn.Module):
    """Drop-in for Ligo's ``MSAWeightedAveragingFused(v, b, g)`` (same arguments, same output layout).

    Ligo adds its pair mask to ``b`` before the call; passing ``mask=`` instead lets the kernel apply
    it without materialising the masked bias.
    """

    def __init__(self, precision: str = "ieee", p_mode: str = "auto"):
        super().__init__()
        self.precision = precision
        self.p_mode = p_mode

    def forward(self, v, b, g, mask=None):
        return msa_pair_weighted_averaging(v, b, g, mask, precision=self.precision, p_mode=self.p_mode)
