"""Launch-configuration sweep of the fused Transition on a CUDA GPU (not for the interpreter).

    python -m af3_kernels.transition.tune                      # N = 768 pair rows, c = 128, fp32/TF32 and bf16
    python -m af3_kernels.transition.tune --N 384 --dtype bf16

Rows are the N*N positions of a pair tensor; n = 4 (AF3). Each configuration (BLOCK_M, BLOCK_H,
num_stages, num_warps, weight layout; function.launch_config) runs through AF3_TRANSITION_CONFIG,
timed by CUDA events (median of --reps calls after one warm call), beside the eager reference and
the current default; its max error relative to the reference's largest value is printed with it. A
configuration that fails to compile or launch is skipped. The fastest comes last.
"""
from __future__ import annotations

import argparse
import itertools
import os

import torch

from af3_kernels.transition.function import transition
from af3_kernels.transition.reference import TransitionParams, transition_reference

GRID = {
    "fp32": dict(BLOCK_M=(64, 128), BLOCK_H=(16, 32), num_stages=(1, 2), num_warps=(4, 8), layout=("t", "module")),
    "bf16": dict(BLOCK_M=(64, 128), BLOCK_H=(32, 64), num_stages=(2, 3), num_warps=(4, 8), layout=("t", "module")),
}


def median_ms(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[reps // 2]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--N", type=int, default=768, help="pair tensor side: N*N rows")
    p.add_argument("--c", type=int, default=128)
    p.add_argument("--dtype", choices=("fp32", "bf16", "both"), default="both")
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True  # the eager reference at TF32, as the kernel's fp32
    x = torch.randn(1, a.N, a.N, a.c, device="cuda")
    params = TransitionParams.random(a.c, 4, device="cuda")
    for name in (("fp32", "bf16") if a.dtype == "both" else (a.dtype,)):
        precision = "tf32" if name == "fp32" else "ieee"
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=name == "bf16")
        results = []
        with torch.no_grad(), autocast:
            ref = transition_reference(x, params).float()
            scale = ref.abs().max().item()
            os.environ.pop("AF3_TRANSITION_CONFIG", None)
            print(f"{name} N={a.N} c={a.c}: eager {median_ms(lambda: transition_reference(x, params), a.reps):.3f} ms, "
                  f"default {median_ms(lambda: transition(x, params, precision), a.reps):.3f} ms", flush=True)
            for values in itertools.product(*GRID[name].values()):
                os.environ["AF3_TRANSITION_CONFIG"] = ",".join(map(str, values))
                try:
                    ms = median_ms(lambda: transition(x, params, precision), a.reps)
                    err = (transition(x, params, precision).float() - ref).abs().max().item() / scale
                except Exception as exc:  # noqa: BLE001 - shared memory, registers: skip it
                    print(f"  {os.environ['AF3_TRANSITION_CONFIG']:20s} failed: {str(exc).splitlines()[0][:100]}")
                    continue
                results.append((ms, os.environ["AF3_TRANSITION_CONFIG"], err))
            os.environ.pop("AF3_TRANSITION_CONFIG", None)
        for ms, cfg, err in sorted(results, reverse=True):
            print(f"  {cfg:20s} {ms:8.3f} ms  max error {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
