"""The fused LayerNorm -> Linear as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton). ``--seq-len`` is N; the rows are the N*N positions of a pair tensor
[B, N, N, k] (``ln_rows=pair``) or the N tokens of a single representation [B, N, k]
(``ln_rows=single``); k = pair_dim (the setting tri_mul and the Transition share), n = out_dim.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

from af3_kernels.kernel import KernelSpec, cuda_only_problem, gemm_precision
from af3_kernels.ln_linear.limits import MAX_K
from af3_kernels.tri_mul.spec import SETTINGS as TRI_MUL_SETTINGS

SETTINGS = {
    "pair_dim": TRI_MUL_SETTINGS["pair_dim"],
    "out_dim": Setting(512, "ln_linear: output width n (AF3: 4*128+4 for triangle attention's q/k/v/gate/bias, "
                            "1024 for the Transition's first linear)"),
    "bias": Setting(False, "ln_linear: the linear has a bias"),
    "ln_rows": Setting("pair", "ln_linear: rows are the N*N pair positions (pair) or N tokens (single)",
                       ("pair", "single")),
    "B": TRI_MUL_SETTINGS["B"],
    "precision": TRI_MUL_SETTINGS["precision"],
}


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    _, problem = gemm_precision("ln_linear", settings.get("precision", "auto"))
    if problem:
        problems.append(problem)
    if not 1 <= int(settings.get("pair_dim", 128)) <= MAX_K:
        problems.append(f"pair_dim must be between 1 and {MAX_K} for ln_linear (the whole row is one tile)")
    if int(settings.get("out_dim", 512)) < 1 or int(settings.get("B", 1)) < 1:
        problems.append("out_dim and B must be at least 1")
    problem = cuda_only_problem(settings, device_type)
    if problem:
        problems.append(problem)
    return problems


SPEC = KernelSpec(
    name="ln_linear",
    description="LayerNorm then Linear in one kernel, forward and backward (MegaFold's LayernormLinear); "
                "--seq-len is N (rows N*N, or N with ln_rows=single)",
    case="af3_kernels.ln_linear.case:LnLinearCase",
    impls={"fused": "this package's Triton kernels (the normalised rows never reach memory)",
           "torch": "eager reference (F.layer_norm, F.linear)", "compile": "torch.compile of the reference",
           "liger": "Liger-Kernel's fused LayerNorm (liger-kernel 0.8.5), then F.linear; CUDA only"},
    triton_impls=("fused", "liger"),
    settings=SETTINGS,
    validate=validate,
)
