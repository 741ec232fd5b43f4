"""2-simplicial attention as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton). ``--seq-len`` is n, the sequence length; q, k1, k2, v1, v2 and the
output are [B, n, H, d]. The variant is ``simplicial_variant``, not the shared ``variant`` setting:
that one's choices are fixed in kernel.py (KERNEL_VARIANTS) for evo_attn and tri_mul.
``heads``, ``head_dim`` (evo_attn's), ``B`` and ``precision`` are shared declarations.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from af3core import Setting

from af3_kernels.evo_attn.spec import SETTINGS as EVO_SETTINGS
from af3_kernels.kernel import KernelSpec, gemm_precision
from af3_kernels.simplicial.limits import MAX_HEAD_DIM, VARIANTS

#: the anchor from another package: PyPI simplicial-attention (lucidrains), whose Triton forward is
#: Roy et al.'s appendix-B kernel. Its limits: CUDA, bf16 (it stores bf16), head_dim <= 64 (its
#: autotune config fixes HEAD_DIM = 64 and wider heads are silently truncated), windowed (causal).
ANCHOR = "lucidrains"
ANCHOR_MODULE = "simplicial_attention.triton_two_simplicial_attention"
ANCHOR_FIX = "pip install simplicial-attention==0.1.6 einops opt-einsum"

SETTINGS = {
    "simplicial_variant": Setting("windowed", "simplicial: windowed (Roy et al. 2025, causal: j in (i-w1, i], "
                                              "k in (i-w2, i]) or full (every pair (j, k): O(n^3), small n)",
                                  choices=VARIANTS),
    "w1": Setting(512, "simplicial: window of the first key/value pair (k1, v1): j in (i-w1, i] (Roy et al.: 512)"),
    "w2": Setting(32, "simplicial: window of the second key/value pair (k2, v2): k in (i-w2, i] (Roy et al.: 32)"),
    "heads": EVO_SETTINGS["heads"],  # shared with evo_attn: H (default 4)
    "head_dim": EVO_SETTINGS["head_dim"],  # shared with evo_attn: d (default 32)
    "B": EVO_SETTINGS["B"],
    "precision": EVO_SETTINGS["precision"],  # simplicial takes auto / ieee / tf32 (refuses the split ones)
}


def anchor_missing() -> str | None:
    """The pip command that installs the anchor when its module cannot be found, else None."""
    try:
        found = importlib.util.find_spec(ANCHOR_MODULE) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else ANCHOR_FIX


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    _, problem = gemm_precision("simplicial", settings.get("precision", "auto"))
    if problem:
        problems.append(problem)
    small = [k for k in ("heads", "head_dim", "w1", "w2", "B") if int(settings.get(k, 1)) < 1]
    if small:
        problems.append(f"{', '.join(small)} must be at least 1")
    d = int(settings.get("head_dim", 32))
    if d > MAX_HEAD_DIM:
        problems.append(f"head_dim must be at most {MAX_HEAD_DIM} for simplicial")
    if settings.get("variant", "auto") != "auto":
        problems.append("simplicial takes its variant as --set simplicial_variant=windowed|full, not variant=")
    variant = settings.get("simplicial_variant", "windowed")
    if variant not in VARIANTS:
        problems.append(f"simplicial_variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if settings.get("impl") == ANCHOR:
        if device_type != "cuda":
            problems.append(f"impl={ANCHOR} (PyPI simplicial-attention's Triton kernel) needs a CUDA GPU")
        if settings.get("dtype") != "bf16":
            problems.append(f"impl={ANCHOR} computes and stores bf16 only: use --set dtype=bf16")
        if d > 64:
            problems.append(f"impl={ANCHOR} handles head_dim <= 64 (its kernel fixes HEAD_DIM = 64), not {d}")
        if variant != "windowed":
            problems.append(f"impl={ANCHOR} implements the windowed variant only")
        fix = anchor_missing()
        if fix is not None:
            problems.append(f"impl={ANCHOR}: its package is not installed; fix: {fix}")
    return problems


SPEC = KernelSpec(
    name="simplicial",
    description="2-simplicial attention (Roy et al. 2025), windowed or full (--set simplicial_variant=), "
                "[B, n, H, d]; --seq-len is n",
    case="af3_kernels.simplicial.case:SimplicialCase",
    impls={"fused": "this package's Triton kernels (online softmax over the (j, k) pairs; backward with atomics)",
           "torch": "eager reference", "compile": "torch.compile of the reference",
           ANCHOR: "PyPI simplicial-attention 0.1.6's Triton forward (Roy et al.'s kernel; CUDA, bf16, "
                   "head_dim <= 64, windowed)"},
    dtypes=("bf16", "fp32"),
    triton_impls=("fused",),
    settings=SETTINGS,
    validate=validate,
)
