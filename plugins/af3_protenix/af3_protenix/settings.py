"""The knobs of the Protenix engine, its presets and their plan-time validation. Light: no imports
beyond af3core.

``default`` is what Protenix's released inference runs (protenix 2.0.0: ``protenix pred`` /
``runner.batch_inference.get_default_runner`` with its defaults): the model
``protenix_base_default_v1.0.0`` (``configs_base`` + ``configs_data`` + ``configs_inference``, then
``model_configs[model_name]``): 48 Pairformer blocks, 4 MSA blocks, 2 template blocks, a 24-block
diffusion transformer, 3-block atom encoder and decoder, a 4-block confidence head; 10 cycles
(``N_cycle``: the trunk runs 10 times), 200 diffusion steps, 5 samples; bf16 autocast on a GPU
(``--dtype bf16``) with the diffusion and the confidence head kept in fp32 (``skip_amp``, as
``update_inference_configs`` sets it up to 2560 tokens), TF32 matmuls, the diffusion cache and
fused ops on; cuEquivariance triangle kernels (``trimul_kernel``/``triatt_kernel`` default
``cuequivariance``) and the fused LayerNorm CUDA extension (``LAYERNORM_TYPE`` unset) where they can
run; inference without templates (``use_template`` false: 4 empty template slots). ``small`` keeps
the widths and shrinks every depth and loop so a trunk pass at 32 tokens takes about a second on a
CPU, in fp32.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

MODELS = ("protenix_base_default_v1.0.0", "protenix-v2")
TRI_ATTENTION = ("auto", "torch", "triattention", "cuequivariance", "deepspeed")
TRI_MULTIPLICATIVE = ("auto", "torch", "cuequivariance")
LAYERNORM = ("auto", "fast", "torch")
WEIGHTS = ("package", "random")

#: Every setting's default: Protenix's released inference (above).
DEFAULTS = {
    "model": "protenix_base_default_v1.0.0",
    "pairformer_blocks": 48,
    "msa_blocks": 4,
    "template_blocks": 2,
    "diffusion_blocks": 24,
    "atom_blocks": 3,
    "confidence_blocks": 4,
    "cycles": 10,
    "steps": 200,
    "samples": 5,
    "msa_rows": 1024,
    "templates": 4,
    "dtype": "bf16",
    "tf32": True,
    "tri_attention": "auto",
    "tri_multiplicative": "auto",
    "layernorm": "auto",
    "weights": "package",
    "seed": 0,
    "check_finite": True,
}

SETTINGS = {
    "model": Setting(DEFAULTS["model"], "Protenix model config (model_configs): the released inference default, or "
                                        "the scaled-up protenix-v2 (c_z 256, wider hidden layers)", MODELS),
    "pairformer_blocks": Setting(DEFAULTS["pairformer_blocks"], "Pairformer blocks of the trunk (released: 48)"),
    "msa_blocks": Setting(DEFAULTS["msa_blocks"], "MSA module blocks (released: 4)"),
    "template_blocks": Setting(DEFAULTS["template_blocks"], "template embedder blocks (v1.0.0/v2 models: 2)"),
    "diffusion_blocks": Setting(DEFAULTS["diffusion_blocks"], "diffusion transformer blocks (released: 24)"),
    "atom_blocks": Setting(DEFAULTS["atom_blocks"], "blocks of the diffusion module's atom attention encoder and "
                                                    "decoder (released: 3; the input embedder's atom encoder keeps its 3, "
                                                    "which the config does not expose)"),
    "confidence_blocks": Setting(DEFAULTS["confidence_blocks"], "Pairformer blocks of the confidence head "
                                                                "(released: 4)"),
    "cycles": Setting(DEFAULTS["cycles"], "N_cycle: trunk iterations, recycles + 1 (inference: 10)"),
    "steps": Setting(DEFAULTS["steps"], "N_step: diffusion sampling steps in full mode (inference: 200)"),
    "samples": Setting(DEFAULTS["samples"], "N_sample: diffusion samples in full mode (inference: 5)"),
    "msa_rows": Setting(DEFAULTS["msa_rows"], "MSA rows of the synthetic features (the model draws a random "
                                              "subset of 1..rows each cycle, up to 16384; the seed fixes it)"),
    "templates": Setting(DEFAULTS["templates"], "template slots (inference without templates: 4 empty slots, "
                                                "each run through the template embedder)"),
    "dtype": Setting(DEFAULTS["dtype"], "bf16 (inference's default: autocast to bfloat16 with fp32 weights; the "
                                        "diffusion and confidence head stay fp32, skip_amp) or fp32",
                     ("fp32", "bf16")),
    "tf32": Setting(DEFAULTS["tf32"], "enable_tf32: fp32 matmuls in TF32 where the GPU has it (inference: true)"),
    "tri_attention": Setting(DEFAULTS["tri_attention"], "triangle attention: auto (a CUDA GPU: cuequivariance when "
                                                        "cuequivariance-torch imports, as inference; else torch), "
                                                        "torch, triattention (Protenix's Triton kernel), "
                                                        "cuequivariance, deepspeed (DS4Sci; needs CUTLASS_PATH)",
                             TRI_ATTENTION),
    "tri_multiplicative": Setting(DEFAULTS["tri_multiplicative"], "triangle multiplication: auto (cuequivariance "
                                                                  "on a CUDA GPU when it imports; else torch), torch, "
                                                                  "cuequivariance", TRI_MULTIPLICATIVE),
    "layernorm": Setting(DEFAULTS["layernorm"], "LayerNorm: auto (a CUDA GPU with nvcc: Protenix's fused CUDA "
                                                "extension, JIT-compiled on import, as inference; else torch), fast, "
                                                "torch (LAYERNORM_TYPE, read when protenix is imported)", LAYERNORM),
    "weights": Setting(DEFAULTS["weights"], "package: the model's own initialisation (zero-initialised final "
                                            "projections); random: every parameter re-randomised", WEIGHTS),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters, the synthetic features and each pass's sampling"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose outputs hold NaN/Inf"),
}

#: The released widths, every depth and loop shrunk: CPU-sized, fp32.
SMALL = {
    "pairformer_blocks": 2,
    "msa_blocks": 1,
    "template_blocks": 1,
    "diffusion_blocks": 2,
    "atom_blocks": 1,
    "confidence_blocks": 1,
    "cycles": 2,
    "steps": 10,
    "samples": 1,
    "msa_rows": 16,
    "templates": 1,
    "dtype": "fp32",
}
PRESETS = {"small": SMALL, "default": {}}

_AT_LEAST_ONE = ("pairformer_blocks", "diffusion_blocks", "atom_blocks", "confidence_blocks", "cycles", "steps",
                 "samples", "msa_rows", "templates")
_AT_LEAST_ZERO = ("msa_blocks", "template_blocks")


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time problems of the merged settings on ``device_type``, one line each."""
    errors = []
    if device_type not in ("cpu", "cuda"):
        errors.append(f"the protenix plugin runs on cpu or cuda, not {device_type}")
    for key in _AT_LEAST_ONE:
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be >= 1, got {settings[key]}")
    for key in _AT_LEAST_ZERO:
        if key in settings and int(settings[key]) < 0:
            errors.append(f"{key} must be >= 0, got {settings[key]}")
    if device_type != "cuda":
        for key, value in (("tri_attention", settings.get("tri_attention", "auto")),
                           ("tri_multiplicative", settings.get("tri_multiplicative", "auto")),
                           ("layernorm", settings.get("layernorm", "auto"))):
            if value not in ("auto", "torch"):
                errors.append(f"{key}={value} needs a CUDA GPU; use {key}=auto or torch on a {device_type}")
    return errors


def check_seq_len(n: int) -> str | None:
    return None if n >= 4 else f"the protenix plugin needs at least 4 tokens, got {n}"
