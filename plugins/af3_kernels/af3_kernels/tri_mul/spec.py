"""The triangle multiplicative update as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton). ``--seq-len`` is N; the pair tensor is [B, N, N, pair_dim], the hidden
width ``tri_hidden`` (AF3: 128 and 128). ``variant`` (outgoing / incoming) and ``B``, ``mask``,
``precision`` are declared as the other kernels declare them (one flat namespace).
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

from af3_kernels.evo_attn.spec import SETTINGS as EVO_SETTINGS
from af3_kernels.kernel import VARIANT, KernelSpec, cuda_only_problem, gemm_precision, variant_problem

SETTINGS = {
    "variant": VARIANT,
    "pair_dim": Setting(128, "tri_mul, transition: pair channels c (AF3: 128)"),
    "tri_hidden": Setting(128, "tri_mul: hidden channels h of the a/b projections (AF3: 128)"),
    # shared with the other kernels: the same declarations
    "B": EVO_SETTINGS["B"],
    "mask": EVO_SETTINGS["mask"],
    "precision": EVO_SETTINGS["precision"],
}


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    _, problem = gemm_precision("tri_mul", settings.get("precision", "auto"))
    if problem:
        problems.append(problem)
    problem = variant_problem("tri_mul", settings.get("variant", "auto"))
    if problem:
        problems.append(problem)
    for key in ("pair_dim", "tri_hidden"):
        if not 1 <= int(settings.get(key, 128)) <= 256:
            problems.append(f"{key} must be between 1 and 256")
    if int(settings.get("B", 1)) < 1:
        problems.append("B must be at least 1")
    problem = cuda_only_problem(settings, device_type)
    if problem:
        problems.append(problem)
    if settings.get("impl") == "cueq" and int(settings.get("tri_hidden", 128)) != int(settings.get("pair_dim", 128)):
        problems.append("impl=cueq needs tri_hidden equal to pair_dim (cuEquivariance's projections are square)")
    return problems


SPEC = KernelSpec(
    name="tri_mul",
    description="triangle multiplicative update (AF3 Alg. 12/13, --set variant=outgoing|incoming); --seq-len is N",
    case="af3_kernels.tri_mul.case:TriMulCase",
    impls={"fused": "this package's forward (Triton gating and LayerNorm-Linear-gate kernels around one "
                    "batched GEMM; with gradients: fused LayerNorm-Linears, cuBLAS, autograd)",
           "torch": "eager reference", "compile": "torch.compile of the reference",
           "cueq": "cuEquivariance's triangle_multiplicative_update (cuequivariance-torch 0.13); CUDA only, "
                   "tri_hidden = pair_dim"},
    triton_impls=("fused",),
    settings=SETTINGS,
    validate=validate,
)
