"""The fp32 forward of MSA pair-weighted averaging at ``precision="bf16x6"``, written in Gluon
(Triton's explicit dialect), from a stored P on a Hopper GPU. launch.py uses it by default there
(MSAPWAOptions.use_gluon_split_forward) and falls back to kernels._fwd_kernel elsewhere.

bf16x6 splits each fp32 operand into three bf16 parts (hi + mid + lo) and sums six tensor-core
products (hi*hi, hi*mid, mid*hi, mid*mid, hi*lo, lo*hi); the result meets exact fp32's error bar.

Why Gluon. Triton's own ``tl.dot(input_precision="bf16x6")`` waits for each of the six wgmma
before issuing the next, and needs about 125 registers per thread. On the H100 at (128, 384, 8),
that allows 4 programs of 4 warps per SM. The 768 tiles then make 1.45 waves.

Two ways out in plain Triton failed:
- One accumulator for all six products is fast (56.4 us against 66.4, 80 registers, 3 programs
  of 8 warps per SM: one wave). But the tensor cores' accumulation truncates. The error grows
  with R and breaks the bar (3.3e-6 at R = 1536 against a bar of 2.0e-6).
- A fresh accumulator per k-step holds the error (1.0e-7) but needs 124 registers.

Here the kernel controls both. Every operand part goes to shared memory (no A operand in
registers). The six wgmma of a k-step are issued back to back into a fresh accumulator, with one
wait. That sum is added to the running one with an IEEE fp32 add. The kernel fits 80 registers:
three 8-warp programs per SM, 384 tiles in one wave. H100, same process: 62.0-62.9 us against
66.2-66.7 for Triton's bf16x6 (CHANGELOG.md, 2026-11-22). Its max abs error against float64 is 0.7-1.3e-7
at R = 77 to 3072, where eager fp32's is 2.1-3.5e-7.

    out[b,s,i,h,:] = sigmoid(g[b,s,i,h,:]) * sum_j P[b,h,i,j] * v[b,s,j,h,:]

(P: the softmax of the bias over j, [B,H,R,R] fp32, written by the statistics kernel; v, g,
out and the optional fp32 y in the caller's [B,S,R,H,C] layout, n = s*C + c.)

Needs a Hopper GPU (wgmma: compute capability 9.x) and a Triton whose Gluon has warpgroup_mma;
``available()`` says whether it can run here.
"""
from __future__ import annotations

import functools

import torch
import triton

try:  # Gluon is experimental: its absence (or an incompatible version) only disables this path
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, warpgroup_mma,
                                                                  warpgroup_mma_wait)

    # cp.async into shared memory: async_copy_global_to_shared until Triton 3.6, async_load after
    _async_load = getattr(cp, "async_load", None) or cp.async_copy_global_to_shared
    _barrier = getattr(gl, "thread_barrier", None) or gl.barrier  # renamed after 3.6 too
    _IMPORT_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def available(device=None) -> tuple[bool, str]:
    """(whether the Gluon bf16x6 forward can run on ``device`` (default: the current CUDA device),
    why not)."""
    if _IMPORT_ERROR is not None:
        return False, _IMPORT_ERROR
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    index = torch.device(device).index if device is not None else None
    return _hopper(torch.cuda.current_device() if index is None else index)


@functools.lru_cache(maxsize=None)
def _hopper(index: int) -> tuple[bool, str]:
    """available()'s answer for one CUDA device (asked on every forward call: kept)."""
    major = torch.cuda.get_device_capability(index)[0]
    if major != 9:
        return False, f"wgmma needs a Hopper GPU (compute capability 9.x), this one is {major}.x"
    return True, ""


if _IMPORT_ERROR is None:

    # The cp.async ring of P and v k-tiles, a program's tile and its epilogue.

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
        """This program's (b, h) and (i, n) tile, in launch.grid's launch order: the flat offset of
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
    def _split3(x):
        """fp32 x as three bf16 parts, hi + mid + lo (each rounded to nearest from what is left)."""
        hi = x.to(gl.bfloat16)
        rest = x - hi.to(gl.float32)
        mid = rest.to(gl.bfloat16)
        lo = (rest - mid.to(gl.float32)).to(gl.bfloat16)
        return hi, mid, lo

    @gluon.jit
    def _store_parts(parts, x, layout: gl.constexpr):
        """The three bf16 parts of the fp32 shared tile x (read in ``layout``) into parts[0..2]."""
        hi, mid, lo = _split3(x.load(layout))
        parts.index(0).store(hi)
        parts.index(1).store(mid)
        parts.index(2).store(lo)

    @gluon.jit
    def _fwd_bf16x6_kernel(
        p_ptr, v_ptr, g_ptr, out_ptr, y_ptr, S, R,
        H: gl.constexpr, C: gl.constexpr, STORE_Y: gl.constexpr, HEADS_FIRST: gl.constexpr,
        BLOCK_I: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, STAGES: gl.constexpr,
    ):
        """One (b, h) and an (i, n) tile of out = sigmoid(g) * (P @ V), V[j, n] = v[b, s, j, h, c],
        with bf16x6 products. Per k-step of BLOCK_K: the fp32 P and v tiles (a cp.async ring of
        STAGES) are split into bf16 parts in shared memory, the six products run as one batch of
        wgmma into a fresh tile, and that tile is added to the running sum."""
        NW: gl.constexpr = gl.num_warps()
        # warpgroups stacked along i: 64 rows each
        acc_l: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[NW, 1],
                                                        instr_shape=[16, BLOCK_N, 16])
        # global -> shared copies in 16-byte pieces, consecutive threads along the contiguous axis
        TK: gl.constexpr = BLOCK_K // 4
        p_ld: gl.constexpr = gl.BlockedLayout([1, 4], [32 // TK, TK], [NW, 1], [1, 0])
        TN: gl.constexpr = BLOCK_N // 4 if BLOCK_N // 4 < 32 else 32
        v_ld: gl.constexpr = gl.BlockedLayout([1, 4], [32 // TN, TN], [NW, 1], [1, 0])
        plain: gl.constexpr = gl.SwizzledSharedLayout(vec=4, per_phase=1, max_phase=1, order=[1, 0])
        a_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_I, BLOCK_K], gl.bfloat16)
        b_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_K, BLOCK_N], gl.bfloat16)
        HC: gl.constexpr = H * C

        base, i0, n0, p_rows, pk, p_imask, v_cols, vk, v_nmask = _program_tile(
            p_ptr, v_ptr, S, R, H, C, HEADS_FIRST, BLOCK_I, BLOCK_N, BLOCK_K, p_ld, v_ld)
        p_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_I, BLOCK_K], plain)
        v_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_K, BLOCK_N], plain)
        a = gl.allocate_shared_memory(gl.bfloat16, [3, BLOCK_I, BLOCK_K], a_sl)  # P: hi, mid, lo
        bv = gl.allocate_shared_memory(gl.bfloat16, [3, BLOCK_K, BLOCK_N], b_sl)  # v: hi, mid, lo
        num_k = gl.cdiv(R, BLOCK_K)
        _ring_start(p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC, BLOCK_K, STAGES)

        acc = gl.zeros([BLOCK_I, BLOCK_N], gl.float32, layout=acc_l)
        for kt in range(num_k):
            # after this, every warpgroup's wgmma of step kt-1 (which read the parts rewritten below
            # and the ring slot refilled here) are done: each waited for them before the barrier
            _ring_next(kt, p_smem, v_smem, p_rows, pk, p_imask, v_cols, vk, v_nmask, R, HC, BLOCK_K, STAGES)
            _store_parts(a, p_smem.index(kt % STAGES), p_ld)
            _store_parts(bv, v_smem.index(kt % STAGES), v_ld)
            fence_async_shared()  # the parts, written by threads, become visible to the tensor cores
            _barrier()
            # smallest products first; the first one starts the fresh tile (use_acc=False)
            step = warpgroup_mma(a.index(1), bv.index(1), acc, use_acc=False, is_async=True)  # mid*mid
            step = warpgroup_mma(a.index(0), bv.index(2), step, is_async=True)  # hi*lo
            step = warpgroup_mma(a.index(2), bv.index(0), step, is_async=True)  # lo*hi
            step = warpgroup_mma(a.index(1), bv.index(0), step, is_async=True)  # mid*hi
            step = warpgroup_mma(a.index(0), bv.index(1), step, is_async=True)  # hi*mid
            step = warpgroup_mma(a.index(0), bv.index(0), step, is_async=True)  # hi*hi
            acc = acc + warpgroup_mma_wait(0, deps=[step])  # IEEE add: no truncation of the running sum
        cp.wait_group(0)
        _gate_and_store(acc, g_ptr, out_ptr, y_ptr, base, i0, n0, S, R, H, C, STORE_Y, BLOCK_I, BLOCK_N, acc_l)


#: launch shape: an (i, n) tile of BLOCK_I x BLOCK_N (64 rows per warpgroup), k-steps of BLOCK_K,
#: a ring of STAGES copies; maxnreg caps registers so three 8-warp programs share an SM.
#: H100 (128, 384, 8), same process (tune.py --parts gluon-split; CHANGELOG.md): 62.9 us;
#: 3 stages 69.0, uncapped 81.4, BLOCK_K 32 71.7, 64x128 with 4 warps 63.3 (uncapped, 3 stages).
DEFAULT_CONFIG = dict(BLOCK_I=128, BLOCK_N=64, BLOCK_K=16, STAGES=2, num_warps=8, maxnreg=80)


def forward(p: torch.Tensor, v: torch.Tensor, g: torch.Tensor, out: torch.Tensor, y: torch.Tensor | None,
            grid_fn, overrides=None) -> None:
    """out (and y, if given) from the stored fp32 P [B,H,R,R] and fp32 v, g [B,S,R,H,C];
    ``grid_fn(tiles_n, tiles_i, B*H)`` is launch.grid (launch order and its flag); ``overrides``
    changes DEFAULT_CONFIG (MSAPWAOptions.config_overrides["gluon_split"]; maxnreg=None: no cap)."""
    B, S, R, H, C = v.shape
    cfg = {**DEFAULT_CONFIG, **(overrides or {})}
    grid, order = grid_fn(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
    _fwd_bf16x6_kernel[grid](p, v, g, out, y if y is not None else out, S, R, H, C, STORE_Y=y is not None,
                             **order, **cfg)
