"""Registers the ``kernels`` plugin. Imports nothing heavy: torch and triton load in the worker.

The settings are the generic ones plus each kernel's own (registry.py); ``validate`` runs the
checks that can be decided before any worker starts.
"""
from __future__ import annotations

import importlib.util

from af3core import KERNEL, Availability, Plugin, hookimpl

import af3_kernels
from af3_kernels import registry


def _check() -> Availability:
    if importlib.util.find_spec("torch") is None:
        return Availability.no("torch is not installed", "pip install torch triton")
    if importlib.util.find_spec("triton") is None:
        # torch/compile references still run; the Triton implementations report a CaseError.
        return Availability.yes(source_version=f"af3-kernels {af3_kernels.__version__} (no triton)")
    return Availability.yes(source_version=f"af3-kernels {af3_kernels.__version__}")


@hookimpl
def register_plugins(register):
    register(Plugin(
        name="kernels",
        kind=KERNEL,
        runner="af3_kernels.runner:KernelRunner",
        description="Fused GPU kernels against their PyTorch references (--set kernel=; --seq-len is the "
                    "kernel's size; the mode is the direction)",
        modes=registry.DIRECTIONS,
        default_mode="fwd",
        # On a CPU the Triton kernels run in Triton's interpreter (minutes at S=128, R=64), so the
        # quick CPU default is a smoke run of a small shape (seconds), not a performance figure.
        default_seq_lens={"cpu": (32,), "cuda": (384,)},
        presets={"cpu-smoke": {"S": 4, "rows": 4, "reps": 1}},
        default_preset={"cpu": "cpu-smoke"},
        default_passes=3,
        settings=registry.plugin_settings(),
        validate=registry.validate,
        devices=("cpu", "cuda"),
        check=_check,
        libraries=("triton",),
    ))
