"""The knobs of the OpenFold3 engine, its presets and their plan-time validation. Light: no imports
beyond af3core.

``default`` is what OpenFold3's inference runs (openfold3 0.5.0: the model config with the
``predict`` preset, ``ExperimentRunner``'s ``32-true`` precision): the released model's widths and
depths (48 Pairformer blocks, 4 MSA blocks, 2 template blocks, a 24-block diffusion transformer,
3-block atom encoders and decoder, a confidence head with 4 Pairformer blocks), 3 recycles, 200
diffusion steps, 5 samples, fp32 with TF32 matmuls (``run_openfold predict --use_tf32`` defaults to
true), 4 template slots, the MSA subsampled to 1024 rows, OpenFold3's
Triton triangle kernels on a CUDA GPU. One deliberate difference: no chunking (``chunk_size=0``;
predict caps chunks at 1024 and tunes them, which at up to 1024 tokens chunks nothing but costs a
tuning search in the first call). ``small`` keeps the widths and shrinks every depth and loop so a
trunk pass at 32 tokens takes about a second on a CPU.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

KERNELS = ("auto", "triton", "cueq", "off")
WEIGHTS = ("package", "random")

#: Every setting's default: OpenFold3's inference setting (above).
DEFAULTS = {
    "pairformer_blocks": 48,
    "msa_blocks": 4,
    "template_blocks": 2,
    "diffusion_blocks": 24,
    "atom_blocks": 3,
    "confidence_blocks": 4,
    "recycles": 3,
    "steps": 200,
    "samples": 5,
    "msa_rows": 1024,
    "templates": 4,
    "dtype": "fp32",
    "tf32": True,
    "kernels": "auto",
    "chunk_size": 0,
    "weights": "package",
    "seed": 0,
    "check_finite": True,
}

SETTINGS = {
    "pairformer_blocks": Setting(DEFAULTS["pairformer_blocks"], "Pairformer blocks of the trunk (released model: 48)"),
    "msa_blocks": Setting(DEFAULTS["msa_blocks"], "MSA module blocks (released model: 4)"),
    "template_blocks": Setting(DEFAULTS["template_blocks"], "template pair stack blocks (released model: 2)"),
    "diffusion_blocks": Setting(DEFAULTS["diffusion_blocks"], "diffusion transformer blocks (released model: 24)"),
    "atom_blocks": Setting(DEFAULTS["atom_blocks"], "blocks of each atom attention encoder/decoder (input embedder, "
                                                    "diffusion encoder and decoder; released model: 3)"),
    "confidence_blocks": Setting(DEFAULTS["confidence_blocks"], "Pairformer blocks of the confidence head "
                                                                "(released model: 4)"),
    "recycles": Setting(DEFAULTS["recycles"], "recycling iterations (inference: 3; the trunk runs recycles + 1 times)"),
    "steps": Setting(DEFAULTS["steps"], "diffusion sampling steps in full mode (inference: 200)"),
    "samples": Setting(DEFAULTS["samples"], "diffusion samples in full mode (inference: 5)"),
    "msa_rows": Setting(DEFAULTS["msa_rows"], "MSA rows of the synthetic batch (the model subsamples every MSA to "
                                              "1024 rows; a real one holds up to 16384)"),
    "templates": Setting(DEFAULTS["templates"], "template slots of the batch (inference: 4, masked when there is no "
                                                "hit; the template stack runs over every slot)"),
    "dtype": Setting(DEFAULTS["dtype"], "fp32 (inference's 32-true), or bf16 = autocast to bfloat16 with fp32 weights",
                     ("fp32", "bf16")),
    "tf32": Setting(DEFAULTS["tf32"], "fp32 matmuls in TF32 where the GPU has it (run_openfold predict's --use_tf32, "
                                      "default true: float32 matmul precision 'high'); false: 'highest'"),
    "kernels": Setting(DEFAULTS["kernels"], "triangle attention/multiplication kernels: auto (OpenFold3's Triton "
                                            "kernels on a CUDA GPU when they import, as inference does; none on a "
                                            "CPU), triton, cueq (cuEquivariance), off", KERNELS),
    "chunk_size": Setting(DEFAULTS["chunk_size"], "0: no chunking; N: chunk size N with the package's tuner "
                                                  "(inference's predict preset: 1024)"),
    "weights": Setting(DEFAULTS["weights"], "package: the model's own initialisation (zero-initialised final "
                                            "projections); random: every parameter re-randomised", WEIGHTS),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters and the synthetic batch"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose outputs hold NaN/Inf"),
}

#: The released widths, every depth and loop shrunk: CPU-sized.
SMALL = {
    "pairformer_blocks": 2,
    "msa_blocks": 1,
    "template_blocks": 1,
    "diffusion_blocks": 2,
    "atom_blocks": 1,
    "confidence_blocks": 1,
    "recycles": 1,
    "steps": 10,
    "samples": 1,
    "msa_rows": 16,
    "templates": 1,
}
PRESETS = {"small": SMALL, "default": {}}

_AT_LEAST_ONE = ("pairformer_blocks", "msa_blocks", "template_blocks", "diffusion_blocks", "atom_blocks",
                 "confidence_blocks", "samples", "msa_rows", "templates")


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time problems of the merged settings on ``device_type``, one line each."""
    errors = []
    if device_type not in ("cpu", "cuda"):
        errors.append(f"the openfold3 plugin runs on cpu or cuda, not {device_type}")
    for key in _AT_LEAST_ONE:
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be >= 1, got {settings[key]}")
    for key in ("recycles", "chunk_size"):
        if key in settings and int(settings[key]) < 0:
            errors.append(f"{key} must be >= 0, got {settings[key]}")
    if "steps" in settings and int(settings["steps"]) < 1:
        errors.append(f"steps must be >= 1, got {settings['steps']}")
    kernels = settings.get("kernels", "auto")
    if kernels in ("triton", "cueq") and device_type != "cuda":
        errors.append(f"kernels={kernels} needs a CUDA GPU; use kernels=auto or off on a {device_type}")
    return errors

