"""Block-size sweep of the all-heads forward (ops/msa_pwa_heads.py) on one GPU, beside ``fused``.

    python plugins/af3_kernels/bench/tune_msa_pwa_heads.py [--reps 100] [--out tune_heads.jsonl]

For each shape of the kernel issue (B=1, H=8) and each configuration, the median of CUDA-event
timings around one call (events) and of CUDA-graph replays (graph), L2 flushed before each; the
error against float64 is checked for every configuration, so a fast but wrong one shows.
"""
from __future__ import annotations

import argparse
import json

import torch

from af3_kernels import floors, timing
from af3_kernels.ops import msa_pwa_heads
from af3_kernels.ops.msa_pwa import msa_pair_weighted_averaging
from af3_kernels.ops.msa_pwa_heads import msa_pair_weighted_averaging_heads
from af3_kernels.reference import msa_pwa_reference

SHAPES = [("bf16", 128, 384, 8), ("bf16", 128, 384, 32), ("bf16", 128, 768, 32), ("bf16", 512, 768, 8),
          ("bf16", 128, 768, 8), ("bf16", 128, 1536, 8), ("fp32", 128, 384, 8)]
CONFIGS = [None] + [dict(BLOCK_I=i, BLOCK_J=j, BLOCK_N=n, num_warps=w, num_stages=st) for i, j, n, w, st in (
    (32, 32, 64, 8, 2), (64, 32, 64, 8, 2), (32, 32, 128, 8, 2), (16, 32, 128, 4, 2), (64, 16, 32, 4, 3),
    (32, 64, 64, 8, 2), (16, 64, 64, 4, 3), (64, 32, 128, 8, 2), (128, 16, 32, 8, 2), (32, 16, 64, 4, 3))]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    flush = timing.L2Flusher("cuda")
    for dtype, S, R, C in SHAPES:
        gen = torch.Generator("cuda").manual_seed(0)
        kw = dict(device="cuda", dtype=DTYPES[dtype], generator=gen)
        v, g, b = (torch.randn(shape, **kw) for shape in ((1, S, R, 8, C), (1, S, R, 8, C), (1, R, R, 8)))
        ref = msa_pwa_reference(v.double(), b.double(), g.double())
        floor_us = floors.msa_pwa_floor("fwd", 1, S, R, 8, C, dtype).seconds * 1e6
        fns = [("fused", None, msa_pair_weighted_averaging)] + [("fused_heads", c, msa_pair_weighted_averaging_heads)
                                                                for c in CONFIGS]
        for name, cfg, fn in fns:
            msa_pwa_heads.CONFIG_OVERRIDES.clear()
            msa_pwa_heads.CONFIG_OVERRIDES.update(cfg or {})

            def call():
                with torch.no_grad():
                    return fn(v, b, g)
            try:
                rel = ((call().double() - ref).abs().max() / ref.abs().max()).item()
                call()
                torch.cuda.synchronize()
                ev = timing.median(timing.time_cuda(call, args.reps, flush=flush)) * 1e3
                gr = timing.median(timing.time_cuda_graph(call, args.reps, flush=flush)) * 1e3
            except Exception as exc:  # a configuration that does not compile or fit is reported, skipped
                print(f"{dtype} S={S} R={R} C={C} {name} {cfg}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            print(f"{dtype} S={S:4d} R={R:5d} C={C:3d} floor {floor_us:6.1f} us  {name:11s} events {ev:8.1f} us"
                  f"  graph {gr:8.1f} us  rel_err {rel:.1e}  {cfg or 'default'}", flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({"dtype": dtype, "S": S, "R": R, "C": C, "H": 8, "impl": name,
                                        "config": cfg, "events_us": ev, "graph_us": gr, "rel_err": rel,
                                        "floor_us": floor_us, "gpu": torch.cuda.get_device_name(0)}) + "\n")
        msa_pwa_heads.CONFIG_OVERRIDES.clear()
        del v, g, b, ref


if __name__ == "__main__":
    main()
