"""MSA pair-weighted averaging with gating, all heads per program, one launch (variant "fused_heads").

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j softmax_j(bias[b,i,j,h] | mask) * v[b,s,j,h,:]

Same inputs, outputs and mask semantics as ``msa_pwa.msa_pair_weighted_averaging`` (see there).
What differs is the forward's tiling, chosen for AF3's small head width (C = 8: a head's channels
are 16 bytes in bf16, so the per-(b, h) programs of msa_pwa gather v, g and out in 16-byte pieces
at a 128-byte stride, and read the bias with a stride of H elements):

- One program per (b, i-block, s-block) covers ALL heads. A row v[b, s, j, :, :] of H*C contiguous
  elements (128 bytes at H*C = 64, bf16) is loaded whole; the tile [s, j, h, c] is permuted to
  [h, j, (s, c)], and the bias tile [i, j, h] (contiguous over h) to [h, i, j].
- The softmax is online (flash-attention style): a running max and sum per (h, i) and a rescaled
  fp32 accumulator, so no statistics kernel runs first: the forward is ONE launch. P tiles never
  leave registers; the GEMM is a batched ``tl.dot`` [h, i, j] @ [h, j, (s, c)] -> [h, i, (s, c)].
- The epilogue divides by the row sums, applies the sigmoid gate and stores rows of H*C.
- With autograd recording, the s-block-0 programs also write the base-2 statistics (m2, l2) per
  (b, h, i) in exactly the format of msa_pwa's ``_stats_kernel``, and the backward reuses
  msa_pwa's backward kernels unchanged. Without autograd (``torch.no_grad`` or no input needing a
  gradient) the wrapper calls the kernel directly: no autograd Function, one allocation (out).

Cost model (why the block sizes): the accumulator holds H * BLOCK_I * BLOCK_N fp32 values
(BLOCK_N = BLOCK_S * BLOCK_C), the bias tile is re-exponentiated once per s-block (S*C/BLOCK_N
times in all) and v is re-read from L2 once per i-block (R/BLOCK_I times). Small C favours this
layout; for large C (32) the H-fold accumulator limits the tiles and msa_pwa may stay faster.
Offsets that can pass 2**31 are int64.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from af3_kernels.ops import msa_pwa
from af3_kernels.ops.msa_pwa import LOG2E, MASKED2, _cast, _dot, _interpreting, _pow2

#: per-call block-size overrides (a tuning sweep sets these): {"BLOCK_I": 32, "BLOCK_N": 64, ...}
CONFIG_OVERRIDES: dict = {}


@triton.jit
def _fwd_heads_kernel(
    v_ptr, g_ptr, out_ptr, bias_ptr, mask_ptr, m2_ptr, l2_ptr,
    S, R, smb, smi, smj, H: tl.constexpr, C: tl.constexpr,
    HAS_MASK: tl.constexpr, WRITE_STATS: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """out[b, s, i, (h, c)] for a block of s and a block of i, every head."""
    pid_s = tl.program_id(0)
    pid_i = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    HC: tl.constexpr = H * C
    offs_s = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_h = tl.arange(0, BLOCK_H)
    offs_c = tl.arange(0, BLOCK_C)
    smask = offs_s < S
    imask = offs_i < R
    hmask = offs_h < H
    rows_i = offs_i.to(tl.int64)
    # (h, c) within a row of H*C elements: contiguous when H and C are powers of two (no padding)
    hc = offs_h[:, None] * C + offs_c[None, :]
    hcmask = hmask[:, None] & (offs_c < C)[None, :]
    base = b * S * R * HC
    s_off = offs_s.to(tl.int64) * R * HC  # [BLOCK_S]
    sv_mask = smask[:, None, None, None] & hcmask[None, None, :, :]  # [S, 1, H, C]
    bias_rows = (b * R + rows_i) * R * H  # bias[b, i, 0, 0]

    m = tl.full([BLOCK_H, BLOCK_I], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H, BLOCK_I], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_I, BLOCK_S * BLOCK_C], tl.float32)
    for j0 in range(0, R, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        jmask = offs_j < R
        # logits [i, j, h], contiguous over (j, h) for each i; base 2
        x = tl.load(bias_ptr + bias_rows[:, None, None] + offs_j[None, :, None] * H + offs_h[None, None, :],
                    mask=imask[:, None, None] & jmask[None, :, None] & hmask[None, None, :],
                    other=0.0).to(tl.float32) * LOG2E
        if HAS_MASK:
            keep = tl.load(mask_ptr + b * smb + rows_i[:, None] * smi + offs_j[None, :] * smj,
                           mask=imask[:, None] & jmask[None, :], other=1)
            x = tl.where((keep != 0)[:, :, None], x, MASKED2)
        # Padded columns j >= R drop out; every block has a real j, so the max stays finite.
        x = tl.where(jmask[None, :, None], x, float("-inf"))
        x = tl.permute(x, (2, 0, 1))  # [h, i, j]
        m_new = tl.maximum(m, tl.max(x, axis=2))
        alpha = tl.exp2(m - m_new)  # 0 on the first block (m = -inf)
        p = tl.exp2(x - m_new[:, :, None])
        l = l * alpha + tl.sum(p, axis=2)
        m = m_new
        # v rows [s, j, h, c]: each (s, j) is H*C contiguous elements
        vt = tl.load(v_ptr + base + s_off[:, None, None, None]
                     + offs_j.to(tl.int64)[None, :, None, None] * HC + hc[None, None, :, :],
                     mask=sv_mask & jmask[None, :, None, None], other=0.0)
        vt = tl.reshape(tl.permute(vt, (2, 1, 0, 3)), (BLOCK_H, BLOCK_J, BLOCK_S * BLOCK_C))
        acc = acc * alpha[:, :, None]
        acc = _dot(_cast(p, vt.dtype, INTERP), vt, acc, IN_PREC, INTERP)

    y = acc / l[:, :, None]  # rows i >= R have l > 0 too (their logits load as 0): no NaN
    y = tl.permute(tl.reshape(y, (BLOCK_H, BLOCK_I, BLOCK_S, BLOCK_C)), (2, 1, 0, 3))  # [s, i, h, c]
    io = base + s_off[:, None, None, None] + rows_i[None, :, None, None] * HC + hc[None, None, :, :]
    iomask = sv_mask & imask[None, :, None, None]
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=iomask, other=0.0).to(tl.float32))
    tl.store(out_ptr + io, _cast(y * gate, out_ptr.dtype.element_ty, INTERP), mask=iomask)
    if WRITE_STATS:  # msa_pwa's format: [B, H, R] base-2 max and log2 of the sum; one s-block writes
        if pid_s == 0:
            stat = (b * H + offs_h[:, None]) * R + offs_i[None, :]
            smsk = hmask[:, None] & imask[None, :]
            tl.store(m2_ptr + stat, m, mask=smsk)
            tl.store(l2_ptr + stat, tl.log2(l), mask=smsk)


def _config(dtype: torch.dtype, precision: str, H: int, C: int) -> dict:
    """Block sizes. Untuned on a GPU so far: sized for about 64 fp32 accumulator registers per
    thread at H = 8 (H * BLOCK_I * BLOCK_N = 16384 over 8 warps); ``CONFIG_OVERRIDES`` replaces any."""
    bh, bc = _pow2(H), _pow2(C)
    if _interpreting():  # numpy interpreter: the smallest tiles tl.dot accepts keep it fast
        cfg = dict(BLOCK_I=16, BLOCK_J=16, BLOCK_N=16, num_warps=4, num_stages=1)
    else:
        if dtype != torch.float32:
            # msa_pwa found Triton 3.6 failing to compile 16-bit dots on operands reshaped from a
            # tile with fewer than 8 channels: pad the channel tile to 8 (masked) here too.
            bc = max(bc, 8)
        budget = 16384 // bh  # accumulator elements per head
        block_n = max(16, min(64, budget // 32))
        block_i = max(16, min(64, budget // block_n))
        cfg = dict(BLOCK_I=block_i, BLOCK_J=32, BLOCK_N=block_n, num_warps=8, num_stages=2)
    cfg.update(CONFIG_OVERRIDES)
    cfg["BLOCK_H"], cfg["BLOCK_C"] = bh, bc
    cfg["BLOCK_S"] = max(cfg.pop("BLOCK_N") // bc, 1, 16 // bc)  # the dot's N is at least 16
    return cfg


def _forward(v, bias, g, mask_u8, mstrides, precision, write_stats):
    """out [B,S,R,H*C], and (m2, l2) [B,H,R] when ``write_stats`` (else None, None)."""
    B, S, R, H, C = v.shape
    out = msa_pwa._new((B, S, R, H * C), v.dtype, v.device)
    if write_stats:
        m2 = msa_pwa._new((B, H, R), torch.float32, v.device)
        l2 = msa_pwa._new((B, H, R), torch.float32, v.device)
    else:
        m2 = l2 = None
    cfg = _config(v.dtype, precision, H, C)
    grid = (triton.cdiv(S, cfg["BLOCK_S"]), triton.cdiv(R, cfg["BLOCK_I"]), B)
    _fwd_heads_kernel[grid](
        v, g, out, bias, mask_u8 if mask_u8 is not None else bias,
        m2 if write_stats else out, l2 if write_stats else out,
        S, R, *mstrides, H, C,
        HAS_MASK=mask_u8 is not None, WRITE_STATS=write_stats, IN_PREC=precision, INTERP=_interpreting(),
        **cfg,
    )
    return out, m2, l2


def _prepare(v, bias, g, mask, precision):
    msa_pwa._check(v, bias, g)
    if precision not in msa_pwa._PRECISIONS:
        raise ValueError(f"precision must be one of {msa_pwa._PRECISIONS}, not {precision!r}")
    B, S, R, H, C = v.shape
    # .contiguous() returns the tensor itself when it already is (the usual case): no copy.
    v, bias, g = v.contiguous(), bias.contiguous(), g.contiguous()
    mask_u8, mstrides = msa_pwa._prepare_mask(mask, B, R, v.device)
    prec = precision if v.dtype == torch.float32 else "ieee"  # only matters for fp32 operands
    return v, bias, g, mask_u8, mstrides, prec


class MSAPairWeightedAveragingHeadsFunction(torch.autograd.Function):
    """Forward: the all-heads kernel (plus statistics); backward: msa_pwa's kernels, P recomputed
    from the statistics in registers (p_mode "recompute") or stored by them ("stored")."""

    @staticmethod
    def forward(ctx, v, bias, g, mask=None, precision="ieee", p_mode="auto"):
        v, bias, g, mask_u8, mstrides, prec = _prepare(v, bias, g, mask, precision)
        B, S, R, H, C = v.shape
        stored = msa_pwa._use_stored_p(p_mode, B, H, R, v.dtype)  # validates p_mode too
        out, m2, l2 = _forward(v, bias, g, mask_u8, mstrides, prec, True)
        ctx.save_for_backward(v, bias, g, out, m2, l2, mask_u8)
        ctx.mstrides, ctx.precision, ctx.stored = mstrides, prec, stored
        return out

    @staticmethod
    def backward(ctx, dout):
        v, bias, g, out, m2, l2, mask_u8 = ctx.saved_tensors
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        dv, dbias, dg = msa_pwa._backward(dout, v, bias, g, out, mask_u8, ctx.mstrides, m2, l2,
                                          ctx.precision, ctx.stored, need)
        return dv, dbias, (dg if ctx.needs_input_grad[2] else None), None, None, None


def msa_pair_weighted_averaging_heads(v, b, g, mask=None, *, precision="ieee", p_mode="auto"):
    """Same call as ``msa_pwa.msa_pair_weighted_averaging``: ``v, g [B,S,R,H,C]``, ``b [B,R,R,H]``,
    optional pair ``mask`` -> ``[B,S,R,H*C]``. ``p_mode`` only affects the backward."""
    if torch.is_grad_enabled() and (v.requires_grad or b.requires_grad or g.requires_grad):
        return MSAPairWeightedAveragingHeadsFunction.apply(v, b, g, mask, precision, p_mode)
    # Inference: no autograd Function, no statistics, one launch.
    v, b, g, mask_u8, mstrides, prec = _prepare(v, b, g, mask, precision)
    if p_mode not in ("auto", "stored", "recompute"):
        raise ValueError(f"p_mode must be auto, stored or recompute, not {p_mode!r}")
    return _forward(v, b, g, mask_u8, mstrides, prec, False)[0]


class MSAWeightedAveragingFusedHeads(torch.nn.Module):
    """Drop-in for Ligo's ``MSAWeightedAveragingFused(v, b, g)``, with the all-heads forward."""

    def __init__(self, precision: str = "ieee", p_mode: str = "auto"):
        super().__init__()
        self.precision = precision
        self.p_mode = p_mode

    def forward(self, v, b, g, mask=None):
        return msa_pair_weighted_averaging_heads(v, b, g, mask, precision=self.precision, p_mode=self.p_mode)
