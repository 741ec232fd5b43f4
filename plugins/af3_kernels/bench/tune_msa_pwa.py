"""Block-size sweep and per-kernel time breakdown of the fused MSA pair-weighted averaging kernels,
timed from CUDA graphs (GPU time only: at these sizes Python launch costs would hide the kernels).

    python plugins/af3_kernels/bench/tune_msa_pwa.py [--out tune.jsonl] [--budget-s 300]
        [--parts fwd,fwdbwd,profile] [--baseline path/to/older/msa_pwa.py]

For each target shape of the kernel issue (B=1, H=8) and each operand layout ("flat": v read in
place; "gemm": v copied to [B,H,R,S*C] first), every candidate configuration of the main kernel is
timed (median of --reps graph replays, L2 flushed before each); the best is printed beside eager
PyTorch replayed from a graph in the same process. --baseline times another copy of msa_pwa.py
(e.g. the previous commit's) the same way, for a same-run ratio. The profile part lists each
kernel's own GPU time for the best configuration (torch.profiler), so the time can be attributed.
Every measurement is one JSON line in --out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

import torch

from af3_kernels import floors, timing
from af3_kernels.ops import msa_pwa
from af3_kernels.reference import msa_pwa_reference
from bench_msa_pwa import B, H, inputs  # the same shapes and inputs as the side-by-side table

FWD_SHAPES = [("bf16", 128, 384, 8), ("bf16", 128, 384, 32), ("bf16", 128, 768, 32), ("bf16", 512, 768, 8),
              ("fp32", 128, 384, 8)]
FWDBWD_SHAPES = [("fp32", 128, 384, 8)]


def cfg(i, j, n, w, s):
    return dict(BLOCK_I=i, BLOCK_J=j, BLOCK_N=n, num_warps=w, num_stages=s)


CANDIDATES = {
    ("fwd", "tensor"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 64, 4, 3), cfg(64, 64, 128, 4, 3),
                        cfg(64, 64, 64, 4, 3), cfg(128, 128, 64, 8, 3), cfg(128, 64, 256, 8, 3),
                        cfg(64, 64, 256, 8, 3), cfg(128, 32, 128, 8, 4), cfg(64, 128, 128, 4, 2),
                        cfg(128, 128, 128, 8, 2)],
    ("fwd", "fma"): [cfg(64, 16, 64, 4, 3), cfg(64, 32, 64, 4, 2), cfg(32, 32, 64, 4, 2), cfg(64, 16, 128, 8, 3),
                     cfg(128, 16, 64, 8, 3), cfg(64, 32, 128, 8, 2), cfg(32, 16, 64, 2, 3), cfg(128, 32, 128, 8, 2),
                     cfg(64, 64, 64, 4, 2)],
    ("dv", "fma"): [cfg(32, 64, 64, 4, 2), cfg(16, 64, 64, 4, 3), cfg(32, 64, 128, 8, 2), cfg(32, 128, 64, 8, 2),
                    cfg(16, 32, 64, 2, 3), cfg(32, 64, 32, 4, 3)],
    ("dbias", "fma"): [cfg(64, 64, 32, 4, 2), cfg(64, 64, 16, 4, 3), cfg(32, 64, 32, 4, 3), cfg(64, 128, 16, 8, 3),
                       cfg(128, 64, 16, 8, 3), cfg(64, 32, 32, 4, 2)],
    ("dv", "tensor"): [cfg(64, 64, 128, 4, 3), cfg(64, 64, 64, 4, 3), cfg(32, 64, 128, 4, 3), cfg(64, 128, 64, 8, 3)],
    ("dbias", "tensor"): [cfg(128, 64, 32, 8, 2), cfg(64, 64, 32, 4, 3), cfg(64, 64, 64, 4, 3), cfg(128, 128, 32, 8, 3)],
    ("fwd", "tensor-more"): [cfg(64, 32, 64, 4, 4), cfg(64, 64, 64, 4, 4), cfg(128, 64, 64, 4, 4), cfg(64, 64, 64, 8, 3),
                             cfg(32, 64, 64, 4, 3), cfg(64, 64, 32, 4, 3), cfg(128, 64, 64, 8, 4), cfg(64, 128, 64, 4, 3)],
    ("fwd", "fma-more"): [cfg(128, 16, 64, 8, 3), cfg(128, 32, 64, 8, 3), cfg(128, 16, 128, 8, 3), cfg(256, 16, 64, 8, 3),
                          cfg(128, 16, 32, 4, 3), cfg(64, 16, 64, 4, 4), cfg(128, 8 * 2, 64, 4, 3), cfg(64, 32, 64, 4, 3)],
    ("fwd_tma", "tma"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 128, 4, 3), cfg(128, 64, 256, 8, 3),
                         cfg(128, 64, 64, 4, 4), cfg(64, 64, 128, 4, 4), cfg(128, 128, 128, 8, 2),
                         cfg(64, 64, 256, 8, 3), cfg(256, 64, 128, 8, 2), cfg(128, 32, 128, 4, 4)],
    # heads per program (group_heads): a wider n tile carries the same per-head width at 2 heads
    ("fwd", "heads"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 64, 4, 3), cfg(64, 64, 128, 4, 3),
                       cfg(128, 32, 128, 8, 3), cfg(64, 64, 64, 4, 3), cfg(128, 64, 128, 4, 2)],
    ("fwd_tma", "heads"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 256, 8, 2), cfg(128, 64, 64, 4, 3),
                           cfg(64, 64, 128, 4, 3), cfg(128, 32, 128, 8, 4), cfg(128, 32, 256, 8, 3)],
    # fp32 through bf16 splits (bf16x6, bf16x3): fp32 tiles arrive and are split in registers
    ("fwd", "split"): [cfg(64, 64, 64, 4, 3), cfg(128, 64, 64, 8, 3), cfg(64, 32, 64, 4, 3), cfg(128, 32, 64, 8, 3),
                       cfg(64, 64, 128, 4, 2), cfg(128, 64, 128, 8, 2), cfg(64, 32, 128, 4, 3), cfg(128, 32, 128, 8, 3),
                       cfg(64, 64, 32, 4, 3), cfg(32, 64, 64, 4, 3), cfg(64, 32, 64, 4, 4), cfg(64, 16, 64, 4, 4),
                       cfg(64, 32, 32, 4, 3), cfg(64, 32, 64, 4, 2), cfg(64, 16, 64, 4, 3), cfg(64, 16, 64, 4, 2),
                       cfg(64, 32, 32, 4, 2), cfg(64, 16, 32, 4, 3)],
    ("dv", "split"): [cfg(64, 128, 64, 8, 3), cfg(64, 64, 64, 4, 3), cfg(64, 64, 128, 4, 3), cfg(32, 64, 64, 4, 3),
                      cfg(64, 128, 128, 8, 2), cfg(128, 64, 64, 8, 3)],
    ("dbias", "split"): [cfg(64, 64, 32, 4, 3), cfg(128, 64, 32, 8, 2), cfg(64, 64, 64, 4, 3), cfg(128, 128, 32, 8, 3),
                         cfg(64, 128, 32, 8, 3), cfg(32, 64, 32, 4, 3)],
    ("elementwise", None): [dict(BLOCK_I=32, BLOCK_N=128, num_warps=4), dict(BLOCK_I=16, BLOCK_N=256, num_warps=4),
                            dict(BLOCK_I=64, BLOCK_N=64, num_warps=4), dict(BLOCK_I=8, BLOCK_N=512, num_warps=4),
                            dict(BLOCK_I=64, BLOCK_N=128, num_warps=8)],
}


# Gluon FMA forward (msa_pwa_fma): changes to its DEFAULT_CONFIG. SPT_*: the per-thread block,
# TPW_I/WARPS_I: threads and warps along i, REP_*: repeats of the layout over the tile (a thread
# then owns REP_I x REP_N blocks a layout-width apart), P_PHASE/P_MAX_PHASE: the P tile's swizzle.
GLUON_CANDIDATES = [
    dict(), dict(SPT_N=4), dict(SPT_N=4, REP_N=2), dict(SPT_I=4, SPT_N=4, REP_I=2, REP_N=2, P_PHASE=4),
    dict(SPT_I=4, SPT_N=4, REP_I=2, REP_N=2, P_PHASE=4, P_MAX_PHASE=8),
    dict(SPT_I=4, SPT_N=4, TPW_I=8, REP_I=2, REP_N=2, P_PHASE=4, P_MAX_PHASE=8),
    dict(SPT_N=4, REP_N=2, num_warps=8, WARPS_I=4), dict(SPT_N=4, BLOCK_K=16, STAGES=4),
    dict(SPT_I=4, SPT_N=4, REP_I=2, REP_N=2, P_PHASE=4, STAGES=2), dict(SPT_N=4, REP_N=2, STAGES=2),
]

# Gluon bf16x6 forward (msa_pwa_split): changes to its DEFAULT_CONFIG (maxnreg=None: no register cap;
# a 64x128 tile under the default cap of 80 does not compile: its wgmma alone needs 64 accumulators)
GLUON_SPLIT_CANDIDATES = [
    dict(), dict(STAGES=3), dict(maxnreg=None), dict(STAGES=3, maxnreg=None), dict(BLOCK_K=32, STAGES=2),
    dict(BLOCK_I=64, BLOCK_N=128, num_warps=4, STAGES=3, maxnreg=None), dict(BLOCK_I=64, BLOCK_N=128, num_warps=4, maxnreg=None),
    dict(BLOCK_I=64, num_warps=4, maxnreg=None, STAGES=3), dict(maxnreg=72),
]


def report(label, res):
    """One line: the four fastest times of a sweep and the best configuration."""
    print(f"  {label}: " + ", ".join(f"{us:.1f}" for us, _ in res[:4]) + (f"  best {res[0][1]}" if res else ""),
          flush=True)


def caller(fn, v, b, g, dout, direction):
    if direction == "fwd":
        def call():
            with torch.no_grad():
                return fn(v, b, g)
    else:
        def call():
            return torch.autograd.grad(fn(v, b, g), (v, b, g), dout)
    return call


def graph_us(call, reps, flusher):
    return timing.median(timing.time_cuda_graph(call, reps, flush=flusher)) * 1e3


def fused(layout, precision="ieee", module=msa_pwa):
    def fn(v, b, g):
        if module is msa_pwa:
            return module.msa_pair_weighted_averaging(v, b, g, precision=precision, layout=layout)
        return module.msa_pair_weighted_averaging(v, b, g, precision=precision)
    return fn


def grads_of(fn, v, b, g, dout):
    """fn's output and its gradients for v, b and g."""
    ins = [x.detach().requires_grad_() for x in (v, b, g)]
    out = fn(*ins)
    return [out.detach()] + list(torch.autograd.grad(out, ins, dout))


def rel_err(fn, v, b, g):
    with torch.no_grad():
        ref = msa_pwa_reference(v.double(), b.double(), g.double())
        return ((fn(v, b, g).double() - ref).abs().max() / ref.abs().max()).item()


class Sweep:
    def __init__(self, args):
        self.args, self.flusher = args, timing.L2Flusher("cuda")
        self.end = time.time() + args.budget_s

    def emit(self, **record):
        record = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, **record}
        if self.args.out:
            with open(self.args.out, "a") as f:
                f.write(json.dumps(record) + "\n")

    def floor_and_eager(self, direction, dtype, S, R, C, v, b, g, dout):
        """The row every comparison starts from: the shape's floor and eager PyTorch, in us."""
        return {"floor": floors.msa_pwa_floor(direction, B, S, R, H, C, dtype).seconds * 1e6,
                "eager": graph_us(caller(lambda v, b, g: msa_pwa_reference(v, b, g), v, b, g, dout, direction),
                                  self.args.reps, self.flusher)}

    def time_configs(self, kernel, unit, call, tag, candidates=None):
        """Best (us, config) of ``kernel``'s candidates (CANDIDATES[(kernel, unit)] unless given),
        each timed with the other kernels at their default."""
        results = []
        for c in candidates if candidates is not None else CANDIDATES[(kernel, unit)]:
            if time.time() > self.end:
                break
            msa_pwa.CONFIG_OVERRIDES[kernel] = c
            try:
                us = graph_us(call, self.args.reps, self.flusher)
            except Exception as exc:  # e.g. a tile that does not fit in shared memory
                print(f"    {tag} {kernel} {c}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                continue
            finally:
                msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)
            results.append((us, c))
            self.emit(part="config", tag=tag, kernel=kernel, config=c, us=us)
        results.sort(key=lambda r: r[0])
        return results

    def shape_row(self, direction, dtype, S, R, C):
        tag = f"{direction} {dtype} S={S} R={R} C={C}"
        v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
        floor = floors.msa_pwa_floor(direction, B, S, R, H, C, dtype)
        row = {"floor": floor.seconds * 1e6}
        row["eager"] = graph_us(caller(lambda v, b, g: msa_pwa_reference(v, b, g), v, b, g, dout, direction),
                                self.args.reps, self.flusher)
        if self.args.baseline_module is not None:
            try:
                row["baseline"] = graph_us(caller(fused(None, module=self.args.baseline_module), v, b, g, dout, direction),
                                           self.args.reps, self.flusher)
            except Exception as exc:
                print(f"  baseline failed: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
        unit = "tensor" if dtype != "fp32" else "fma"
        best = {}
        for layout in ("flat", "gemm"):
            call = caller(fused(layout), v, b, g, dout, direction)
            if direction == "fwd":
                res = self.time_configs("fwd", unit, call, f"{tag} {layout}")
            else:  # backward kernels one at a time, the others at their defaults
                res = []
                for kernel in ("dv", "dbias"):
                    part = self.time_configs(kernel, unit, call, f"{tag} {layout}")
                    if part:
                        msa_pwa.CONFIG_OVERRIDES[kernel] = part[0][1]
                        res = part
                for kernel in ("dv", "dbias"):
                    msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)
            if res:
                best[layout] = res[0]
                row[layout] = res[0][0]
                report(f"{tag} {layout:4s}", res)
        if dtype == "fp32":
            for prec in ("tf32x3", "tf32"):
                row[f"gemm_{prec}"] = graph_us(caller(fused("gemm", prec), v, b, g, dout, direction),
                                               self.args.reps, self.flusher)
        if direction == "fwd":
            row["err_gemm"] = rel_err(fused("gemm"), v, b, g)
            row["err_eager"] = rel_err(lambda v, b, g: msa_pwa_reference(v, b, g), v, b, g)
        print(f"{tag}: " + "  ".join(f"{k} {x:.3g}" for k, x in row.items()), flush=True)
        self.emit(part="row", direction=direction, dtype=dtype, S=S, R=R, C=C, row=row,
                  best={k: c for k, (_, c) in best.items()})
        return best

    def orientation(self):
        """fp32 FMA path: dbias from n-major copies of dY' and v (FMA_DBIAS_NMAJOR) on and off, its
        block sizes swept, and the forward's larger block sizes. (A forward reading P stored as
        P[j, i], tried on the same run, was slower: 91 vs 77 us; docs/KERNELS.md.)"""
        v, b, g, dout = inputs("fp32", 128, 384, 8)
        res = self.time_configs("fwd", "fma-more", caller(fused("flat"), v, b, g, dout, "fwd"), "fwd fp32 flat")
        report("fwd fp32 128,384,8 flat (more configs)", res)
        self.emit(part="orientation", what="fwd", best=res[:1])
        v, b, g, dout = inputs("fp32", 128, 384, 8, grad=True)
        for layout in ("flat", "gemm"):
            for nmajor in (False, True):
                msa_pwa.FMA_DBIAS_NMAJOR = nmajor
                call = caller(fused(layout), v, b, g, dout, "fwdbwd")
                res = self.time_configs("dbias", "fma", call, f"fwdbwd fp32 {layout} NMAJOR={nmajor}")
                report(f"fwdbwd fp32 128,384,8 {layout} FMA_DBIAS_NMAJOR={nmajor}", res)
                self.emit(part="orientation", what="fwdbwd", layout=layout, nmajor=nmajor, best=res[:1])
        msa_pwa.FMA_DBIAS_NMAJOR = True

    def tensor_core_fp32(self):
        """fp32 through tensor cores (tf32x3, tf32): block sizes of each kernel."""
        v, b, g, dout = inputs("fp32", 128, 384, 8, grad=True)
        for prec in ("tf32x3", "tf32"):
            for direction, kernels in (("fwd", ("fwd",)), ("fwdbwd", ("dv", "dbias"))):
                call = caller(fused("flat", prec), v, b, g, dout, direction)
                for kernel in kernels:
                    res = self.time_configs(kernel, "tensor", call, f"{direction} fp32 {prec}")
                    if res:
                        msa_pwa.CONFIG_OVERRIDES[kernel] = res[0][1]
                    report(f"{direction} fp32 128,384,8 {prec} via {kernel}", res)
                    self.emit(part="tensor_fp32", precision=prec, direction=direction, kernel=kernel, best=res[:1])
                for kernel in kernels:
                    msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)

    def split_fp32(self):
        """fp32 through bf16 splits (precision bf16x6 and bf16x3: each fp32 operand split into bf16
        parts, 6 or 3 tensor-core products): block sizes of each kernel, then every precision timed
        beside eager in the same process, and each one's max abs error against float64 for the
        output and the three gradients (eager fp32's beside it)."""
        v, b, g, dout = inputs("fp32", 128, 384, 8, grad=True)
        plain = [x.detach() for x in (v, b, g)]  # the forward alone: inputs that track no gradient
        best = {}
        for prec in ("bf16x6", "bf16x3"):
            for direction, kernels in (("fwd", ("fwd",)), ("fwdbwd", ("dv", "dbias"))):
                ins = plain if direction == "fwd" else (v, b, g)
                call = caller(fused("flat", prec), *ins, dout, direction)
                for kernel in kernels:
                    res = self.time_configs(kernel, "split", call, f"{direction} fp32 {prec}")
                    if res:
                        msa_pwa.CONFIG_OVERRIDES[kernel] = best[(prec, kernel)] = res[0][1]
                    report(f"{direction} fp32 128,384,8 {prec} via {kernel}", res)
                    self.emit(part="split_fp32", precision=prec, direction=direction, kernel=kernel, best=res[:1])
            for kernel in ("fwd", "dv", "dbias"):
                msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)
        for direction in ("fwd", "fwdbwd"):
            row = self.floor_and_eager(direction, "fp32", 128, 384, 8, v, b, g, dout)
            for prec in ("ieee", "bf16x6", "bf16x3", "tf32x3"):
                for kernel in ("fwd", "dv", "dbias"):
                    if (prec, kernel) in best:
                        msa_pwa.CONFIG_OVERRIDES[kernel] = best[(prec, kernel)]
                ins = plain if direction == "fwd" else (v, b, g)
                row[prec] = graph_us(caller(fused("flat", prec), *ins, dout, direction), self.args.reps, self.flusher)
                for kernel in ("fwd", "dv", "dbias"):
                    msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)
            print(f"split fp32 {direction} 128,384,8: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
            self.emit(part="split_fp32", what="row", direction=direction, row=row)
        ref = grads_of(msa_pwa_reference, v.double(), b.double(), g.double(), dout.double())
        scale = [r.abs().max().item() for r in ref]
        impls = {"eager fp32": msa_pwa_reference}
        impls.update({p: fused("flat", p) for p in ("ieee", "bf16x6", "bf16x3", "tf32x3")})
        for name, fn in impls.items():
            got = grads_of(fn, v, b, g, dout)
            errs = {k: (x.double() - r).abs().max().item() for k, x, r in zip(("out", "dv", "dbias", "dg"), got, ref)}
            print(f"split fp32 max abs error vs float64, {name}: " + "  ".join(
                f"{k} {e:.2e} ({e / s:.1e} of max)" for (k, e), s in zip(errs.items(), scale)), flush=True)
            self.emit(part="split_fp32", what="error", impl=name, max_abs_err=errs, ref_max=scale)

    def launch_variants(self):
        """Each forward shape (and fp32 / bf16 forward+backward) with the forward launched after the
        statistics kernel or, with programmatic dependent launch (USE_PDL), during it; fp32 also at
        precision bf16x6 (on Hopper its forward is the Gluon kernel, which PDL does not touch; Triton's
        tl.dot forward as bf16x6-triton) and bf16x3. Beside eager and --baseline, in one process."""
        default_pdl = msa_pwa.USE_PDL
        for direction, dtype, S, R, C, v, b, g, dout, row in self.comparison_rows():
            for pdl in (False, True):
                msa_pwa.USE_PDL = pdl
                for prec in ("ieee", "bf16x6", "bf16x3") if dtype == "fp32" else ("ieee",):
                    name = ("fused" if prec == "ieee" else prec) + ("+pdl" if pdl else "")
                    row[name] = graph_us(caller(fused("auto", prec), v, b, g, dout, direction), self.args.reps,
                                         self.flusher)
            if dtype == "fp32":  # bf16x6 with Triton's tl.dot forward instead of the Gluon one
                saved, msa_pwa.USE_GLUON_SPLIT_FORWARD = msa_pwa.USE_GLUON_SPLIT_FORWARD, False
                try:
                    row["bf16x6-triton+pdl"] = graph_us(caller(fused("auto", "bf16x6"), v, b, g, dout, direction),
                                                        self.args.reps, self.flusher)
                finally:
                    msa_pwa.USE_GLUON_SPLIT_FORWARD = saved
            msa_pwa.USE_PDL = default_pdl
            if direction == "fwd" and dtype == "fp32":  # no_grad with inputs that require grad
                tracked = [x.detach().requires_grad_() for x in (v, b, g)]
                row["fused_tracked"] = graph_us(caller(fused("auto"), *tracked, dout, direction), self.args.reps,
                                                self.flusher)
                if self.args.baseline_module is not None:
                    row["baseline_tracked"] = graph_us(caller(fused(None, module=self.args.baseline_module),
                                                              *tracked, dout, direction), self.args.reps, self.flusher)
            tag = f"{direction} {dtype} S={S} R={R} C={C}"
            print(f"launch {tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
            self.emit(part="launch", direction=direction, dtype=dtype, S=S, R=R, C=C, row=row)

    def bf16_more(self):
        v, b, g, dout = inputs("bf16", 128, 384, 8)
        for layout in ("flat", "gemm"):
            res = self.time_configs("fwd", "tensor-more", caller(fused(layout), v, b, g, dout, "fwd"), f"fwd bf16 {layout}")
            report(f"fwd bf16 128,384,8 {layout} (more configs)", res)
            self.emit(part="bf16_more", layout=layout, best=res[:1])

    def tma_forward(self):
        """The 16-bit forward through TMA descriptors (_fwd_tma_kernel): its block sizes per shape and
        layout, beside the pointer-load forward (USE_TMA_FORWARD off) and eager in the same run."""
        for dtype, S, R, C in FWD_SHAPES:
            if dtype == "fp32":
                continue
            tag = f"fwd {dtype} S={S} R={R} C={C}"
            v, b, g, dout = inputs(dtype, S, R, C)
            row = self.floor_and_eager("fwd", dtype, S, R, C, v, b, g, dout)
            msa_pwa.USE_TMA_FORWARD = False
            row["pointer_auto"] = graph_us(caller(fused("auto"), v, b, g, dout, "fwd"), self.args.reps, self.flusher)
            msa_pwa.USE_TMA_FORWARD = True
            best = {}
            for layout in ("flat", "gemm"):
                res = self.time_configs("fwd_tma", "tma", caller(fused(layout), v, b, g, dout, "fwd"), f"{tag} {layout}")
                report(f"{tag} tma {layout:4s}", res)
                if res:
                    row[f"tma_{layout}"] = res[0][0]
                    best[layout] = res[0][1]
            row["tma_auto_default"] = graph_us(caller(fused("auto"), v, b, g, dout, "fwd"), self.args.reps, self.flusher)
            row["err_tma_auto"] = rel_err(fused("auto"), v, b, g)
            print(f"{tag}: " + "  ".join(f"{k} {x:.3g}" for k, x in row.items()), flush=True)
            self.emit(part="tma", dtype=dtype, S=S, R=R, C=C, row=row, best=best)

    def group_heads(self):
        """Heads per forward program (the HEADS config key; GROUP_HEADS) at the bf16 forward shapes
        whose channel pieces are under a sector (C = 8):
        the pointer-load and the TMA forward (TMA at every size here), flat layout, each with its
        candidate block sizes at 1 and 2 heads; the gemm-copy layout at its defaults, eager and
        --baseline beside them in the same run."""
        saved = msa_pwa.USE_TMA_FORWARD, msa_pwa.TMA_FORWARD_MIN_RN
        try:
            msa_pwa.TMA_FORWARD_MIN_RN = 0
            for dtype, S, R, C in FWD_SHAPES:
                if dtype == "fp32" or C * 2 >= 32:  # only where a head's channels are under a sector
                    continue
                tag = f"fwd {dtype} S={S} R={R} C={C}"
                v, b, g, dout = inputs(dtype, S, R, C)
                row = self.floor_and_eager("fwd", dtype, S, R, C, v, b, g, dout)
                if self.args.baseline_module is not None:
                    row["baseline"] = graph_us(caller(fused(None, module=self.args.baseline_module), v, b, g, dout,
                                                      "fwd"), self.args.reps, self.flusher)
                best = {}
                for kernel in ("fwd", "fwd_tma"):
                    msa_pwa.USE_TMA_FORWARD = kernel == "fwd_tma"
                    row[f"{kernel}_gemm"] = graph_us(caller(fused("gemm"), v, b, g, dout, "fwd"), self.args.reps,
                                                     self.flusher)
                    for heads in (1, 2):
                        cands = [dict(c, HEADS=heads) for c in CANDIDATES[(kernel, "heads")]]
                        res = self.time_configs(kernel, None, caller(fused("flat"), v, b, g, dout, "fwd"),
                                                f"{tag} heads={heads}", cands)
                        report(f"{tag} {kernel} flat heads={heads}", res)
                        if res:
                            row[f"{kernel}_flat_h{heads}"] = res[0][0]
                            best[f"{kernel}_h{heads}"] = res[0][1]
                print(f"heads {tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
                self.emit(part="heads", dtype=dtype, S=S, R=R, C=C, row=row, best=best)
        finally:
            msa_pwa.USE_TMA_FORWARD, msa_pwa.TMA_FORWARD_MIN_RN = saved

    def module_configs(self, module, candidates, call, label):
        """Time ``call`` (an fp32 (128, 384, 8) forward) with each candidate in a Gluon kernel
        module's CONFIG_OVERRIDES; one printed line and one JSON record per candidate."""
        for c in candidates:
            if time.time() > self.end:
                break
            module.CONFIG_OVERRIDES.update(c)
            try:
                us = graph_us(call, self.args.reps, self.flusher)
            except Exception as exc:  # e.g. too much shared memory, or a register cap ptxas cannot meet
                print(f"    {label} {c}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            finally:
                module.CONFIG_OVERRIDES.clear()
            print(f"    {label} fwd fp32 128,384,8 {c}: {us:.1f}", flush=True)
            self.emit(part=f"{label.replace('-', '_')}_config", config=c, us=us)

    def gluon_fma(self):
        """The exact fp32 forward (128, 384, 8): Triton's tl.dot on the FMA units (_fwd_kernel) against
        the Gluon kernel (msa_pwa_fma) at each candidate register tile, eager beside them; then
        forward+backward with either forward, and each one's relative error against float64."""
        from af3_kernels.ops import msa_pwa_fma

        saved = msa_pwa.USE_GLUON_FMA_FORWARD
        try:
            for direction in ("fwd", "fwdbwd"):
                v, b, g, dout = inputs("fp32", 128, 384, 8, grad=direction != "fwd")
                row = self.floor_and_eager(direction, "fp32", 128, 384, 8, v, b, g, dout)
                for gluon in (False, True):
                    msa_pwa.USE_GLUON_FMA_FORWARD = gluon
                    key = "gluon" if gluon else "triton"
                    row[key] = graph_us(caller(fused("auto"), v, b, g, dout, direction), self.args.reps, self.flusher)
                    row[f"err_{key}"] = rel_err(fused("auto"), v, b, g)
                if direction == "fwd":
                    self.module_configs(msa_pwa_fma, GLUON_CANDIDATES, caller(fused("auto"), v, b, g, dout, "fwd"),
                                        "gluon")
                print(f"gluon {direction} fp32 S=128 R=384 C=8: " + "  ".join(
                    f"{k} {x:.3g}" for k, x in row.items()), flush=True)
                self.emit(part="gluon", direction=direction, row=row)
        finally:
            msa_pwa.USE_GLUON_FMA_FORWARD = saved

    def gluon_split(self):
        """The bf16x6 fp32 forward (128, 384, 8): the Gluon kernel (msa_pwa_split) at each candidate
        configuration against Triton's tl.dot bf16x6 (_fwd_kernel), eager and the FMA path beside
        them, with each one's max abs error against float64."""
        from af3_kernels.ops import msa_pwa_split

        v, b, g, dout = inputs("fp32", 128, 384, 8)
        row = self.floor_and_eager("fwd", "fp32", 128, 384, 8, v, b, g, dout)
        with torch.no_grad():
            ref = msa_pwa_reference(v.double(), b.double(), g.double())
        saved = msa_pwa.USE_GLUON_SPLIT_FORWARD
        try:
            for key, prec, on in (("ieee", "ieee", False), ("bf16x6-triton", "bf16x6", False), ("bf16x6-gluon", "bf16x6", True)):
                msa_pwa.USE_GLUON_SPLIT_FORWARD = on
                row[key] = graph_us(caller(fused("auto", prec), v, b, g, dout, "fwd"), self.args.reps, self.flusher)
                with torch.no_grad():
                    row[f"err_{key}"] = (fused("auto", prec)(v, b, g).double() - ref).abs().max().item()
            self.module_configs(msa_pwa_split, GLUON_SPLIT_CANDIDATES,
                                caller(fused("auto", "bf16x6"), v, b, g, dout, "fwd"), "gluon-split")
        finally:
            msa_pwa.USE_GLUON_SPLIT_FORWARD = saved
        print("gluon-split fwd fp32 S=128 R=384 C=8: " + "  ".join(f"{k} {x:.3g}" for k, x in row.items()), flush=True)
        self.emit(part="gluon_split", row=row)

    def comparison_rows(self):
        """For every target shape plus fp32 and bf16 forward+backward: the shape, its inputs and the
        row of floor, eager and (with --baseline) the older msa_pwa.py, to which callers add columns."""
        shapes = [("fwd", *shape) for shape in FWD_SHAPES] + [("fwdbwd", "fp32", 128, 384, 8),
                                                             ("fwdbwd", "bf16", 128, 384, 8)]
        for direction, dtype, S, R, C in shapes:
            v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
            row = self.floor_and_eager(direction, dtype, S, R, C, v, b, g, dout)
            if self.args.baseline_module is not None:
                row["baseline"] = graph_us(caller(fused(None, module=self.args.baseline_module), v, b, g, dout,
                                                  direction), self.args.reps, self.flusher)
            yield direction, dtype, S, R, C, v, b, g, dout, row

    def compare(self):
        """Eager, --baseline (an older msa_pwa.py) and this msa_pwa.py at its defaults, side by side
        in one process, at every target shape plus bf16 forward+backward."""
        for direction, dtype, S, R, C, v, b, g, dout, row in self.comparison_rows():
            row["fused"] = graph_us(caller(fused("auto"), v, b, g, dout, direction), self.args.reps, self.flusher)
            tag = f"{direction} {dtype} S={S} R={R} C={C}"
            print(f"compare {tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
            self.emit(part="compare", direction=direction, dtype=dtype, S=S, R=R, C=C, row=row)

    def memory_variants(self):
        """Peak memory and time of forward+backward with KEEP_P_FOR_BACKWARD and
        GEMM_LAYOUT_FOR_BACKWARD on and off (bf16, S=128, H=8, C=8), eager beside them."""
        from bench_msa_pwa import peak_fwdbwd

        flags = ("KEEP_P_FOR_BACKWARD", "GEMM_LAYOUT_FOR_BACKWARD")
        saved = {f: getattr(msa_pwa, f) for f in flags}
        try:
            for R in (384, 768, 1536, 3072):
                row = {"eager": peak_fwdbwd(lambda v, b, g, m=None: msa_pwa_reference(v, b, g), "bf16", 128, R, 8)}
                for combo in ((1, 1), (1, 0), (0, 1), (0, 0)):
                    for f, on in zip(flags, combo):
                        setattr(msa_pwa, f, bool(on))
                    row["keepP%d_gemmbwd%d" % combo] = peak_fwdbwd(
                        lambda v, b, g, m=None: msa_pwa.msa_pair_weighted_averaging(v, b, g), "bf16", 128, R, 8)
                print(f"memory fwdbwd bf16 R={R} (GiB): " + "  ".join(f"{k} {x / 2**30:.6f}" for k, x in row.items()), flush=True)
                self.emit(part="memory_variants", R=R, peak_bytes=row)
            for dtype in ("bf16", "fp32"):
                v, b, g, dout = inputs(dtype, 128, 384, 8, grad=True)
                row = {}
                for combo in ((1, 1), (1, 0), (0, 1), (0, 0)):
                    for f, on in zip(flags, combo):
                        setattr(msa_pwa, f, bool(on))
                    row["keepP%d_gemmbwd%d" % combo] = graph_us(caller(fused("auto"), v, b, g, dout, "fwdbwd"),
                                                                self.args.reps, self.flusher)
                print(f"time fwdbwd {dtype} 128,384,8 (us): " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
                self.emit(part="memory_variants_time", dtype=dtype, row=row)
        finally:
            for f, val in saved.items():
                setattr(msa_pwa, f, val)

    def launch_order(self):
        """Heads-first launch order (HEADS_FIRST) and the TMA forward (USE_TMA_FORWARD), each on and
        off at the default block sizes, for every forward shape and layout; then forward+backward
        with heads first on and off. (A third flag, the gate tile loaded before the GEMM loop, was
        slower everywhere and is gone: docs/KERNELS.md.)"""
        flags = ("HEADS_FIRST", "USE_TMA_FORWARD")
        saved = {f: getattr(msa_pwa, f) for f in flags}
        combos = [(1, 1), (0, 1), (1, 0), (0, 0)]
        try:
            for dtype, S, R, C in FWD_SHAPES:
                v, b, g, dout = inputs(dtype, S, R, C)
                tag = f"fwd {dtype} S={S} R={R} C={C}"
                row = {"eager": graph_us(caller(lambda v, b, g: msa_pwa_reference(v, b, g), v, b, g, dout, "fwd"),
                                         self.args.reps, self.flusher)}
                for combo in combos:
                    for f, on in zip(flags, combo):
                        setattr(msa_pwa, f, bool(on))
                    for layout in ("flat", "gemm"):
                        key = "hf%d_tma%d_%s" % (*combo, layout)
                        row[key] = graph_us(caller(fused(layout), v, b, g, dout, "fwd"), self.args.reps, self.flusher)
                print(f"{tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
                self.emit(part="order", direction="fwd", dtype=dtype, S=S, R=R, C=C, row=row)
            for dtype in ("fp32", "bf16"):
                v, b, g, dout = inputs(dtype, 128, 384, 8, grad=True)
                row = {}
                for hf in (True, False):
                    msa_pwa.HEADS_FIRST = hf
                    for layout in ("flat", "gemm"):
                        row[f"hf{int(hf)}_{layout}"] = graph_us(caller(fused(layout), v, b, g, dout, "fwdbwd"),
                                                                self.args.reps, self.flusher)
                print(f"fwdbwd {dtype} S=128 R=384 C=8: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
                self.emit(part="order", direction="fwdbwd", dtype=dtype, S=128, R=384, C=8, row=row)
        finally:
            for f, val in saved.items():
                setattr(msa_pwa, f, val)

    def elementwise(self):
        v, b, g, dout = inputs("bf16", 128, 384, 8)
        call = caller(fused("gemm"), v, b, g, dout, "fwd")
        res = self.time_configs("elementwise", None, call, "fwd bf16 128,384,8 gemm")
        print("  elementwise (fwd bf16 128,384,8 gemm): " + ", ".join(f"{us:.1f} {c}" for us, c in res), flush=True)

    def profile(self, direction, dtype, S, R, C, layout):
        from torch.profiler import ProfilerActivity, profile

        v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
        call = caller(fused(layout), v, b, g, dout, direction)
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        n = 20
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                self.flusher()
                call()
            torch.cuda.synchronize()
        kernels = {}
        for e in prof.key_averages():
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t > 0:  # every kernel, the L2 flush's fill among them (about as long as the flush)
                kernels[e.key] = t / n
        tag = f"{direction} {dtype} S={S} R={R} C={C} {layout}"
        print(f"  profile {tag}: " + ", ".join(f"{k[:40]} {t:.1f}" for k, t in sorted(kernels.items(), key=lambda kv: -kv[1])),
              flush=True)
        self.emit(part="profile", tag=tag, kernels_us=kernels)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="fwd,fwdbwd,elementwise,profile",
                    help="comma-separated: fwd fwdbwd orientation tf32 bf16-more compare memory-variants order tma heads gluon gluon-split split launch elementwise profile profile-bf16")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--out", default="")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--baseline", default="", help="another msa_pwa.py to time beside this one")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    args.baseline_module = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("af3_kernels.ops._baseline_msa_pwa", args.baseline)
        args.baseline_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(args.baseline_module)
    parts = args.parts.split(",")
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; times in us (CUDA graph replays)",
          flush=True)
    sweep = Sweep(args)
    if "fwd" in parts:
        for shape in FWD_SHAPES:
            sweep.shape_row("fwd", *shape)
    if "fwdbwd" in parts:
        for shape in FWDBWD_SHAPES:
            sweep.shape_row("fwdbwd", *shape)
    simple = {"orientation": sweep.orientation, "tf32": sweep.tensor_core_fp32, "bf16-more": sweep.bf16_more,
              "compare": sweep.compare, "memory-variants": sweep.memory_variants, "order": sweep.launch_order,
              "tma": sweep.tma_forward, "elementwise": sweep.elementwise, "heads": sweep.group_heads,
              "gluon": sweep.gluon_fma, "gluon-split": sweep.gluon_split, "split": sweep.split_fp32, "launch": sweep.launch_variants}
    for name, run in simple.items():
        if name in parts:
            run()
    if "profile" in parts:
        for direction, shape in (("fwd", ("bf16", 128, 384, 8)), ("fwd", ("fp32", 128, 384, 8)),
                                 ("fwdbwd", ("fp32", 128, 384, 8))):
            for layout in ("flat", "gemm"):
                sweep.profile(direction, *shape, layout)
    if "profile-bf16" in parts:  # every bf16 forward shape, both layouts, at the defaults
        for shape in FWD_SHAPES:
            if shape[0] != "fp32":
                for layout in ("flat", "gemm"):
                    sweep.profile("fwd", *shape, layout)


if __name__ == "__main__":
    main()
