"""Side-by-side benchmark of MSA pair-weighted averaging on one GPU: floor, fused, eager,
torch.compile and Ligo's seed kernel, for the shapes of the kernel issue (B=1, H=8).

    python plugins/af3_kernels/bench/bench_msa_pwa.py [--tune] [--memory] [--impls fused,torch,seed]
        [--reps 100] [--out results.jsonl] [--budget-s 300]

Timing: CUDA events around each call only, L2 flushed before each repetition, median of --reps.
--tune times a handful of block configurations of the fused kernels and applies the fastest.
--graph also times the fused forward from a CUDA graph (GPU time without Python launch costs).
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

FWD_CONFIGS = {
    "bf16": [dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=128, num_warps=4, num_stages=3),
             dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=128, num_warps=8, num_stages=3),
             dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=256, num_warps=8, num_stages=3),
             dict(BLOCK_I=128, BLOCK_J=32, BLOCK_N=256, num_warps=8, num_stages=2),
             dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3),
             dict(BLOCK_I=64, BLOCK_J=32, BLOCK_N=64, num_warps=4, num_stages=4)],
    "fp32": [dict(BLOCK_I=64, BLOCK_J=32, BLOCK_N=64, num_warps=4, num_stages=2),
             dict(BLOCK_I=64, BLOCK_J=32, BLOCK_N=128, num_warps=8, num_stages=2),
             dict(BLOCK_I=128, BLOCK_J=32, BLOCK_N=64, num_warps=8, num_stages=2),
             dict(BLOCK_I=32, BLOCK_J=32, BLOCK_N=128, num_warps=4, num_stages=2),
             dict(BLOCK_I=64, BLOCK_J=16, BLOCK_N=64, num_warps=4, num_stages=3)],
}
BWD_CONFIGS = {
    "dv": [dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=128, num_warps=4, num_stages=3),
           dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=2),
           dict(BLOCK_I=64, BLOCK_J=128, BLOCK_N=64, num_warps=8, num_stages=2)],
    "dbias": [dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3),
              dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=2),
              dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=32, num_warps=8, num_stages=2)],
}


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


def bench_call(fn, v, b, g, dout, direction, reps, flusher, restore_b=False):
    """Median ms of fn in ``direction`` (fwd without autograd; fwdbwd = forward plus all grads)."""
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

    before()
    call()
    torch.cuda.synchronize()
    times = timing.time_cuda(call, reps, before=before if restore_b else None, flush=flusher)
    return timing.median(times)


def bench_graph_fwd(fn, v, b, g, reps, flusher):
    """Median ms of the forward replayed from a CUDA graph: GPU time without Python launch costs.

    The difference to bench_call's figure is what the Python side (autograd Function, allocation,
    Triton's launcher) adds when the GPU would otherwise wait for it."""
    def call():
        with torch.no_grad():
            return fn(v, b, g, None)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (compilation) outside the capture
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    graph.replay()
    torch.cuda.synchronize()
    return timing.median(timing.time_cuda(graph.replay, reps, flush=flusher))


def error_vs_float64(fn, v, b, g):
    with torch.no_grad():
        ref = msa_pwa_reference(v.double(), b.double(), g.double())
        return (fn(v, b, g, None).double() - ref).abs().max().item() / ref.abs().max().item()


def tune(args, flusher, budget, out):
    best = {}
    for dtype, S, R, C in FWD_SHAPES:
        if budget.left() < 0:
            break
        v, b, g, _ = inputs(dtype, S, R, C)
        results = []
        for p_mode in args.tune_p_modes.split(","):
            for cfg in FWD_CONFIGS[dtype]:
                msa_pwa.CONFIG_OVERRIDES["fwd"] = cfg
                fn, _ = impls.make("fused", p_mode=p_mode)
                try:
                    ms = bench_call(fn, v, b, g, None, "fwd", args.reps, flusher)
                except Exception as exc:  # a config that does not fit (shared memory) is skipped
                    print(f"  tune {dtype} {S},{R},{C} {p_mode} {cfg}: {type(exc).__name__}", flush=True)
                    continue
                results.append((ms, p_mode, cfg))
                emit(out, {"section": "tune_fwd", "dtype": dtype, "S": S, "R": R, "C": C,
                           "p_mode": p_mode, "config": cfg, "ms": ms})
        msa_pwa.CONFIG_OVERRIDES.pop("fwd", None)
        results.sort(key=lambda r: r[0])
        for ms, p_mode, cfg in results[:3]:
            print(f"tune fwd {dtype} S={S} R={R} C={C}: {ms*1e3:8.1f} us {p_mode:9s} {cfg}", flush=True)
        best[(dtype, S, R, C)] = results[0] if results else None
    for dtype, S, R, C in FWDBWD_SHAPES[:3]:
        if budget.left() < 0:
            break
        v, b, g, dout = inputs(dtype, S, R, C, grad=True)
        for kernel, cfgs in BWD_CONFIGS.items():
            res = []
            for cfg in cfgs:
                msa_pwa.CONFIG_OVERRIDES[kernel] = cfg
                fn, _ = impls.make("fused", p_mode="auto")
                try:
                    ms = bench_call(fn, v, b, g, dout, "fwdbwd", args.reps, flusher)
                except Exception as exc:
                    print(f"  tune {kernel} {cfg}: {type(exc).__name__}", flush=True)
                    continue
                res.append((ms, cfg))
                emit(out, {"section": "tune_bwd", "kernel": kernel, "dtype": dtype, "S": S, "R": R, "C": C,
                           "config": cfg, "fwdbwd_ms": ms})
            msa_pwa.CONFIG_OVERRIDES.pop(kernel, None)
            res.sort(key=lambda r: r[0])
            for ms, cfg in res[:2]:
                print(f"tune fwdbwd via {kernel} {dtype} S={S} R={R} C={C}: {ms*1e3:8.1f} us {cfg}", flush=True)
    return best


def table(args, flusher, budget, out):
    wanted = args.impls.split(",")
    made = {}
    for impl in wanted:
        try:
            made[impl] = impls.make(impl, precision="ieee")[0]
        except Exception as exc:
            print(f"{impl}: unavailable ({exc})", flush=True)
    extra = {"fused_tf32x3": impls.make("fused", precision="tf32x3")[0]}
    header = f"{'dir':6s} {'dtype':5s} {'S':>4s} {'R':>5s} {'C':>3s} {'floor us':>9s} {'bound':>6s}"
    header += "".join(f" {name + ' us':>12s}" for name in made) + f" {'fused/floor':>11s} {'torch/fused':>11s}"
    print(header, flush=True)
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
                try:
                    row[name] = bench_call(fn, v, b, g, dout, direction, reps, flusher,
                                           restore_b=name == "seed") * 1e3
                except Exception as exc:
                    print(f"  {name} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            if args.graph and direction == "fwd" and "fused" in made:
                try:
                    row["fused_graph"] = bench_graph_fwd(made["fused"], v, b, g, args.reps, flusher) * 1e3
                except Exception as exc:
                    print(f"  fused (CUDA graph) failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            errs = {}
            if direction == "fwd":
                for name in ("fused", "torch", "fused_tf32x3"):
                    fn = made.get(name) or extra.get(name)
                    if fn is not None and name in row:
                        errs[name] = error_vs_float64(fn, v, b, g)
            line = f"{direction:6s} {dtype:5s} {S:4d} {R:5d} {C:3d} {floor.seconds*1e6:9.1f} {floor.bound:>6s}"
            line += "".join(f" {row[n]:12.1f}" if n in row else f" {'-':>12s}" for n in made)
            if "fused" in row:
                line += f" {row['fused'] / (floor.seconds * 1e6):11.2f}"
                line += f" {row['torch'] / row['fused']:11.2f}" if "torch" in row else ""
            if "fused_graph" in row:
                line += f"  (fused from a CUDA graph {row['fused_graph']:.1f} us)"
            if "fused_tf32x3" in row:
                line += f"  (fused tf32x3 {row['fused_tf32x3']:.1f} us)"
            print(line, flush=True)
            emit(out, {"section": "table", "direction": direction, "dtype": dtype, "B": B, "S": S, "R": R,
                       "H": H, "C": C, "floor_us": floor.seconds * 1e6, "floor_bound": floor.bound,
                       "median_us": row, "rel_err_vs_float64": errs, "reps": args.reps,
                       "timing": "CUDA events per call, L2 flushed before each, median"})
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
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--tune-p-modes", default="stored,recompute")
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
    if args.tune:
        tune(args, flusher, budget, args.out)
    if not args.no_table:
        table(args, flusher, budget, args.out)
    if args.memory:
        del flusher
        memory(args, budget, args.out)


if __name__ == "__main__":
    main()
