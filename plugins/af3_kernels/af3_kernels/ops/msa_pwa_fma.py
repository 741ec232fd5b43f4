"""The fp32 forward of MSA pair-weighted averaging on the FMA units, written in Gluon (Triton's
explicit-layout dialect), for the case msa_pwa's Triton kernels handle least well: exact fp32
(``precision="ieee"``, no TF32) from a stored P.

Why Gluon: plain Triton lowers an fp32 ``tl.dot`` to FMAs with a register tile it picks itself,
and the forward ran at 54% of the FMA rate with a third of the SM's issue slots on loads and
addressing (Nsight Compute, H100, (128, 384, 8): 66.9 us). Here each thread owns an SPT_I x SPT_N
block of the accumulator: per reduction step it reads SPT_I + SPT_N values (16-byte shared loads)
for SPT_I * SPT_N FMAs, and 93% of the main loop's instructions are FMAs. P and v tiles stream into
shared memory through a ring of cp.async stages; P's tile is swizzled so the rows a warp reads at
once sit in different banks.

Status: correct (the GPU tests pass) but not faster. On the H100 its best configuration takes 78.4
us against Triton's 76.6 (same run): at 154-168 registers per thread only 3 warps per scheduler
fit, the issue slots stay half idle (Nsight Compute: 55% busy, FMA pipe 49%), and 8-wide B reads
had 5-way bank conflicts. msa_pwa.USE_GLUON_FMA_FORWARD is therefore off; docs/KERNELS.md has the
figures and what to try next.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j P[b,h,i,j] * v[b,s,j,h,:]

(P: the softmax of the bias over j, [B,H,R,R] fp32, written by msa_pwa's statistics kernel; v, g,
out and the optional fp32 y in the caller's [B,S,R,H,C] layout, n = s*C + c.)

Needs a CUDA GPU and a Triton with Gluon's ``dot_fma`` (3.5 or newer); ``available()`` says
whether it can run here. msa_pwa falls back to its Triton kernel otherwise.
"""
from __future__ import annotations

import torch
import triton

try:  # Gluon is experimental: its absence (or an incompatible version) only disables this path
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp

    _IMPORT_ERROR = None if hasattr(gl, "dot_fma") else "this Triton's Gluon has no dot_fma"
    # cp.async into shared memory: async_copy_global_to_shared until Triton 3.6, async_load after
    _async_load = getattr(cp, "async_load", None) or cp.async_copy_global_to_shared
    _barrier = getattr(gl, "thread_barrier", None) or gl.barrier  # renamed after 3.6 too
except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

#: the reduction width of one dot_fma: Gluon's dot needs K >= 16
K_STEP = 16


def available() -> tuple[bool, str]:
    """(whether the Gluon FMA forward can run here, why not)."""
    if _IMPORT_ERROR is not None:
        return False, _IMPORT_ERROR
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    return True, ""


if _IMPORT_ERROR is None:

    @gluon.jit
    def _load_k_tile(p_slot, v_slot, p_rows, pk, p_imask, v_cols, vk, v_nmask, k0, R, HC: gl.constexpr):
        """Start the cp.async copies of k-tile k0 of P ([i, k]) and V ([k, n]) into one ring slot, as
        one commit group; columns and rows k >= R are zero-filled."""
        _async_load(p_slot, p_rows + (k0 + pk)[None, :], mask=p_imask & ((k0 + pk) < R)[None, :])
        _async_load(v_slot, v_cols + ((k0 + vk).to(gl.int64) * HC)[:, None], mask=((k0 + vk) < R)[:, None] & v_nmask)
        cp.commit_group()

    @gluon.jit
    def _ring_start(p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC: gl.constexpr,
                    BLOCK_K: gl.constexpr, STAGES: gl.constexpr):
        """The cp.async ring's prologue: the first STAGES-1 k-tiles in flight (tiles past R arrive
        as zeros)."""
        for t in gl.static_range(STAGES - 1):
            _load_k_tile(p_smem.index(t), v_smem.index(t), p_rows, pk, p_imask, v_cols, vk, v_nmask,
                         t * BLOCK_K, R, HC)

    @gluon.jit
    def _ring_next(kt, p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC: gl.constexpr,
                   BLOCK_K: gl.constexpr, STAGES: gl.constexpr):
        """The top of k-step kt: wait until every thread's copies of tile kt have landed (the barrier
        also means every thread is done with step kt-1), then start tile kt+STAGES-1 into the slot
        step kt-1 used."""
        cp.wait_group(STAGES - 2)
        _barrier()
        nxt = kt + STAGES - 1
        _load_k_tile(p_smem.index(nxt % STAGES), v_smem.index(nxt % STAGES), p_rows, pk, p_imask, v_cols, vk,
                     v_nmask, nxt * BLOCK_K, R, HC)

    @gluon.jit
    def _program_tile(p_ptr, v_ptr, S, R, H: gl.constexpr, C: gl.constexpr, HEADS_FIRST: gl.constexpr,
                      BLOCK_I: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
                      p_ld: gl.constexpr, v_ld: gl.constexpr):
        """This program's (b, h) and (i, n) tile, in msa_pwa._grid's launch order: the flat offset of
        v[b, 0, 0, h, 0] (also of g, out and y), the tile's first i and n, and the cp.async sources of
        its P rows (a [BLOCK_I, BLOCK_K] k-tile in layout p_ld) and v columns ([BLOCK_K, BLOCK_N] in
        v_ld) with their masks (for _load_k_tile)."""
        if HEADS_FIRST:
            pid_bh = gl.program_id(0).to(gl.int64)
            pid_i = gl.program_id(1)
            pid_n = gl.program_id(2)
        else:
            pid_n = gl.program_id(0)
            pid_i = gl.program_id(1)
            pid_bh = gl.program_id(2).to(gl.int64)
        b = pid_bh // H
        h = pid_bh % H
        i0 = pid_i * BLOCK_I
        n0 = pid_n * BLOCK_N
        HC: gl.constexpr = H * C
        base = b * S * R * HC + h * C
        pi = i0 + gl.arange(0, BLOCK_I, layout=gl.SliceLayout(1, p_ld))
        pk = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, p_ld))
        p_rows = p_ptr + (pid_bh * R + pi.to(gl.int64))[:, None] * R
        p_imask = (pi < R)[:, None]
        vk = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(1, v_ld))
        vn = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, v_ld))
        v_cols = v_ptr + base + ((vn // C).to(gl.int64) * (R * HC) + vn % C)[None, :]
        v_nmask = (vn < S * C)[None, :]
        return base, i0, n0, p_rows, pk, p_imask, v_cols, vk, v_nmask

    @gluon.jit
    def _gate_and_store(acc, g_ptr, out_ptr, y_ptr, base, i0, n0, S, R, H: gl.constexpr, C: gl.constexpr,
                        STORE_Y: gl.constexpr, BLOCK_I: gl.constexpr, BLOCK_N: gl.constexpr, acc_l: gl.constexpr):
        """The epilogue in the accumulator's own layout acc_l: out = sigmoid(g) * acc, and with STORE_Y
        the ungated acc as y (fp32), at the tile's offsets in the caller's [B,S,R,H,C] layout."""
        HC: gl.constexpr = H * C
        ri = i0 + gl.arange(0, BLOCK_I, layout=gl.SliceLayout(1, acc_l))
        cn = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, acc_l))
        io = base + ri.to(gl.int64)[:, None] * HC + ((cn // C).to(gl.int64) * (R * HC) + cn % C)[None, :]
        iomask = (ri < R)[:, None] & (cn < S * C)[None, :]
        gate = gl.load(g_ptr + io, mask=iomask, other=0.0)
        gl.store(out_ptr + io, acc / (1.0 + gl.exp(-gate)), mask=iomask)
        if STORE_Y:
            gl.store(y_ptr + io, acc, mask=iomask)

    @gluon.jit
    def _fwd_fma_kernel(
        p_ptr, v_ptr, g_ptr, out_ptr, y_ptr, S, R,
        H: gl.constexpr, C: gl.constexpr, STORE_Y: gl.constexpr, HEADS_FIRST: gl.constexpr,
        SPT_I: gl.constexpr, SPT_N: gl.constexpr, TPW_I: gl.constexpr, WARPS_I: gl.constexpr,
        REP_I: gl.constexpr, REP_N: gl.constexpr, P_PHASE: gl.constexpr, P_MAX_PHASE: gl.constexpr,
        BLOCK_K: gl.constexpr, STAGES: gl.constexpr, KS: gl.constexpr,
    ):
        """One (b, h) and an (i, n) tile of out = sigmoid(g) * (P @ V), V[j, n] = v[b, s, j, h, c]."""
        NW: gl.constexpr = gl.num_warps()
        TPW_N: gl.constexpr = 32 // TPW_I
        WARPS_N: gl.constexpr = NW // WARPS_I
        # the layout covers (SPT*TPW*WARPS) along each axis and repeats REP times over the tile, so
        # a thread owns REP_I x REP_N blocks of SPT_I x SPT_N, the blocks a layout-width apart
        BLOCK_I: gl.constexpr = REP_I * SPT_I * TPW_I * WARPS_I
        BLOCK_N: gl.constexpr = REP_N * SPT_N * TPW_N * WARPS_N
        acc_l: gl.constexpr = gl.BlockedLayout([SPT_I, SPT_N], [TPW_I, TPW_N], [WARPS_I, WARPS_N], [1, 0])
        a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_l, k_width=0)
        b_l: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=acc_l, k_width=0)
        # global -> shared copies: 16-byte pieces, consecutive threads along the contiguous axis
        TK: gl.constexpr = BLOCK_K // 4
        p_ld: gl.constexpr = gl.BlockedLayout([1, 4], [32 // TK, TK], [NW, 1], [1, 0])
        TN: gl.constexpr = BLOCK_N // 4 if BLOCK_N // 4 < 32 else 32
        v_ld: gl.constexpr = gl.BlockedLayout([1, 4], [32 // TN, TN], [NW, 1], [1, 0])
        # P tile [BLOCK_I, BLOCK_K], read per thread as SPT_I rows of KS consecutive k: a warp reads
        # rows SPT_I apart at once, so the 16-byte swizzle phase changes every SPT_I rows.
        p_sl: gl.constexpr = gl.SwizzledSharedLayout(vec=4, per_phase=P_PHASE, max_phase=P_MAX_PHASE, order=[1, 0])
        v_sl: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[1, 0])

        base, i0, n0, p_rows, pk, p_imask, v_cols, vk, v_nmask = _program_tile(
            p_ptr, v_ptr, S, R, H, C, HEADS_FIRST, BLOCK_I, BLOCK_N, BLOCK_K, p_ld, v_ld)
        HC: gl.constexpr = H * C
        p_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_I, BLOCK_K], p_sl)
        v_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], v_sl)
        num_k = gl.cdiv(R, BLOCK_K)
        _ring_start(p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC, BLOCK_K, STAGES)

        acc = gl.zeros([BLOCK_I, BLOCK_N], gl.float32, layout=acc_l)
        for kt in range(num_k):
            _ring_next(kt, p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC, BLOCK_K, STAGES)
            slot = kt % STAGES
            pt = p_smem.index(slot)
            vt = v_smem.index(slot)
            for kk in gl.static_range(0, BLOCK_K, KS):
                a = pt.slice(kk, KS, dim=1).load(a_l)
                bv = vt.slice(kk, KS, dim=0).load(b_l)
                acc = gl.dot_fma(a, bv, acc)
        cp.wait_group(0)

        # epilogue in the accumulator's own layout: each thread's SPT_N columns are contiguous
        _gate_and_store(acc, g_ptr, out_ptr, y_ptr, base, i0, n0, S, R, H, C, STORE_Y, BLOCK_I, BLOCK_N, acc_l)

#: launch shape: per-thread accumulator block, threads and warps along i, repeats of the layout
#: over the tile, the P tile's swizzle; k-tile and ring depth
#: (the best of tune_msa_pwa.py --parts gluon on the H100: 78.4 us at (128, 384, 8); 8x8 per thread
#: was 94.3, with 5-way bank conflicts on its B reads)
DEFAULT_CONFIG = dict(SPT_I=8, SPT_N=4, TPW_I=4, WARPS_I=2, REP_I=1, REP_N=1, P_PHASE=8, P_MAX_PHASE=4,
                      BLOCK_K=32, STAGES=3, num_warps=4)
CONFIG_OVERRIDES: dict = {}


def tile_shape(cfg: dict) -> tuple[int, int]:
    """(BLOCK_I, BLOCK_N) of a configuration."""
    nw = cfg["num_warps"]
    return (cfg["REP_I"] * cfg["SPT_I"] * cfg["TPW_I"] * cfg["WARPS_I"],
            cfg["REP_N"] * cfg["SPT_N"] * (32 // cfg["TPW_I"]) * (nw // cfg["WARPS_I"]))


def forward(p: torch.Tensor, v: torch.Tensor, g: torch.Tensor, out: torch.Tensor, y: torch.Tensor | None,
            grid_fn) -> None:
    """out (and y, if given) from the stored fp32 P [B,H,R,R] and fp32 v, g [B,S,R,H,C];
    ``grid_fn(tiles_n, tiles_i, B*H)`` is msa_pwa._grid (launch order and its flag)."""
    B, S, R, H, C = v.shape
    cfg = {**DEFAULT_CONFIG, **CONFIG_OVERRIDES}
    bi, bn = tile_shape(cfg)
    grid, order = grid_fn(triton.cdiv(S * C, bn), triton.cdiv(R, bi), B * H)
    _fwd_fma_kernel[grid](p, v, g, out, y if y is not None else out, S, R, H, C, STORE_Y=y is not None,
                          **order, KS=K_STEP, **cfg)
