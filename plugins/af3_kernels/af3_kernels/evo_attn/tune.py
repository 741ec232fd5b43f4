"""Configuration sweep of the fused Evoformer attention on a CUDA GPU (not for the interpreter).

    python -m af3_kernels.evo_attn.tune --part fwd            # forward block sizes, ROWS, warps, poly exps
    python -m af3_kernels.evo_attn.tune --part dkdv --N 768   # one backward kernel's configurations
    python -m af3_kernels.evo_attn.tune --part dq --variant msa_row --S 512

Each configuration is an EvoAttnOptions override of one kernel (launch.config's defaults for the
others); times are medians of CUDA-graph replays with the L2 flushed before each (timing.py), in
microseconds, beside the floor of the direction (case.evo_attn_floor at the GPU's rates). The
backward parts time forward+backward (the forward at its default) and the forward alone, and
report their difference. A configuration that fails to compile or launch (shared memory, registers)
is listed with its error. The defaults come first, so every line reads against them.
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch

from af3_kernels import floors, timing
from af3_kernels.evo_attn.case import evo_attn_floor, shape_of
from af3_kernels.evo_attn.function import evo_attention
from af3_kernels.evo_attn.launch import config
from af3_kernels.evo_attn.options import EvoAttnOptions

SWEEPS = {
    "fwd": dict(BLOCK_M=(64, 128), BLOCK_N=(32, 64, 128), ROWS=(1, 2, 4), num_warps=(4, 8), num_stages=(2, 3)),
    "dkdv": dict(BLOCK_M=(16, 32, 64), BLOCK_N=(64, 128), ROWS=(1, 2, 4), num_warps=(4, 8), num_stages=(2, 3)),
    "dq": dict(BLOCK_M=(64, 128), BLOCK_N=(16, 32, 64), ROWS=(1, 2, 4), num_warps=(4, 8), num_stages=(2, 3)),
}


def inputs(variant, B, N, S, H, D, dtype, mask, gate):
    shape = {"tri_start": (B, N, N, H, D), "tri_end": (B, N, N, H, D), "msa_row": (B, S, N, H, D),
             "msa_col": (B, S, N, H, D), "single": (B, N, H, D)}[variant]
    R, L = shape_of(variant, B, N, S)
    kw = dict(device="cuda", dtype=dtype)
    q, k, v = (torch.randn(shape, **kw).requires_grad_() for _ in range(3))
    bias = None if variant == "msa_col" else torch.randn((B, H, L, L), **kw).requires_grad_()
    m = (torch.rand(shape[:-2], device="cuda") < 0.8) if mask else None
    g = torch.randn(shape, **kw).requires_grad_() if gate else None
    return (q, k, v, bias, m, g), torch.randn(shape, **kw), R, L


def time_us(fn, reps, flusher):
    return timing.median(timing.time_cuda_graph(fn, reps, flush=flusher)) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=tuple(SWEEPS), default="fwd")
    p.add_argument("--variant", default="tri_start")
    p.add_argument("--N", type=int, default=384)
    p.add_argument("--S", type=int, default=512)
    p.add_argument("--B", type=int, default=1)
    p.add_argument("--H", type=int, default=4)
    p.add_argument("--D", type=int, default=32)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    p.add_argument("--precision", default="ieee", help="fp32 dots: ieee, tf32 (an engine under torch's \"high\"), ...")
    p.add_argument("--mask", action="store_true")
    p.add_argument("--gate", action="store_true")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--configs", help="a JSON list of partial configurations instead of the full sweep")
    p.add_argument("--poly", default="0", help="forward: comma-separated poly_exp_rows values to try")
    a = p.parse_args(argv)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    args, dout, R, L = inputs(a.variant, a.B, a.N, a.S, a.H, a.D, dtype, a.mask, a.gate)
    rates = floors.rates_for_gpu(torch.cuda.get_device_name()) or floors.H100_SXM
    direction = "fwd" if a.part == "fwd" else "fwdbwd"
    fl = evo_attn_floor(direction, a.B, R, L, a.H, a.D, a.dtype, a.precision, args[3] is not None, a.mask, a.gate, rates)
    flusher = timing.L2Flusher(torch.device("cuda"))
    print(json.dumps({"variant": a.variant, "B": a.B, "R": R, "L": L, "H": a.H, "D": a.D, "dtype": a.dtype,
                      "floor_us": round(fl.seconds * 1e6, 1), "floor_bound": fl.bound, "rates": rates.gpu}))
    default = config(a.part, dtype, a.D, a.precision)
    if a.configs:
        configs = [dict(default, **c) for c in json.loads(a.configs)]
    else:
        keys = list(SWEEPS[a.part])
        configs = [default] + [dict(zip(keys, vals)) for vals in itertools.product(*SWEEPS[a.part].values())]
    polys = [int(x) for x in a.poly.split(",")] if a.part == "fwd" else [0]
    base_fwd = None
    if a.part != "fwd":
        def fwd_only():
            with torch.no_grad():
                evo_attention(*args, variant=a.variant, precision=a.precision)
        base_fwd = time_us(fwd_only, a.reps, flusher)
    for cfg, poly in itertools.product(configs, polys):
        opts = EvoAttnOptions(config_overrides={a.part: cfg}, poly_exp_rows=poly)
        if a.part == "fwd":
            def call():
                with torch.no_grad():
                    evo_attention(*args, variant=a.variant, precision=a.precision, options=opts)
        else:
            wrt = [x for x in (args[0], args[1], args[2], args[3], args[5]) if x is not None]

            def call():
                out = evo_attention(*args, variant=a.variant, precision=a.precision, options=opts)
                torch.autograd.grad(out, wrt, dout)
        try:
            us = time_us(call, a.reps, flusher)
        except Exception as exc:  # noqa: BLE001 - report and go on (out of resources, compile errors)
            print(json.dumps({"config": cfg, "poly": poly, "error": str(exc).splitlines()[0][:200]}), flush=True)
            continue
        row = {"config": cfg, "poly": poly, "us": round(us, 1), "floor_fraction": round(fl.seconds * 1e6 / us, 3)}
        if base_fwd is not None:
            row["bwd_us"] = round(us - base_fwd, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
