"""The knobs of the ESM-2 engine, its presets and their plan-time validation. Light: no imports
beyond af3core.

``size`` picks one of the released ESM-2 architectures (``model.SIZES``); ``--seq-len`` is the
sequence length in residues (the model sees two more tokens: BOS and EOS); ``batch`` sequences of
that length go through one forward pass. ``dtype`` casts the whole model (as ``model.half()``
does; fp16 on CUDA only); ``weights=int8`` quantises the Linear layers' weights to int8
(torchao's weight-only int8; activations stay in ``dtype``).
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from af3core import Setting

#: the released sizes, by name (layers, width, heads are in model.SIZES; kept here as names only so
#: that this module stays light and the choices are listed by ``af3 plugins esm2``)
SIZE_NAMES = ("8M", "35M", "150M", "650M", "3B")
DTYPES = ("fp32", "bf16", "fp16")
WEIGHTS = ("none", "int8")
TORCHAO_FIX = "pip install torchao==0.18.0 (or: pip install 'af3-esm2[int8]'; docs/ESM2.md)"

DEFAULTS = {
    "size": "650M",
    "batch": 1,
    "dtype": "fp32",
    "weights": "none",
    "seed": 0,
    "check_finite": True,
}

SETTINGS = {
    "size": Setting(DEFAULTS["size"], "released ESM-2 size: 8M (6 layers, 320 wide), 35M (12, 480), 150M (30, 640), "
                                      "650M (33, 1280), 3B (36, 2560)", SIZE_NAMES),
    "batch": Setting(DEFAULTS["batch"], "sequences per forward pass, each of --seq-len residues"),
    "dtype": Setting(DEFAULTS["dtype"], "the model cast to fp32, bf16 or fp16 (fp16: CUDA only)", DTYPES),
    "weights": Setting(DEFAULTS["weights"], "none, or int8: torchao weight-only int8 for every Linear layer "
                                            "(needs torchao)", WEIGHTS),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters and the synthetic sequences"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose final representations hold NaN/Inf"),
}

PRESETS = {"small": {"size": "8M"}, "default": {}}


def torchao_installed() -> bool:
    return importlib.util.find_spec("torchao") is not None


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    errors = []
    if device_type not in ("cpu", "cuda"):
        errors.append(f"the esm2 plugin runs on cpu or cuda, not {device_type}")
    if "size" in settings and settings["size"] not in SIZE_NAMES:
        errors.append(f"size must be one of {', '.join(SIZE_NAMES)}, got {settings['size']!r}")
    if "batch" in settings and int(settings["batch"]) < 1:
        errors.append(f"batch must be >= 1, got {settings['batch']}")
    if "dtype" in settings and settings["dtype"] not in DTYPES:
        errors.append(f"dtype must be one of {', '.join(DTYPES)}, got {settings['dtype']!r}")
    elif settings.get("dtype") == "fp16" and device_type != "cuda":
        errors.append(f"dtype=fp16 needs a CUDA device (half-precision matmuls on {device_type} are not "
                      "supported well); use fp32 or bf16 here")
    if "weights" in settings and settings["weights"] not in WEIGHTS:
        errors.append(f"weights must be one of {', '.join(WEIGHTS)}, got {settings['weights']!r}")
    elif settings.get("weights") == "int8" and not torchao_installed():
        errors.append(f"weights=int8 needs torchao: {TORCHAO_FIX}")
    return errors


def check_seq_len(n: int) -> str | None:
    return None if n >= 1 else f"--seq-len is residues per sequence and must be >= 1, got {n}"
