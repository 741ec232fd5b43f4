"""Registers the ``kernels`` plugin. Imports nothing heavy: torch and triton load in the worker."""
from __future__ import annotations

import importlib.util

from af3core import KERNEL, Availability, Plugin, Setting, hookimpl

import af3_kernels


def _check() -> Availability:
    if importlib.util.find_spec("torch") is None:
        return Availability.no("torch is not installed", "pip install torch triton")
    if importlib.util.find_spec("triton") is None:
        # torch/compile references still run; fused and seed report a CaseError.
        return Availability.yes(source_version=f"af3-kernels {af3_kernels.__version__} (no triton)")
    return Availability.yes(source_version=f"af3-kernels {af3_kernels.__version__}")


SETTINGS = {
    "kernel": Setting("msa_pwa", "which kernel: msa_pwa = MSA pair-weighted averaging (AF3 Alg. 10)",
                      choices=("msa_pwa",)),
    "impl": Setting("fused", "fused (this Triton kernel), torch (eager reference), compile "
                             "(torch.compile of it), seed (Ligo's Triton kernel, fp32, CUDA)",
                    choices=("fused", "torch", "compile", "seed")),
    "dtype": Setting("bf16", "element type of v, g, bias and out", choices=("bf16", "fp32", "fp16")),
    "S": Setting(128, "MSA rows (sequences)"),
    "H": Setting(8, "heads"),
    "C": Setting(8, "channels per head"),
    "B": Setting(1, "batch"),
    "mask": Setting(False, "apply a random pair mask (80% kept)"),
    "precision": Setting("ieee", "fp32 dots: ieee (FMA, exact), bf16x6 (operands split into three "
                                 "bf16 parts, six tensor-core products: fp32-class error), bf16x3, "
                                 "tf32x3 (3 TF32 passes) or tf32; for torch/compile, tf32x3 and tf32 "
                                 "enable TF32 matmuls, the others run exact fp32",
                         choices=("ieee", "bf16x6", "bf16x3", "tf32x3", "tf32")),
    "p_mode": Setting("auto", "fused only: keep the softmax P in memory between kernels (stored), "
                              "rebuild it in registers (recompute, least memory), or stored while small (auto)",
                      choices=("auto", "stored", "recompute")),
    "reps": Setting(100, "timed repetitions per pass (median reported); at most 3 on CPU"),
    "timing": Setting("events", "events: CUDA events around each Python call (launch costs included); "
                                "graph: replays of one call captured in a CUDA graph (GPU time only; "
                                "fwd and fwdbwd, CUDA only)", choices=("events", "graph")),
    "flush": Setting(True, "flush the L2 cache before each repetition (untimed)"),
    "check": Setting(True, "record the forward's max abs error against float64 on a slice of rows"),
}


@hookimpl
def register_plugins(register):
    register(Plugin(
        name="kernels",
        kind=KERNEL,
        runner="af3_kernels.runner:KernelRunner",
        description="Fused GPU kernels against their PyTorch references (--seq-len is R; the mode is the direction)",
        modes=("fwd", "bwd", "fwdbwd"),
        default_mode="fwd",
        # On a CPU the Triton kernels run in Triton's interpreter (minutes at S=128, R=64), so the
        # quick CPU default is a smoke run of a small shape (seconds), not a performance figure.
        default_seq_lens={"cpu": (32,), "cuda": (384,)},
        presets={"cpu-smoke": {"S": 4, "reps": 1}},
        default_preset={"cpu": "cpu-smoke"},
        default_passes=3,
        settings=SETTINGS,
        devices=("cpu", "cuda"),
        check=_check,
    ))
