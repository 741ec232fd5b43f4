"""The knobs of the Boltz-2 engine, its presets and their plan-time validation. Light: no imports
beyond af3core.

``default`` is what ``boltz predict`` runs (boltz 2.2.1, src/boltz/main.py): the released model's
widths and depths (64 Pairformer blocks, 4 MSA blocks, a 24-layer diffusion transformer, the
confidence head with 8 Pairformer blocks, templates v2), 3 recycles, 200 sampling steps, 1 sample,
bf16 autocast (Lightning's "bf16-mixed"), cuEquivariance kernels on a GPU of compute capability 8
or more. ``small`` shrinks the trunk and the loops so a pass takes seconds on a CPU.
"""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

DEFAULTS = {
    "pairformer_blocks": 64,
    "recycles": 3,
    "steps": 200,
    "samples": 1,
    "msa_rows": 1024,
    "dtype": "bf16",
    "use_kernels": "auto",
    "confidence": True,
    "templates": True,
    "seed": 0,
    "check_finite": True,
}

SETTINGS = {
    "pairformer_blocks": Setting(DEFAULTS["pairformer_blocks"], "Pairformer blocks of the trunk (released model: 64)"),
    "recycles": Setting(DEFAULTS["recycles"], "recycling steps (boltz predict: 3; the trunk runs recycles + 1 times)"),
    "steps": Setting(DEFAULTS["steps"], "diffusion sampling steps in full mode (boltz predict: 200)"),
    "samples": Setting(DEFAULTS["samples"], "diffusion samples in full mode (boltz predict: 1)"),
    "msa_rows": Setting(DEFAULTS["msa_rows"], "MSA rows of the synthetic batch (boltz predict reads up to 8192 and "
                                              "does not subsample; 1024 is a typical depth)"),
    "dtype": Setting(DEFAULTS["dtype"], "bf16 = autocast to bfloat16 (boltz predict's bf16-mixed), or fp32",
                     ("bf16", "fp32")),
    "use_kernels": Setting(DEFAULTS["use_kernels"], "cuEquivariance triangle kernels: on, off, or auto (on on a GPU of "
                                                    "compute capability 8+ when cuEquivariance loads, as boltz "
                                                    "predict does)", ("auto", "on", "off")),
    "confidence": Setting(DEFAULTS["confidence"], "run the confidence head in full mode (boltz predict: yes)"),
    "templates": Setting(DEFAULTS["templates"], "build the template module (boltz predict: yes; an empty template)"),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters and the synthetic batch"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose outputs hold NaN/Inf"),
}

SMALL = {"pairformer_blocks": 2, "recycles": 1, "steps": 10, "samples": 1, "msa_rows": 16, "dtype": "fp32"}
PRESETS = {"small": SMALL, "default": {}}


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    errors = []
    if device_type not in ("cpu", "cuda"):
        errors.append(f"the boltz plugin runs on cpu or cuda, not {device_type}")
    for key in ("pairformer_blocks", "msa_rows", "samples"):
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be >= 1, got {settings[key]}")
    if "recycles" in settings and int(settings["recycles"]) < 0:
        errors.append(f"recycles must be >= 0, got {settings['recycles']}")
    if "steps" in settings and int(settings["steps"]) < 2:
        errors.append(f"steps must be >= 2, got {settings['steps']}")
    if settings.get("use_kernels") == "on" and device_type != "cuda":
        errors.append("use_kernels=on needs a CUDA GPU (cuEquivariance's kernels); use auto or off")
    return errors
