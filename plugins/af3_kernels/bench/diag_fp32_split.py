"""What limits the fp32 forward at precision bf16x6, and why it moved to Gluon (msa_pwa_split).

    python plugins/af3_kernels/bench/diag_fp32_split.py [--parts maxnreg,manual,chunked,tiles,stats,errors]
        [--out diag_fp32_split.jsonl]

All at (S, R, C) = (128, 384, 8), B = 1, H = 8, fp32, CUDA-graph timing with L2 flushed. The
shipped kernels sit beside each variant in the same process. Parts:

- maxnreg: the shipped Triton forwards (ieee, bf16x6) with a register cap (``maxnreg``) meant to
  fit more programs per SM. The cap costs spills.
- manual: bf16x6 written out in Triton as six bf16 ``tl.dot`` on split operands.
  - one-acc: every product into the running accumulator.
  - fresh-tile: a k-step's six products into a fresh tile, then an IEEE add (Triton's own order).
  - two-acc: the small products and hi*hi in two running accumulators.
- chunked: one-acc per CHUNK of j, chunk sums added through a tile-major scratch buffer.
- tiles: Triton's bf16x6 at tile shapes whose count fills whole waves (768 tiles of 128x32).
- stats: the statistics kernel with one program per (b, i, group of HG heads) instead of per
  (b, i) (HG = 8 is today's work per program).
- errors: max abs error against float64 as R grows: eager, the shipped forwards, one-acc,
  fresh-tile and chunked.

Every result is one JSON line (printed, and appended to --out).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import triton
import triton.language as tl

from af3_kernels import timing
from af3_kernels.ops import msa_pwa as M
from af3_kernels.reference import msa_pwa_reference
from bench_msa_pwa import inputs

ONE_ACC, FRESH_TILE, TWO_ACC = 0, 1, 2
MODES = {"one-acc": ONE_ACC, "fresh-tile": FRESH_TILE, "two-acc": TWO_ACC}


@triton.jit
def _split3(x):
    hi = x.to(tl.bfloat16)
    rest = x - hi.to(tl.float32)
    mid = rest.to(tl.bfloat16)
    return hi, mid, (rest - mid.to(tl.float32)).to(tl.bfloat16)


@triton.jit
def _five_small(ph, pm, pl, vh, vm, vl, acc):
    """acc + the five bf16x6 products other than hi*hi, smallest first."""
    acc = tl.dot(pm, vm, acc)
    acc = tl.dot(ph, vl, acc)
    acc = tl.dot(pl, vh, acc)
    acc = tl.dot(pm, vh, acc)
    return tl.dot(ph, vm, acc)


@triton.jit
def _six(p, vt, acc):
    """acc + the six bf16x6 products of p @ vt, smallest first, accumulated by the tensor cores."""
    ph, pm, pl = _split3(p)
    vh, vm, vl = _split3(vt)
    return tl.dot(ph, vh, _five_small(ph, pm, pl, vh, vm, vl, acc))


@triton.jit
def _fwd_manual_kernel(
    v_ptr, g_ptr, out_ptr, p_ptr, S, R, H: tl.constexpr, C: tl.constexpr, HEADS_FIRST: tl.constexpr,
    MODE: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """msa_pwa's forward from a stored fp32 P (v in place, one head per program) with the bf16x6
    products written out; MODE picks how they are accumulated (see the module docstring)."""
    pid_i, b, h0, n0, offs_i, base, off, nmask, col_t, io, iomask = M._fwd_tile(
        S, R, H, C, 1, HEADS_FIRST, BLOCK_I, BLOCK_N)
    acc = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    acc_h = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    imask = offs_i < R
    prow = p_ptr + ((b * H + h0) * R + offs_i.to(tl.int64)[:, None]) * R
    for j0 in range(0, R, BLOCK_J):
        offs_j = j0 + tl.arange(0, BLOCK_J)
        p = tl.load(prow + offs_j[None, :], mask=imask[:, None] & (offs_j < R)[None, :], other=0.0)
        vt = M._xtile(v_ptr, base, H * C, offs_j, R, off, nmask)
        if MODE == 0:  # ONE_ACC
            acc = _six(p, vt, acc)
        elif MODE == 1:  # FRESH_TILE
            acc += _six(p, vt, tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32))
        else:  # TWO_ACC
            ph, pm, pl = _split3(p)
            vh, vm, vl = _split3(vt)
            acc = _five_small(ph, pm, pl, vh, vm, vl, acc)
            acc_h = tl.dot(ph, vh, acc_h)
    if MODE == 2:
        acc += acc_h
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=iomask, other=0.0))
    tl.store(out_ptr + io, acc * gate, mask=iomask)


@triton.jit
def _fwd_chunked_kernel(
    v_ptr, g_ptr, out_ptr, p_ptr, scratch_ptr, S, R, H: tl.constexpr, C: tl.constexpr,
    HEADS_FIRST: tl.constexpr, CHUNK: tl.constexpr, STAGES: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """ONE_ACC per CHUNK of j; each chunk's sum is added (IEEE) to the tile's sum so far, which waits
    in a tile-major scratch buffer (offsets affine in the thread index: nothing held through the loop)."""
    pid_i, b, h0, n0, offs_i, base, off, nmask, col_t, io, iomask = M._fwd_tile(
        S, R, H, C, 1, HEADS_FIRST, BLOCK_I, BLOCK_N)
    imask = offs_i < R
    prow = p_ptr + ((b * H + h0) * R + offs_i.to(tl.int64)[:, None]) * R
    tile = (tl.program_id(0) + tl.num_programs(0) * (tl.program_id(1) + tl.num_programs(1) * tl.program_id(2))).to(tl.int64)
    sp = scratch_ptr + tile * (BLOCK_I * BLOCK_N) + tl.arange(0, BLOCK_I)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    acc = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
    for c0 in range(0, R, CHUNK):
        acc = tl.zeros([BLOCK_I, BLOCK_N], dtype=tl.float32)
        for jj in tl.range(0, CHUNK, BLOCK_J, num_stages=STAGES):
            offs_j = c0 + jj + tl.arange(0, BLOCK_J)
            p = tl.load(prow + offs_j[None, :], mask=imask[:, None] & (offs_j < R)[None, :], other=0.0)
            vt = M._xtile(v_ptr, base, H * C, offs_j, R, off, nmask)
            acc = _six(p, vt, acc)
        if c0 > 0:
            acc += tl.load(sp)
        if c0 + CHUNK < R:
            tl.store(sp, acc)
            tl.debug_barrier()
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=iomask, other=0.0))
    tl.store(out_ptr + io, acc * gate, mask=iomask)


@triton.jit
def _stats_heads_kernel(bias_ptr, m2_ptr, l2_ptr, p_ptr, R, H: tl.constexpr, HG: tl.constexpr, BLOCK_J: tl.constexpr):
    """msa_pwa's statistics kernel (single block, no mask, P written) with one program per (b, i,
    group of HG heads)."""
    pid = tl.program_id(0).to(tl.int64)
    groups: tl.constexpr = (H + HG - 1) // HG
    row = pid // groups  # b * R + i
    b = row // R
    i = row % R
    offs_h = (pid % groups) * HG + tl.arange(0, HG)
    hmask = offs_h < H
    offs_j = tl.arange(0, BLOCK_J)
    jmask = offs_j < R
    x = tl.load(bias_ptr + row * R * H + offs_j[:, None] * H + offs_h[None, :],
                mask=jmask[:, None] & hmask[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
    x = tl.where(jmask[:, None], x, float("-inf"))
    m = tl.max(x, axis=0)
    l = tl.log2(tl.sum(tl.exp2(x - m[None, :]), axis=0))
    stat = (b * H + offs_h) * R + i
    tl.store(m2_ptr + stat, m, mask=hmask)
    tl.store(l2_ptr + stat, l, mask=hmask)
    p = tl.exp2(x - m[None, :] - l[None, :])
    tl.store(p_ptr + ((b * H + offs_h) * R * R + i * R)[None, :] + offs_j[:, None],
             p.to(p_ptr.dtype.element_ty), mask=jmask[:, None] & hmask[None, :])


def stored_p(bias):
    """The statistics kernel's P [B,H,R,R] (fp32 for fp32 inputs)."""
    B, R, _, H = bias.shape
    return M._softmax_stats(bias, None, (0, 0, 0), B, R, H, True)[2]


def manual_forward(v, bias, g, mode, cfg):
    B, S, R, H, C = v.shape
    p = stored_p(bias)
    out = torch.empty((B, S, R, H * C), dtype=v.dtype, device=v.device)
    grid, order = M._grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
    _fwd_manual_kernel[grid](v, g, out, p, S, R, H, C, **order, MODE=mode, **cfg)
    return out


def chunked_forward(v, bias, g, chunk, cfg):
    B, S, R, H, C = v.shape
    p = stored_p(bias)
    out = torch.empty((B, S, R, H * C), dtype=v.dtype, device=v.device)
    grid, order = M._grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H)
    scratch = torch.empty(grid[0] * grid[1] * grid[2] * cfg["BLOCK_I"] * cfg["BLOCK_N"] if R > chunk else 1,
                          dtype=torch.float32, device=v.device)
    _fwd_chunked_kernel[grid](v, g, out, p, scratch, S, R, H, C, **order, CHUNK=chunk,
                              STAGES=cfg.get("num_stages", 3), **cfg)
    return out


def stats_heads(bias, hg, num_warps):
    B, R, _, H = bias.shape
    m2 = torch.empty((B, H, R), dtype=torch.float32, device=bias.device)
    l2 = torch.empty_like(m2)
    p = torch.empty((B, H, R, R), dtype=bias.dtype, device=bias.device)
    _stats_heads_kernel[(B * R * triton.cdiv(H, hg),)](bias, m2, l2, p, R, H, HG=hg, BLOCK_J=max(16, M._pow2(R)),
                                                       num_warps=num_warps)
    return m2, l2, p


def cfg(i, j, n, w, s, **kw):
    return dict(BLOCK_I=i, BLOCK_J=j, BLOCK_N=n, num_warps=w, num_stages=s, **kw)


class Diag:
    def __init__(self, out):
        self.out, self.flusher = out, timing.L2Flusher("cuda")
        self.v, self.b, self.g, _ = inputs("fp32", 128, 384, 8)
        with torch.no_grad():
            self.ref = msa_pwa_reference(self.v.double(), self.b.double(), self.g.double())

    def emit(self, **record):
        print(json.dumps(record), flush=True)
        if self.out:
            with open(self.out, "a") as f:
                f.write(json.dumps({"gpu": torch.cuda.get_device_name(0), **record}) + "\n")

    def measure(self, fn, **record):
        """Time fn() (a forward at the fixed inputs) and its max abs error against float64."""
        try:
            with torch.no_grad():
                err = (fn().double() - self.ref).abs().max().item()
            us = timing.median(timing.time_cuda_graph(fn, 50, flush=self.flusher)) * 1e3
        except Exception as exc:  # e.g. a register cap ptxas cannot meet
            self.emit(**record, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        self.emit(**record, us=round(us, 2), err=err)

    def shipped(self, precision, gluon=True, over=None):
        """The shipped forward at ``precision`` (bf16x6 with the Gluon forward or Triton's), with
        CONFIG_OVERRIDES['fwd'] = over."""
        def fn():
            M.USE_GLUON_SPLIT_FORWARD, M.CONFIG_OVERRIDES["fwd"] = gluon, over or {}
            try:
                return M.msa_pair_weighted_averaging(self.v, self.b, self.g, precision=precision)
            finally:
                M.USE_GLUON_SPLIT_FORWARD = True
                M.CONFIG_OVERRIDES.pop("fwd", None)
        name = precision if precision != "bf16x6" else ("bf16x6-gluon" if gluon else "bf16x6-triton")
        self.measure(fn, part="shipped", impl=name, override=over)

    def maxnreg(self):
        for c in (cfg(128, 32, 64, 8, 3, maxnreg=80), cfg(128, 32, 64, 8, 3, maxnreg=96), cfg(64, 32, 64, 4, 3, maxnreg=80)):
            self.shipped("ieee", over=c)
        for c in (cfg(64, 32, 64, 4, 3, maxnreg=96), cfg(64, 32, 64, 4, 2, maxnreg=96), cfg(64, 16, 64, 4, 3, maxnreg=80)):
            self.shipped("bf16x6", gluon=False, over=c)

    def manual(self):
        for name, mode in MODES.items():
            for c in (cfg(128, 16, 64, 8, 3), cfg(128, 16, 64, 8, 3, maxnreg=80), cfg(64, 32, 64, 4, 3)):
                self.measure(lambda: manual_forward(self.v, self.b, self.g, mode, c), part="manual", mode=name, cfg=c)

    def chunked(self):
        for chunk in (64, 128, 192):
            self.measure(lambda: chunked_forward(self.v, self.b, self.g, chunk, cfg(128, 16, 64, 8, 3, maxnreg=80)),
                         part="chunked", chunk=chunk)

    def tiles(self):
        for c in (cfg(128, 16, 32, 8, 3), cfg(128, 32, 32, 8, 3), cfg(64, 16, 32, 4, 3), cfg(128, 16, 64, 8, 3)):
            self.shipped("bf16x6", gluon=False, over=c)

    def stats(self):
        B, R, _, H = self.b.shape
        shipped = lambda: M._softmax_stats(self.b, None, (0, 0, 0), B, R, H, True)  # noqa: E731
        us = timing.median(timing.time_cuda_graph(shipped, 50, flush=self.flusher)) * 1e3
        self.emit(part="stats", impl="shipped", us=round(us, 2))
        ref = shipped()
        for hg, nw in ((8, 4), (4, 4), (2, 4), (2, 2), (1, 2)):
            got = stats_heads(self.b, hg, nw)
            same = all(torch.allclose(x, y, rtol=1e-6, atol=1e-7) for x, y in zip(ref, got))
            us = timing.median(timing.time_cuda_graph(lambda: stats_heads(self.b, hg, nw), 50, flush=self.flusher)) * 1e3
            self.emit(part="stats", HG=hg, num_warps=nw, us=round(us, 2), matches_shipped=same)

    def errors(self):
        c80 = cfg(128, 16, 64, 8, 3, maxnreg=80)
        for S, R in ((128, 384), (32, 1536), (16, 3072)):
            v, b, g, _ = inputs("fp32", S, R, 8)
            with torch.no_grad():
                ref = msa_pwa_reference(v.double(), b.double(), g.double())
                impls = {"eager": lambda: msa_pwa_reference(v, b, g),
                         "ieee": lambda: M.msa_pair_weighted_averaging(v, b, g),
                         "bf16x6-gluon": lambda: M.msa_pair_weighted_averaging(v, b, g, precision="bf16x6"),
                         "one-acc": lambda: manual_forward(v, b, g, ONE_ACC, c80),
                         "fresh-tile": lambda: manual_forward(v, b, g, FRESH_TILE, c80),
                         "chunked128": lambda: chunked_forward(v, b, g, 128, c80)}
                row = {k: (fn().double() - ref).abs().max().item() for k, fn in impls.items()}
                M.USE_GLUON_SPLIT_FORWARD = False
                row["bf16x6-triton"] = (M.msa_pair_weighted_averaging(v, b, g, precision="bf16x6").double() - ref).abs().max().item()
                M.USE_GLUON_SPLIT_FORWARD = True
            # the bar of tests/test_kernels_msa_pwa.py: 3x eager's error plus 1e-6 of the scale
            bar = 3 * row["eager"] + 1e-6 * max(ref.abs().max().item(), 1.0)
            self.emit(part="errors", S=S, R=R, bar=bar, max_abs_err=row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="maxnreg,manual,chunked,tiles,stats,errors")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    diag = Diag(args.out)
    t0 = time.time()
    for impl in ("ieee", "bf16x6-triton", "bf16x6-gluon"):  # the shipped kernels first ...
        diag.shipped(impl.split("-")[0], gluon=impl.endswith("gluon"))
    for part in args.parts.split(","):
        getattr(diag, part)()
    for impl in ("ieee", "bf16x6-triton", "bf16x6-gluon"):  # ... and last, to see the run's drift
        diag.shipped(impl.split("-")[0], gluon=impl.endswith("gluon"))
    diag.emit(part="done", seconds=round(time.time() - t0, 1))


if __name__ == "__main__":
    main()
