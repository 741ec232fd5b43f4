"""Side-by-side benchmark of MSA pair-weighted averaging on one GPU: floor, fused, eager,
torch.compile and Ligo's seed kernel, for the shapes of the kernel issue (B=1, H=8).

    python plugins/af3_kernels/bench/bench_msa_pwa.py [--graph] [--memory] [--impls fused,torch,seed]
        [--reps 100] [--out results.jsonl] [--budget-s 300]

Timing: CUDA events around each call only, L2 flushed before each repetition, median of --reps.
--graph also times every implementation, forward and forward+backward, replayed from a CUDA graph
(GPU time without Python launch costs; the seed's bias refill runs outside the graph).
Block sizes are swept by tune_msa_pwa.py.
--memory compares peak memory of forward+backward across R and finds the largest R that fits.
Every measurement is also written as one JSON line to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from af3_kernels import floors, impls, timing
from af3_kernels.ops import msa_pwa
from af3_kernels.reference import msa_pwa_reference

H, B = 8, 1
FWD_SHAPES = [  # (dtype, S, R, C): the targets first
    ("bf16", 128, 384, 8), ("bf16", 128, 384, 32), ("bf16", 128, 768, 32), ("bf16", 512, 768, 8),
    ("bf16", 128, 768, 8), ("bf16", 128, 1536, 8), ("fp32", 128, 384, 8), ("fp32", 128, 768, 8),
]
FWDBWD_SHAPES = [("fp32", 128, 384, 8), ("fp32", 128, 768, 8), ("bf16", 128, 384, 8), ("bf16", 128, 768, 32)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}

class Budget:
    def __init__(self, seconds):
        self.end = time.time() + seconds

    def left(self):
        return self.end - time.time()


def emit(out, record):
    record = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, **record}
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
    return record


def inputs(dtype, S, R, C, grad=False, seed=0):
    gen = torch.Generator("cuda").manual_seed(seed)
    kw = dict(device="cuda", dtype=DTYPES[dtype], generator=gen)
    v = torch.randn((B, S, R, H, C), **kw).requires_grad_(grad)
    g = torch.randn((B, S, R, H, C), **kw).requires_grad_(grad)
    b = torch.randn((B, R, R, H), **kw).requires_grad_(grad)
    dout = torch.randn((B, S, R, H * C), **kw) if grad else None
    return v, b, g, dout


def bench_call(fn, v, b, g, dout, direction, reps, flusher, restore_b=False, graph=False):
    """Median ms of fn in ``direction`` (fwd without autograd; fwdbwd = forward plus all grads).

    ``graph``: replays of one call captured in a CUDA graph (GPU time only) instead of CUDA events
    around each Python call."""
    def call():
        if direction == "fwd":
            with torch.no_grad():
                return fn(v, b, g, None)
        out = fn(v, b, g, None)
        return torch.autograd.grad(out, (v, b, g), dout)

    def before():
        if restore_b:  # the seed kernel writes into its saved b during backward
            with torch.no_grad():
                b.normal_()

    before_fn = before if restore_b else None
    if graph:
        return timing.median(timing.time_cuda_graph(call, reps, before=before_fn, flush=flusher))
    before()
    call()
    torch.cuda.synchronize()
    return timing.median(timing.time_cuda(call, reps, before=before_fn, flush=flusher))


def error_vs_float64(fn, v, b, g):
    with torch.no_grad():
        ref = msa_pwa_reference(v.double(), b.double(), g.double())
        return (fn(v, b, g, None).double() - ref).abs().max().item() / ref.abs().max().item()


def table(args, flusher, budget, out):
    wanted = args.impls.split(",")
    made = {}
    for impl in wanted:
        try:
            made[impl] = impls.make(impl, precision="ieee")[0]
        except Exception as exc:
            print(f"{impl}: unavailable ({exc})", flush=True)
    extra = {"fused_tf32x3": impls.make("fused", precision="tf32x3")[0]}
    modes = ("events", "graph") if args.graph else ("events",)
    names = list(made) + ["fused_tf32x3"]
    cols = [f"{n}:{m}" for n in names for m in modes]
    print(f"{'dir':6s} {'dtype':5s} {'S':>4s} {'R':>5s} {'C':>3s} {'floor':>7s} {'bound':>6s} "
          + " ".join(f"{c:>18s}" for c in cols) + "   (us)", flush=True)
    for direction, shapes in (("fwd", FWD_SHAPES), ("fwdbwd", FWDBWD_SHAPES)):
        for dtype, S, R, C in shapes:
            if budget.left() < 0:
                print("(budget spent)", flush=True)
                return
            v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
            floor = floors.msa_pwa_floor(direction, B, S, R, H, C, dtype)
            row = {}
            for name, fn in list(made.items()) + (list(extra.items()) if dtype == "fp32" else []):
                if name == "seed" and dtype != "fp32":
                    continue
                reps = args.reps if name != "seed" else max(5, args.reps // 10)
                for mode in modes:
                    try:
                        row[f"{name}:{mode}"] = bench_call(fn, v, b, g, dout, direction, reps, flusher,
                                                           restore_b=name == "seed", graph=mode == "graph") * 1e3
                    except Exception as exc:
                        print(f"  {name} ({mode}) failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            errs = {}
            if direction == "fwd":
                for name in ("fused", "torch", "fused_tf32x3"):
                    fn = made.get(name) or extra.get(name)
                    if fn is not None and f"{name}:events" in row:
                        errs[name] = error_vs_float64(fn, v, b, g)
            line = f"{direction:6s} {dtype:5s} {S:4d} {R:5d} {C:3d} {floor.seconds*1e6:7.1f} {floor.bound:>6s} "
            line += " ".join(f"{row[c]:18.1f}" if c in row else f"{'-':>18s}" for c in cols)
            print(line, flush=True)
            emit(out, {"section": "table", "direction": direction, "dtype": dtype, "B": B, "S": S, "R": R,
                       "H": H, "C": C, "floor_us": floor.seconds * 1e6, "floor_bound": floor.bound,
                       "median_us": row, "rel_err_vs_float64": errs, "reps": args.reps,
                       "timing": "events: CUDA events around each call; graph: replays of one call captured "
                                 "in a CUDA graph; L2 flushed before each; median"})
            del v, b, g, dout


def peak_fwdbwd(fn, dtype, S, R, C):
    """Peak bytes of one forward+backward: inputs, dout and what the implementation allocates."""
    torch.cuda.empty_cache()
    v, b, g, dout = inputs(dtype, S, R, C, grad=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    grads = torch.autograd.grad(fn(v, b, g, None), (v, b, g), dout)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del v, b, g, dout, grads
    return peak


def fits(fn, dtype, S, R, C):
    try:
        peak_fwdbwd(fn, dtype, S, R, C)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def memory(args, budget, out, dtype="bf16", S=128, C=8):
    fns = {"fused": impls.make("fused")[0], "torch": msa_pwa_reference}
    print(f"peak memory of fwd+bwd, {dtype}, S={S} H={H} C={C} (GiB)", flush=True)
    for R in (384, 768, 1536, 3072, 6144):
        peaks = {n: peak_fwdbwd(fn, dtype, S, R, C) / 2**30 for n, fn in fns.items()}
        print(f"  R={R:6d} " + "  ".join(f"{n} {p:7.3f}" for n, p in peaks.items()), flush=True)
        emit(out, {"section": "memory", "dtype": dtype, "S": S, "R": R, "H": H, "C": C, "peak_gib": peaks})
    share = budget.left() / len(fns)
    for name, fn in fns.items():  # the largest R (multiple of 128) that fits, by bisection
        mine = Budget(share)
        lo, hi = 128, 128
        while fits(fn, dtype, S, hi, C) and mine.left() > 0:
            lo, hi = hi, hi * 2
        while hi - lo > 128 and mine.left() > 0:
            mid = (lo + hi) // 2 // 128 * 128
            lo, hi = (mid, hi) if fits(fn, dtype, S, mid, C) else (lo, mid)
        exact = hi - lo <= 128
        print(f"  largest R that fits, {name}: {lo}" + ("" if exact else f" (at least; search stopped below {hi})"), flush=True)
        emit(out, {"section": "max_r", "impl": name, "dtype": dtype, "S": S, "H": H, "C": C, "max_r": lo, "exact": exact,
                   "gpu_total_gib": torch.cuda.get_device_properties(0).total_memory / 2**30})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impls", default="fused,torch,seed")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--no-table", action="store_true")
    ap.add_argument("--graph", action="store_true", help="also time the fused forward replayed from a CUDA graph")
    ap.add_argument("--out", default="")
    ap.add_argument("--budget-s", type=float, default=300)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    budget = Budget(args.budget_s)
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"TRITON_ALLOW_NON_CONSTEXPR_GLOBALS={os.environ.get('TRITON_ALLOW_NON_CONSTEXPR_GLOBALS')}", flush=True)
    flusher = timing.L2Flusher("cuda")
    if not args.no_table:
        table(args, flusher, budget, args.out)
    if args.memory:
        del flusher
        memory(args, budget, args.out)


if __name__ == "__main__":
    main()
