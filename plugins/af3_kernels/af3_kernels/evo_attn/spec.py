"""Evoformer attention as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton): the plugin imports this when it registers. The case itself is case.py.
Settings live in one flat namespace with msa_pwa's: ``B``, ``mask`` and ``precision`` are declared
exactly as msa_pwa declares them (same meaning, same defaults); the names whose defaults differ
from msa_pwa's ``S``/``H``/``C`` are this kernel's own (``rows``, ``heads``, ``head_dim``).
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from af3core import Setting

from af3_kernels.kernel import KERNEL_VARIANTS, VARIANT, KernelSpec, resolve_variant, variant_problem

VARIANTS = KERNEL_VARIANTS["evo_attn"]
TRIANGLE = ("tri_start", "tri_end")
PRECISIONS = ("ieee", "bf16x6", "bf16x3", "tf32x3", "tf32")

#: the anchors from other packages: the modules they need and the pip command that brings them
ANCHOR_PACKAGES = {
    "trifast": (("trifast",), "pip install trifast"),
    "cueq": (("cuequivariance_torch", "cuequivariance_ops_torch"),
             "pip install cuequivariance-torch cuequivariance-ops-torch-cu13"),
}

SETTINGS = {
    "variant": VARIANT,  # shared with tri_mul (kernel.py): tri_start / tri_end / msa_row / msa_col / single
    "heads": Setting(4, "evo_attn: heads H (AF3 triangle attention: 4)"),
    "head_dim": Setting(32, "evo_attn: channels per head D (AF3 triangle attention: 32)"),
    "rows": Setting(512, "evo_attn: MSA rows S for msa_row / msa_col (AlphaFold 2's Evoformer: 512 MSA clusters; "
                         "--seq-len is N)"),
    "gate": Setting(False, "evo_attn: multiply the output by sigmoid(g), g shaped like q (AF3's gated attention)"),
    "bias_scale": Setting(1.0, "evo_attn: standard deviation of the random bias (large values: peaked softmax)"),
    # shared with msa_pwa: the same declarations
    "B": Setting(1, "batch"),
    "mask": Setting(False, "apply a random pair mask (80% kept)"),
    "precision": Setting("auto", "fp32 dots: ieee (FMA, exact), bf16x6 (operands split into three bf16 parts, "
                                 "six tensor-core products: fp32-class error), bf16x3, tf32x3 (3 TF32 passes) "
                                 "or tf32; auto: bf16x6 on a Hopper GPU (compute capability 9.x), ieee "
                                 "elsewhere; for torch/compile, tf32x3 and tf32 enable TF32 matmuls, the "
                                 "others run exact fp32", choices=("auto", *PRECISIONS)),
}


def anchor_missing(impl: str) -> str | None:
    """The pip command that installs an anchor implementation whose package is missing, else None."""
    if impl not in ANCHOR_PACKAGES:
        return None
    modules, fix = ANCHOR_PACKAGES[impl]
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return None
    return fix


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    small = [k for k in ("heads", "head_dim", "rows", "B") if int(settings.get(k, 1)) < 1]
    if small:
        problems.append(f"{', '.join(small)} must be at least 1")
    if int(settings.get("head_dim", 32)) > 256:
        problems.append("head_dim must be at most 256")
    problem = variant_problem("evo_attn", settings.get("variant", "auto"))
    if problem:
        problems.append(problem)
    variant = resolve_variant("evo_attn", settings.get("variant", "auto"))
    impl = settings.get("impl")
    if impl in ANCHOR_PACKAGES:
        if variant not in TRIANGLE:
            problems.append(f"impl={impl} implements triangle attention only (variant tri_start or tri_end), "
                            f"not {variant}")
        if device_type != "cuda":
            problems.append(f"impl={impl} needs a CUDA GPU")
        fix = anchor_missing(impl)
        if fix is not None:
            problems.append(f"impl={impl}: its package is not installed; fix: {fix}")
    if impl == "trifast" and int(settings.get("head_dim", 32)) & (int(settings.get("head_dim", 32)) - 1):
        problems.append("impl=trifast needs a power-of-two head_dim")
    return problems


SPEC = KernelSpec(
    name="evo_attn",
    description="Evoformer attention (triangle, MSA row/column, single; --set variant=); --seq-len is N",
    case="af3_kernels.evo_attn.case:EvoAttnCase",
    impls={"fused": "this package's Triton kernel", "torch": "eager reference",
           "compile": "torch.compile of the reference",
           "sdpa": "torch.nn.functional.scaled_dot_product_attention, bias (+ mask) as attn_mask",
           "trifast": "PyPI trifast's Triton kernel (triangle variants, CUDA)",
           "cueq": "NVIDIA cuEquivariance's cuequivariance_torch.triangle_attention (triangle variants, CUDA)"},
    triton_impls=("fused",),
    settings=SETTINGS,
    validate=validate,
)
