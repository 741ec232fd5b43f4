"""The Triton kernels of Evoformer attention; launched by launch.py. Design and expected limits:
see the package docstring (__init__.py).

Every kernel works on rows views [B, R, L, H, D] (reference.py): R rows share one bias [B, H, L, L],
each attends over L positions. Tensors arrive as base pointers plus their (b, r, l, h) strides
(the head dim is contiguous), so tri_end and msa_col read the transposed pair / MSA tensor in
place. A program owns one (b, h), one block of BLOCK_M queries (or BLOCK_N keys) and a *row group*
of ROWS consecutive rows: every bias tile it loads (once per (query block, key block)) serves all
ROWS rows, unrolled by hand (ROWS in 1, 2, 4; the rows past R of the last group are masked off).

- ``_fwd_kernel``: flash-attention forward, online softmax in base 2, tl.dot on tensor cores. The
  bias tile, divided by the softmax scale once per row group, is the accumulator the Q K^T product
  starts from: t = q.k + bias/scale leaves the tensor cores, the base-2 logit is t * scale * log2(e)
  and each exponential's argument t * (scale * log2 e) - m is a single multiply-add. The
  log-sum-exp (base 2) is stored for the backward; optional sigmoid gate in the epilogue (then the
  ungated output is kept for the backward too).
- ``_bwd_prep_kernel``: delta = rowsum(dO' * O) with dO' = dout * sigmoid(gate) (written when gated),
  and the gate's gradient.
- ``_bwd_dkdv_kernel``: per key block, loop over query blocks, in the transposed domain (keys are the
  M of every product, so P^T and dS^T are register operands as computed): P rebuilt from the
  log-sum-exp, dV += P^T dO', dS = P * (dO' V^T - delta), dK += dS^T Q. No atomics.
- ``_bwd_dq_kernel``: per query block, loop over key blocks: dS again, dQ += dS K, and dbias: the
  dS of the group's ROWS rows summed in registers, then one fp32 atomic add per element per row
  group into a [B,H,L,L] buffer that stays in L2 (ceil(R/ROWS) adds per element, not R); a single
  group stores directly.

Masked keys get logit -inf; a row whose keys are all masked (its running max stays -inf) writes
out = 0 and lse = +inf, so the backward's P is exactly 0 there (reference.py: "fully masked row").
Offsets: (b, r, h) bases always in int64; offsets inside a tile in int32 unless WIDE (some
L * stride reaches 2**31).
"""
from __future__ import annotations

import triton
import triton.language as tl

from af3_kernels import interpret

LOG2E = tl.constexpr(1.4426950408889634)
# 2**f on [-0.5, 0.5], degree 3, relative error 7.5e-5 (fitted for _exp2's polynomial path)
P0 = tl.constexpr(0.9999280571937561)
P1 = tl.constexpr(0.6932610273361206)
P2 = tl.constexpr(0.24261116981506348)
P3 = tl.constexpr(0.05517161637544632)
ROUND_MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2**23: x + this rounds x to an integer in the low bits


# -- helpers ------------------------------------------------------------------------------------
# INTERP marks a run in Triton's numpy interpreter (TRITON_INTERPRET=1, the CPU tests), whose bf16
# support has two faults worked around here so that the CPU tests see the GPU's numerics: its bf16
# dot multiplies the raw bit patterns, and its fp32 -> bf16 cast truncates.


_cast = interpret.cast


@triton.jit
def _mm(a, b, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """a @ b in fp32. In the interpreter: the same (already rounded) operands dotted in fp32."""
    if INTERP:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b, input_precision=IN_PREC)


_mma = interpret.mma  # acc + a @ b (fp32 acc)


@triton.jit
def _exp2(x, POLY: tl.constexpr):
    """2**x (x <= 0 or -inf). POLY: on the FMA units, Cody-Waite style: n = round(x) by the
    1.5*2**23 trick, 2**(x - n) by a degree-3 polynomial, n added to the exponent bits. Clamped at
    -125 (so -inf gives 2**-125, not 0: negligible beside a row sum >= 1; callers that need exact
    zeros do not rely on it)."""
    if POLY:
        x = tl.maximum(x, -125.0)
        j = x + ROUND_MAGIC
        f = x - (j - ROUND_MAGIC)
        p = ((P3 * f + P2) * f + P1) * f + P0
        bits = p.to(tl.int32, bitcast=True) + (j.to(tl.int32, bitcast=True) << 23)
        return bits.to(tl.float32, bitcast=True)
    else:
        return tl.exp2(x)


@triton.jit
def _ok(offs, n, r, R, INTERP: tl.constexpr):
    """offs < n for row r, all False when r >= R (a row past R in the last row group). In the
    interpreter the row test is made on a block: its scalar comparisons yield integers, not bools."""
    if INTERP:
        return (offs < n) & ((offs * 0 + r) < R)
    else:
        return (offs < n) & (r < R)


@triton.jit
def _decode(NBLK, H, G):
    """(block, h, row group, b) of this program, the block index fastest, all int64: the programs
    of one row and head run side by side and share its k, v (and q) in L2; the bias of a batch
    element ([H, L, L]) stays in L2 across its rows."""
    pid = tl.program_id(0).to(tl.int64)
    blk = pid % NBLK
    rest = pid // NBLK
    h = rest % H
    rest = rest // H
    return blk, h, rest % G, rest // G


@triton.jit
def _tile(ptr, base, offs, stride, offs_d, WIDE: tl.constexpr):
    """Pointers of rows ``offs`` (stride ``stride``) x columns offs_d from ptr + base (int64)."""
    if WIDE:
        return ptr + base + offs.to(tl.int64)[:, None] * stride + offs_d[None, :]
    else:
        return ptr + base + offs[:, None] * stride + offs_d[None, :]


@triton.jit
def _tmask(ok, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
    """[rows, BLOCK_D] load mask: the row mask, and head dims < HEAD_DIM when padded."""
    if HEAD_DIM == BLOCK_D:
        return ok[:, None]
    else:
        return ok[:, None] & (offs_d < HEAD_DIM)[None, :]


@triton.jit
def _load_tile(ptr, b, r, h, offs, n, s_b, s_r, s_l, s_h, R, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               WIDE: tl.constexpr, INTERP: tl.constexpr):
    """x[b, r, offs, h, :] as a [len(offs), BLOCK_D] tile (0 outside: offs >= n, or r >= R)."""
    offs_d = tl.arange(0, BLOCK_D)
    base = b * s_b + r * s_r + h * s_h
    return tl.load(_tile(ptr, base, offs, s_l, offs_d, WIDE),
                   mask=_tmask(_ok(offs, n, r, R, INTERP), offs_d, HEAD_DIM, BLOCK_D), other=0.0)


@triton.jit
def _store_tile(ptr, x, b, r, h, offs, n, s_b, s_r, s_l, s_h, R, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                WIDE: tl.constexpr, INTERP: tl.constexpr):
    offs_d = tl.arange(0, BLOCK_D)
    base = b * s_b + r * s_r + h * s_h
    tl.store(_tile(ptr, base, offs, s_l, offs_d, WIDE), _cast(x, ptr.dtype.element_ty, INTERP),
             mask=_tmask(_ok(offs, n, r, R, INTERP), offs_d, HEAD_DIM, BLOCK_D))


@triton.jit
def _bias_tile(bias_ptr, b, h, offs_m, offs_n, L, sb_b, sb_h, sb_i, WIDE: tl.constexpr):
    """bias[b, h, offs_m, offs_n] in fp32 (0 outside L), its last dim contiguous (vector loads):
    loaded once per row group."""
    base = b * sb_b + h * sb_h
    if WIDE:
        off = offs_m.to(tl.int64)[:, None] * sb_i + offs_n.to(tl.int64)[None, :]
    else:
        off = offs_m[:, None] * sb_i + offs_n[None, :]
    return tl.load(bias_ptr + base + off, mask=(offs_m < L)[:, None] & (offs_n < L)[None, :], other=0.0).to(tl.float32)


@triton.jit
def _bias_tile_t(bias_ptr, b, h, offs_m, offs_n, L, sb_b, sb_h, sb_i, WIDE: tl.constexpr):
    """The same tile transposed, [len(offs_n), len(offs_m)]: bias[b, h, offs_m, offs_n]^T."""
    base = b * sb_b + h * sb_h
    if WIDE:
        off = offs_n.to(tl.int64)[:, None] + offs_m.to(tl.int64)[None, :] * sb_i
    else:
        off = offs_n[:, None] + offs_m[None, :] * sb_i
    return tl.load(bias_ptr + base + off, mask=(offs_n < L)[:, None] & (offs_m < L)[None, :], other=0.0).to(tl.float32)


@triton.jit
def _keep(mask_ptr, b, r, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1: tl.constexpr, INTERP: tl.constexpr):
    """mask[b, r, offs_n] != 0 (False past L and for rows past R). MASK_L1: its stride along L is 1."""
    if MASK_L1:
        off = offs_n
    else:
        off = offs_n * sm_l
    return tl.load(mask_ptr + b * sm_b + r * sm_r + off, mask=_ok(offs_n, L, r, R, INTERP), other=0) != 0


@triton.jit
def _row_vec(ptr, b, h, r, offs_m, R, L, H, other, INTERP: tl.constexpr):
    """lse / delta [B, H, R, L] at (b, h, r, offs_m); ``other`` outside."""
    return tl.load(ptr + ((b * H + h) * R + r) * L + offs_m, mask=_ok(offs_m, L, r, R, INTERP), other=other)


@triton.jit
def _masked(t, keep, n_ok, HAS_MASK: tl.constexpr, EVEN_N: tl.constexpr):
    """Masked keys (and keys past L) of a [BLOCK_M, BLOCK_N] logit tile at -inf."""
    if HAS_MASK:
        return tl.where(keep[None, :], t, float("-inf"))
    elif not EVEN_N:
        return tl.where(n_ok[None, :], t, float("-inf"))
    return t


@triton.jit
def _qk(a, b, bias_s, HAS_BIAS: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """t = a @ b (+ bias / scale), so the base-2 logit is t * scale * log2(e), folded into each
    exponential's one multiply-add. 16-bit inputs: the bias enters as the product's accumulator.
    fp32: the product is summed from zero and the bias added once, as eager does; summing the
    product onto a large bias (|bias / scale| ~ 200 at bias scale 10) rounded every step at the
    bias's magnitude (5-8x eager's error on the H200). The zero is bias * 0, not a constant, so
    Triton does not fold the add back into the product's accumulator."""
    if HAS_BIAS and a.dtype == tl.float32:
        return _mma(a, b, bias_s * 0.0, IN_PREC, INTERP) + bias_s
    elif HAS_BIAS:
        return _mma(a, b, bias_s, IN_PREC, INTERP)
    else:
        return _mm(a, b, IN_PREC, INTERP)


# -- forward ------------------------------------------------------------------------------------


@triton.jit
def _fwd_step(acc, m_i, l_i, q, bias_s, k_ptr, v_ptr, mask_ptr, b, r, h, offs_n, R, L,
              sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, POLY: tl.constexpr, HAS_BIAS: tl.constexpr,
              HAS_MASK: tl.constexpr, MASK_L1: tl.constexpr, EVEN_N: tl.constexpr, WIDE: tl.constexpr,
              IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """One key block of one row: the online-softmax update of (acc, m, l); m in base 2.
    ``bias_s`` is the bias tile divided by the softmax scale: the accumulator the Q K^T product
    starts from, so t = q.k + bias/scale comes out of the tensor cores and each base-2 logit is
    t * qk_scale, folded into the exponential's one multiply-add."""
    n_ok = offs_n < L
    k = _load_tile(k_ptr, b, r, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    keep = n_ok
    if HAS_MASK:
        keep = _keep(mask_ptr, b, r, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
    t = _masked(_qk(q, tl.trans(k), bias_s, HAS_BIAS, IN_PREC, INTERP), keep, n_ok, HAS_MASK, EVEN_N)
    m_new = tl.maximum(m_i, tl.max(t, 1) * qk_scale)
    if HAS_MASK:  # a row masked so far has max -inf: subtract 0 instead (its p are all 0)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_use = m_new
    alpha = tl.exp2(m_i - m_use)
    p = _exp2(t * qk_scale - m_use[:, None], POLY)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _load_tile(v_ptr, b, r, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    acc = _mma(_cast(p, v.dtype, INTERP), v, acc * alpha[:, None], IN_PREC, INTERP)
    return acc, m_new, l_i


@triton.jit
def _fwd_store(acc, m_i, l_i, g_ptr, out_ptr, o_ptr, lse_ptr, b, r, h, offs_m, R, L, H,
               sg_b, sg_r, sg_l, sg_h, so_b, so_r, so_l, so_h,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_MASK: tl.constexpr, HAS_GATE: tl.constexpr,
               STORE_O: tl.constexpr, WIDE: tl.constexpr, INTERP: tl.constexpr):
    """Epilogue of one row: out = acc / l (times sigmoid(gate)), the log-sum-exp, the ungated o."""
    if HAS_MASK:
        empty = m_i == float("-inf")  # every key of the row masked
        l_i = tl.where(empty, 1.0, l_i)
        lse = tl.where(empty, float("inf"), m_i + tl.log2(l_i))
        o = tl.where(empty[:, None], 0.0, acc / l_i[:, None])
    else:
        lse = m_i + tl.log2(l_i)
        o = acc / l_i[:, None]
    tl.store(lse_ptr + ((b * H + h) * R + r) * L + offs_m, lse, mask=_ok(offs_m, L, r, R, INTERP))
    if HAS_GATE:
        gate = tl.sigmoid(_load_tile(g_ptr, b, r, h, offs_m, L, sg_b, sg_r, sg_l, sg_h, R, HEAD_DIM, BLOCK_D,
                                     WIDE, INTERP).to(tl.float32))
        _store_tile(out_ptr, o * gate, b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM, BLOCK_D, WIDE,
                    INTERP)
        if STORE_O:
            _store_tile(o_ptr, o, b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    else:
        _store_tile(out_ptr, o, b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)


@triton.jit
def _fwd_kernel(
    q_ptr, k_ptr, v_ptr, bias_ptr, mask_ptr, g_ptr, out_ptr, o_ptr, lse_ptr,
    sq_b, sq_r, sq_l, sq_h, sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h,
    sg_b, sg_r, sg_l, sg_h, so_b, so_r, so_l, so_h, sb_b, sb_h, sb_i, sm_b, sm_r, sm_l,
    R, L, H, G, NBLK, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr, POLY_ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
    MASK_L1: tl.constexpr,
    HAS_GATE: tl.constexpr, STORE_O: tl.constexpr, EVEN_N: tl.constexpr, WIDE: tl.constexpr,
    IN_PREC: tl.constexpr, INTERP: tl.constexpr,
):
    """out for one (b, h), BLOCK_M queries and ROWS rows; see the module docstring. The first
    POLY_ROWS rows of the group compute their exponentials by polynomial (options.poly_exp_rows)."""
    blk, h, grp, b = _decode(NBLK, H, G)
    offs_m = blk * BLOCK_M + tl.arange(0, BLOCK_M)
    r0 = grp * ROWS
    qk_scale = scale * LOG2E
    inv_scale = 1.0 / scale
    q0 = _load_tile(q_ptr, b, r0, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    acc0 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    m0 = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l0 = tl.zeros([BLOCK_M], dtype=tl.float32)
    if ROWS >= 2:
        q1 = _load_tile(q_ptr, b, r0 + 1, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        acc1 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        m1 = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l1 = tl.zeros([BLOCK_M], dtype=tl.float32)
    if ROWS >= 4:
        q2 = _load_tile(q_ptr, b, r0 + 2, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        q3 = _load_tile(q_ptr, b, r0 + 3, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        acc2 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        acc3 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        m2 = tl.full([BLOCK_M], float("-inf"), tl.float32)
        m3 = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l2 = tl.zeros([BLOCK_M], dtype=tl.float32)
        l3 = tl.zeros([BLOCK_M], dtype=tl.float32)
    for n0 in range(0, L, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        if HAS_BIAS:  # one tile for the whole row group, as the Q K^T accumulator: bias / scale
            bias2 = _bias_tile(bias_ptr, b, h, offs_m, offs_n, L, sb_b, sb_h, sb_i, WIDE) * inv_scale
        else:
            bias2 = 0.0
        acc0, m0, l0 = _fwd_step(acc0, m0, l0, q0, bias2, k_ptr, v_ptr, mask_ptr, b, r0, h, offs_n, R, L,
                                 sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                                 HEAD_DIM, BLOCK_D, POLY_ROWS > 0, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, WIDE,
                                 IN_PREC, INTERP)
        if ROWS >= 2:
            acc1, m1, l1 = _fwd_step(acc1, m1, l1, q1, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 1, h, offs_n, R, L,
                                     sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                                     HEAD_DIM, BLOCK_D, POLY_ROWS > 1, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, WIDE,
                                     IN_PREC, INTERP)
        if ROWS >= 4:
            acc2, m2, l2 = _fwd_step(acc2, m2, l2, q2, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 2, h, offs_n, R, L,
                                     sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                                     HEAD_DIM, BLOCK_D, POLY_ROWS > 2, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, WIDE,
                                     IN_PREC, INTERP)
            acc3, m3, l3 = _fwd_step(acc3, m3, l3, q3, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 3, h, offs_n, R, L,
                                     sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                                     HEAD_DIM, BLOCK_D, POLY_ROWS > 3, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, WIDE,
                                     IN_PREC, INTERP)
    _fwd_store(acc0, m0, l0, g_ptr, out_ptr, o_ptr, lse_ptr, b, r0, h, offs_m, R, L, H, sg_b, sg_r, sg_l, sg_h,
               so_b, so_r, so_l, so_h, HEAD_DIM, BLOCK_D, HAS_MASK, HAS_GATE, STORE_O, WIDE, INTERP)
    if ROWS >= 2:
        _fwd_store(acc1, m1, l1, g_ptr, out_ptr, o_ptr, lse_ptr, b, r0 + 1, h, offs_m, R, L, H, sg_b, sg_r, sg_l,
                   sg_h, so_b, so_r, so_l, so_h, HEAD_DIM, BLOCK_D, HAS_MASK, HAS_GATE, STORE_O, WIDE, INTERP)
    if ROWS >= 4:
        _fwd_store(acc2, m2, l2, g_ptr, out_ptr, o_ptr, lse_ptr, b, r0 + 2, h, offs_m, R, L, H, sg_b, sg_r, sg_l,
                   sg_h, so_b, so_r, so_l, so_h, HEAD_DIM, BLOCK_D, HAS_MASK, HAS_GATE, STORE_O, WIDE, INTERP)
        _fwd_store(acc3, m3, l3, g_ptr, out_ptr, o_ptr, lse_ptr, b, r0 + 3, h, offs_m, R, L, H, sg_b, sg_r, sg_l,
                   sg_h, so_b, so_r, so_l, so_h, HEAD_DIM, BLOCK_D, HAS_MASK, HAS_GATE, STORE_O, WIDE, INTERP)


# -- backward -----------------------------------------------------------------------------------


@triton.jit
def _bwd_prep_kernel(
    o_ptr, dout_ptr, g_ptr, doe_ptr, dg_ptr, delta_ptr,
    so_b, so_r, so_l, so_h, sd_b, sd_r, sd_l, sd_h, sg_b, sg_r, sg_l, sg_h,
    R, L, H, NBLK,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_GATE: tl.constexpr,
    WIDE: tl.constexpr, INTERP: tl.constexpr,
):
    """delta[b,h,r,i] = sum_d dO'[i,d] * o[i,d] for one (b, r, h) and BLOCK_M positions, where
    dO' = dout * sigmoid(gate) (rounded to the operand dtype, written to doe, when gated; dout
    itself otherwise); gated, also dgate = dout * o * sigmoid(gate) * (1 - sigmoid(gate)).
    o, doe and dg share the strides so_* (fresh tensors of q's shape)."""
    blk, h, r, b = _decode(NBLK, H, R)
    offs_m = blk * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < L
    o = _load_tile(o_ptr, b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP).to(tl.float32)
    do = _load_tile(dout_ptr, b, r, h, offs_m, L, sd_b, sd_r, sd_l, sd_h, R, HEAD_DIM, BLOCK_D, WIDE,
                    INTERP).to(tl.float32)
    if HAS_GATE:
        sg = tl.sigmoid(_load_tile(g_ptr, b, r, h, offs_m, L, sg_b, sg_r, sg_l, sg_h, R, HEAD_DIM, BLOCK_D,
                                   WIDE, INTERP).to(tl.float32))
        _store_tile(dg_ptr, do * o * sg * (1.0 - sg), b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM,
                    BLOCK_D, WIDE, INTERP)
        doe = _cast(do * sg, doe_ptr.dtype.element_ty, INTERP)
        _store_tile(doe_ptr, doe, b, r, h, offs_m, L, so_b, so_r, so_l, so_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        do = doe.to(tl.float32)
    tl.store(delta_ptr + ((b * H + h) * R + r) * L + offs_m, tl.sum(do * o, 1), mask=m_ok)


@triton.jit
def _dkdv_step(dk, dv, k, v, keep, bias_t, q_ptr, do_ptr, lse_ptr, delta_ptr, b, r, h, offs_m, R, L, H,
               sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
               WIDE: tl.constexpr, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """One query block of one row, in the transposed domain (keys are the rows of every product,
    so P^T and dS^T are register operands as computed, never transposed):
    T^T = K Q^T + bias^T / scale, P^T = exp2(T^T * scale * log2(e) - lse), dV += P^T dO', dS^T = P^T (V dO'^T - delta),
    dK += dS^T Q (unscaled). Queries past L and rows past R load lse = +inf, so their P is 0; keys
    past L need no -inf: their dk, dv rows are never stored, and rows do not mix."""
    q = _load_tile(q_ptr, b, r, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    do = _load_tile(do_ptr, b, r, h, offs_m, L, sd_b, sd_r, sd_l, sd_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    lse = _row_vec(lse_ptr, b, h, r, offs_m, R, L, H, float("inf"), INTERP)
    delta = _row_vec(delta_ptr, b, h, r, offs_m, R, L, H, 0.0, INTERP)
    tt = _qk(k, tl.trans(q), bias_t, HAS_BIAS, IN_PREC, INTERP)
    if HAS_MASK:
        tt = tl.where(keep[:, None], tt, float("-inf"))
    pt = tl.exp2(tt * qk_scale - lse[None, :])
    dv = _mma(_cast(pt, do.dtype, INTERP), do, dv, IN_PREC, INTERP)
    dpt = _mm(v, tl.trans(do), IN_PREC, INTERP)
    dst = pt * (dpt - delta[None, :])
    dk = _mma(_cast(dst, q.dtype, INTERP), q, dk, IN_PREC, INTERP)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, bias_ptr, mask_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    sq_b, sq_r, sq_l, sq_h, sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sd_b, sd_r, sd_l, sd_h,
    sx_b, sx_r, sx_l, sx_h, sb_b, sb_h, sb_i, sm_b, sm_r, sm_l,
    R, L, H, G, NBLK, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_L1: tl.constexpr,
    WIDE: tl.constexpr,
    IN_PREC: tl.constexpr, INTERP: tl.constexpr,
):
    """dk, dv (strides sx_*: fresh tensors of k's shape) for one (b, h), BLOCK_N keys and ROWS rows."""
    blk, h, grp, b = _decode(NBLK, H, G)
    qk_scale = scale * LOG2E
    inv_scale = 1.0 / scale
    offs_n = blk * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < L
    r0 = grp * ROWS
    k0 = _load_tile(k_ptr, b, r0, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    v0 = _load_tile(v_ptr, b, r0, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    dk0 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv0 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    keep0 = n_ok
    if HAS_MASK:
        keep0 = _keep(mask_ptr, b, r0, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
    if ROWS >= 2:
        k1 = _load_tile(k_ptr, b, r0 + 1, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        v1 = _load_tile(v_ptr, b, r0 + 1, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        dk1 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv1 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        keep1 = n_ok
        if HAS_MASK:
            keep1 = _keep(mask_ptr, b, r0 + 1, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
    if ROWS >= 4:
        k2 = _load_tile(k_ptr, b, r0 + 2, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        v2 = _load_tile(v_ptr, b, r0 + 2, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        k3 = _load_tile(k_ptr, b, r0 + 3, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        v3 = _load_tile(v_ptr, b, r0 + 3, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
        dk2 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv2 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dk3 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv3 = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        keep2 = n_ok
        keep3 = n_ok
        if HAS_MASK:
            keep2 = _keep(mask_ptr, b, r0 + 2, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
            keep3 = _keep(mask_ptr, b, r0 + 3, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
    for m0 in range(0, L, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        if HAS_BIAS:  # one tile for the whole row group, [keys, queries]
            bias2 = _bias_tile_t(bias_ptr, b, h, offs_m, offs_n, L, sb_b, sb_h, sb_i, WIDE) * inv_scale
        else:
            bias2 = 0.0
        dk0, dv0 = _dkdv_step(dk0, dv0, k0, v0, keep0, bias2, q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0, h, offs_m,
                              R, L, H, sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, qk_scale,
                              HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, WIDE, IN_PREC, INTERP)
        if ROWS >= 2:
            dk1, dv1 = _dkdv_step(dk1, dv1, k1, v1, keep1, bias2, q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 1, h,
                                  offs_m, R, L, H, sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, qk_scale,
                                  HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, WIDE, IN_PREC, INTERP)
        if ROWS >= 4:
            dk2, dv2 = _dkdv_step(dk2, dv2, k2, v2, keep2, bias2, q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 2, h,
                                  offs_m, R, L, H, sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, qk_scale,
                                  HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, WIDE, IN_PREC, INTERP)
            dk3, dv3 = _dkdv_step(dk3, dv3, k3, v3, keep3, bias2, q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 3, h,
                                  offs_m, R, L, H, sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, qk_scale,
                                  HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, WIDE, IN_PREC, INTERP)
    _store_tile(dk_ptr, dk0 * scale, b, r0, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D, WIDE,
                INTERP)
    _store_tile(dv_ptr, dv0, b, r0, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    if ROWS >= 2:
        _store_tile(dk_ptr, dk1 * scale, b, r0 + 1, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                    BLOCK_D, WIDE, INTERP)
        _store_tile(dv_ptr, dv1, b, r0 + 1, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D, WIDE,
                    INTERP)
    if ROWS >= 4:
        _store_tile(dk_ptr, dk2 * scale, b, r0 + 2, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                    BLOCK_D, WIDE, INTERP)
        _store_tile(dv_ptr, dv2, b, r0 + 2, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D, WIDE,
                    INTERP)
        _store_tile(dk_ptr, dk3 * scale, b, r0 + 3, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                    BLOCK_D, WIDE, INTERP)
        _store_tile(dv_ptr, dv3, b, r0 + 3, h, offs_n, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D, WIDE,
                    INTERP)


@triton.jit
def _dq_step(dq, q, do, lse, delta, bias_s, k_ptr, v_ptr, mask_ptr, b, r, h, offs_n, R, L,
             sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
             HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
             MASK_L1: tl.constexpr, EVEN_N: tl.constexpr, NEED_DQ: tl.constexpr, WIDE: tl.constexpr,
             IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """One key block of one row: dS (returned, for dbias) and dQ += dS K (unscaled)."""
    n_ok = offs_n < L
    k = _load_tile(k_ptr, b, r, h, offs_n, L, sk_b, sk_r, sk_l, sk_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    v = _load_tile(v_ptr, b, r, h, offs_n, L, sv_b, sv_r, sv_l, sv_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    keep = n_ok
    if HAS_MASK:
        keep = _keep(mask_ptr, b, r, offs_n, L, R, sm_b, sm_r, sm_l, MASK_L1, INTERP)
    t = _masked(_qk(q, tl.trans(k), bias_s, HAS_BIAS, IN_PREC, INTERP), keep, n_ok, HAS_MASK, EVEN_N)
    p = tl.exp2(t * qk_scale - lse[:, None])
    dp = _mm(do, tl.trans(v), IN_PREC, INTERP)
    ds = p * (dp - delta[:, None])
    if NEED_DQ:
        dq = _mma(_cast(ds, k.dtype, INTERP), k, dq, IN_PREC, INTERP)
    return dq, ds


@triton.jit
def _dq_row_init(q_ptr, do_ptr, lse_ptr, delta_ptr, b, r, h, offs_m, R, L, H, sq_b, sq_r, sq_l, sq_h,
                 sd_b, sd_r, sd_l, sd_h, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, WIDE: tl.constexpr,
                 INTERP: tl.constexpr):
    """q, dO', lse and delta of one row's query block (lse = +inf outside: P = 0 there)."""
    q = _load_tile(q_ptr, b, r, h, offs_m, L, sq_b, sq_r, sq_l, sq_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    do = _load_tile(do_ptr, b, r, h, offs_m, L, sd_b, sd_r, sd_l, sd_h, R, HEAD_DIM, BLOCK_D, WIDE, INTERP)
    lse = _row_vec(lse_ptr, b, h, r, offs_m, R, L, H, float("inf"), INTERP)
    delta = _row_vec(delta_ptr, b, h, r, offs_m, R, L, H, 0.0, INTERP)
    return q, do, lse, delta


@triton.jit
def _bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, bias_ptr, mask_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, db_ptr,
    sq_b, sq_r, sq_l, sq_h, sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sd_b, sd_r, sd_l, sd_h,
    sx_b, sx_r, sx_l, sx_h, sb_b, sb_h, sb_i, sm_b, sm_r, sm_l, sdb_b, sdb_h, sdb_i,
    R, L, H, G, NBLK, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_L1: tl.constexpr,
    EVEN_N: tl.constexpr,
    NEED_DQ: tl.constexpr, NEED_DBIAS: tl.constexpr, DBIAS_ATOMIC: tl.constexpr, WIDE: tl.constexpr,
    IN_PREC: tl.constexpr, INTERP: tl.constexpr,
):
    """dq (strides sx_*: a fresh tensor of q's shape) for one (b, h), BLOCK_M queries and ROWS
    rows, and the group's share of dbias: per key block, the ROWS rows' dS summed in registers, then
    added atomically to the fp32 buffer db (DBIAS_ATOMIC: several row groups) or stored (one group)."""
    blk, h, grp, b = _decode(NBLK, H, G)
    qk_scale = scale * LOG2E
    inv_scale = 1.0 / scale
    offs_m = blk * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < L
    r0 = grp * ROWS
    q0, do0, lse0, dl0 = _dq_row_init(q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0, h, offs_m, R, L, H,
                                      sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, HEAD_DIM, BLOCK_D, WIDE,
                                      INTERP)
    dq0 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if ROWS >= 2:
        q1, do1, lse1, dl1 = _dq_row_init(q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 1, h, offs_m, R, L, H,
                                          sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, HEAD_DIM, BLOCK_D, WIDE,
                                      INTERP)
        dq1 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if ROWS >= 4:
        q2, do2, lse2, dl2 = _dq_row_init(q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 2, h, offs_m, R, L, H,
                                          sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, HEAD_DIM, BLOCK_D, WIDE,
                                      INTERP)
        q3, do3, lse3, dl3 = _dq_row_init(q_ptr, do_ptr, lse_ptr, delta_ptr, b, r0 + 3, h, offs_m, R, L, H,
                                          sq_b, sq_r, sq_l, sq_h, sd_b, sd_r, sd_l, sd_h, HEAD_DIM, BLOCK_D, WIDE,
                                      INTERP)
        dq2 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        dq3 = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, L, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        if HAS_BIAS:  # one tile for the whole row group
            bias2 = _bias_tile(bias_ptr, b, h, offs_m, offs_n, L, sb_b, sb_h, sb_i, WIDE) * inv_scale
        else:
            bias2 = 0.0
        dq0, ds = _dq_step(dq0, q0, do0, lse0, dl0, bias2, k_ptr, v_ptr, mask_ptr, b, r0, h, offs_n, R, L,
                           sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                           HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, NEED_DQ, WIDE, IN_PREC, INTERP)
        db = ds
        if ROWS >= 2:
            dq1, ds = _dq_step(dq1, q1, do1, lse1, dl1, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 1, h, offs_n, R, L,
                               sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                               HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, NEED_DQ, WIDE, IN_PREC, INTERP)
            db += ds
        if ROWS >= 4:
            dq2, ds = _dq_step(dq2, q2, do2, lse2, dl2, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 2, h, offs_n, R, L,
                               sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                               HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, NEED_DQ, WIDE, IN_PREC, INTERP)
            db += ds
            dq3, ds = _dq_step(dq3, q3, do3, lse3, dl3, bias2, k_ptr, v_ptr, mask_ptr, b, r0 + 3, h, offs_n, R, L,
                               sk_b, sk_r, sk_l, sk_h, sv_b, sv_r, sv_l, sv_h, sm_b, sm_r, sm_l, qk_scale,
                               HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK, MASK_L1, EVEN_N, NEED_DQ, WIDE, IN_PREC, INTERP)
            db += ds
        if NEED_DBIAS:
            base = b * sdb_b + h * sdb_h
            if WIDE:
                off = offs_m.to(tl.int64)[:, None] * sdb_i + offs_n.to(tl.int64)[None, :]
            else:
                off = offs_m[:, None] * sdb_i + offs_n[None, :]
            ok = m_ok[:, None] & (offs_n < L)[None, :]
            if DBIAS_ATOMIC:
                tl.atomic_add(db_ptr + base + off, db, mask=ok, sem="relaxed")
            else:
                tl.store(db_ptr + base + off, _cast(db, db_ptr.dtype.element_ty, INTERP), mask=ok)
    if NEED_DQ:
        _store_tile(dq_ptr, dq0 * scale, b, r0, h, offs_m, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM, BLOCK_D,
                    WIDE, INTERP)
        if ROWS >= 2:
            _store_tile(dq_ptr, dq1 * scale, b, r0 + 1, h, offs_m, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                        BLOCK_D, WIDE, INTERP)
        if ROWS >= 4:
            _store_tile(dq_ptr, dq2 * scale, b, r0 + 2, h, offs_m, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                        BLOCK_D, WIDE, INTERP)
            _store_tile(dq_ptr, dq3 * scale, b, r0 + 3, h, offs_m, L, sx_b, sx_r, sx_l, sx_h, R, HEAD_DIM,
                        BLOCK_D, WIDE, INTERP)
