"""MSA pair-weighted averaging as the plugin registers it: settings and plan-time checks.

Light (no torch, no triton): the plugin imports this when it registers. The case itself is case.py.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting
from af3core.source import EngineSource, SourceNotFound

from af3_kernels.kernel import KernelSpec

#: Ligo's checkout, whose Triton kernel is the "seed" implementation
LIGO_SOURCE = EngineSource(name="Ligo's AlphaFold 3", env_var="AF3_LIGO_SRC", folder="alphafold3_ligo",
                           repo_url="https://github.com/Ligo-Biosciences/AlphaFold3", pinned_commit="621531e",
                           required=("src/models/components/msa_kernel.py",))

PRECISIONS = ("ieee", "bf16x6", "bf16x3", "tf32x3", "tf32")

SETTINGS = {
    "S": Setting(128, "MSA rows (sequences)"),
    "H": Setting(8, "heads"),
    "C": Setting(8, "channels per head"),
    "B": Setting(1, "batch"),
    "mask": Setting(False, "apply a random pair mask (80% kept)"),
    "precision": Setting("auto", "fp32 dots: ieee (FMA, exact), bf16x6 (operands split into three bf16 parts, "
                                 "six tensor-core products: fp32-class error), bf16x3, tf32x3 (3 TF32 passes) "
                                 "or tf32; auto: bf16x6 on a Hopper GPU (compute capability 9.x), ieee "
                                 "elsewhere; for torch/compile, tf32x3 and tf32 enable TF32 matmuls, the "
                                 "others run exact fp32", choices=("auto", *PRECISIONS)),
    "p_mode": Setting("auto", "fused only: keep the softmax P in memory between kernels (stored), "
                              "rebuild it in registers (recompute, least memory), or stored while small (auto)",
                      choices=("auto", "stored", "recompute")),
}


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    problems = []
    small = [k for k in ("S", "H", "C", "B") if int(settings.get(k, 1)) < 1]
    if small:
        problems.append(f"{', '.join(small)} must be at least 1")
    if settings.get("impl") == "seed":
        if device_type != "cuda":
            problems.append("impl=seed (Ligo's Triton kernel) needs a CUDA GPU")
        if settings.get("dtype") != "fp32":
            problems.append("impl=seed (Ligo's Triton kernel) supports dtype=fp32 only")
        if not problems:
            try:
                LIGO_SOURCE.locate()
            except SourceNotFound as exc:
                problems.append(f"impl=seed: {exc.reason}; fix: {exc.fix}")
    return problems


SPEC = KernelSpec(
    name="msa_pwa",
    description="MSA pair-weighted averaging with gating (AF3 Algorithm 10); --seq-len is R",
    case="af3_kernels.msa_pwa.case:MSAPWACase",
    impls={"fused": "this package's Triton kernel", "torch": "eager reference",
           "compile": "torch.compile of the reference", "seed": "Ligo's Triton kernel, fp32, CUDA"},
    triton_impls=("fused", "seed"),
    settings=SETTINGS,
    validate=validate,
)
