"""The Transition as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton). ``--seq-len`` is N: the rows are the N*N positions of a pair tensor
[B, N, N, c] (c = pair_dim, shared with tri_mul), the hidden width ``expansion`` * c.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

from af3_kernels.kernel import KernelSpec, cuda_only_problem, gemm_precision
from af3_kernels.transition.limits import MAX_C
from af3_kernels.tri_mul.spec import SETTINGS as TRI_MUL_SETTINGS

SETTINGS = {
    "pair_dim": TRI_MUL_SETTINGS["pair_dim"],
    "expansion": Setting(4, "transition: hidden width n*c (AF3: n = 4 in the Pairformer, 2 in the diffusion "
                            "conditioning)"),
    "B": TRI_MUL_SETTINGS["B"],
    "precision": TRI_MUL_SETTINGS["precision"],
}


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    _, problem = gemm_precision("transition", settings.get("precision", "auto"))
    if problem:
        problems.append(problem)
    c = int(settings.get("pair_dim", 128))
    if not 1 <= c <= MAX_C:
        problems.append(f"pair_dim must be between 1 and {MAX_C} for the transition")
    if int(settings.get("expansion", 4)) < 1 or int(settings.get("B", 1)) < 1:
        problems.append("expansion and B must be at least 1")
    problem = cuda_only_problem(settings, device_type)
    if problem:
        problems.append(problem)
    return problems


SPEC = KernelSpec(
    name="transition",
    description="AF3 Transition (LayerNorm, SwiGLU to n*c, back to c) over an [N, N, c] pair tensor; --seq-len is N",
    case="af3_kernels.transition.case:TransitionCase",
    impls={"fused": "this package's Triton kernels (the n*c activation never reaches memory, forward or "
                    "backward)",
           "torch": "eager reference", "compile": "torch.compile of the reference",
           "liger": "Liger-Kernel's fused LayerNorm and SwiGLU (liger-kernel 0.8.5) around torch's linears; CUDA only"},
    triton_impls=("fused", "liger"),
    settings=SETTINGS,
    validate=validate,
)
