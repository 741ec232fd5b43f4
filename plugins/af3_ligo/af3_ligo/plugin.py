"""Registers the ``ligo`` engine. Cheap: imports neither torch nor Ligo's code (the worker does)."""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from af3core import ENGINE, Availability, Plugin, Setting, hookimpl

from af3_ligo import config as ligo_config
from af3_ligo import source
from af3_ligo.presets import DEFAULTS, PRESETS

MSA_IMPLS = ("torch", "seed", "fused")
DTYPES = ("fp32", "bf16")

# Defaults are the paper's inference setting: the yaml's widths and depths as they are, plus the
# loop counts the model's forward and the paper use (4 trunk cycles, 512 MSA rows, 200 steps, 1 sample).
SETTINGS = {
    "msa_impl": Setting(DEFAULTS["msa_impl"], "MSA pair-weighted averaging: torch (softmax+einsum), seed (the repo's "
                                 "Triton kernel, CUDA fp32), fused (af3_kernels)", MSA_IMPLS),
    "dtype": Setting(DEFAULTS["dtype"], "fp32, or bf16 = autocast with fp32 weights (the repo's bf16-mixed)", DTYPES),
    "msa_rows": Setting(DEFAULTS["msa_rows"], "MSA rows (sequences) fed to the MSA module"),
    "cycles": Setting(DEFAULTS["cycles"], "trunk cycles (recycling iterations; the batch's trailing dimension)"),
    "diffusion_steps": Setting(DEFAULTS["diffusion_steps"],
                               "diffusion sampling steps in full mode (the forward hard-codes 200)"),
    "samples": Setting(DEFAULTS["samples"], "diffusion samples per trunk in full mode (the forward hard-codes 1)"),
    "weights": Setting(DEFAULTS["weights"], "repo: the model's own initialisation; random: every parameter re-randomised "
                               "(no zero-initialised branches)", ("repo", "random")),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters and the synthetic batch"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose outputs hold NaN/Inf (false: time "
                                                      "it anyway, e.g. the seed kernel's defect)"),
}


def check() -> Availability:
    try:
        src = source.locate()
    except source.SourceNotFound as exc:
        return Availability.no(exc.reason, source.FIX)
    if importlib.util.find_spec("torch") is None:
        return Availability.no("PyTorch is not installed", "pip install torch")
    return Availability.yes(source_version=src.version)


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time checks across settings and for the device type, and the ``config.<path>`` keys
    against the repo's yaml."""
    from af3_ligo.runner import device_error  # light: the runner module imports no torch at import

    errors = []
    problem = device_error(device_type, settings.get("msa_impl", "torch"), settings.get("dtype", "fp32"))
    if problem:
        errors.append(problem)
    for key in ("msa_rows", "cycles", "samples"):
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be >= 1, got {settings[key]}")
    if "diffusion_steps" in settings and int(settings["diffusion_steps"]) < 2:
        errors.append(f"diffusion_steps must be >= 2 (step 0 only draws noise), got {settings['diffusion_steps']}")
    extra = [k for k in settings if k not in SETTINGS]
    if not extra:
        return errors
    try:
        raw = ligo_config.load_raw(source.locate().config_file)
    except source.SourceNotFound:
        raw = None  # availability reports the missing source; only the form of the keys is checked
    for key in extra:
        if raw is None:
            if not key.startswith(ligo_config.PREFIX):
                errors.append(f"unknown setting {key!r} (yaml keys are set as config.<dotted.path>)")
        else:
            err = ligo_config.check_override(raw, key)
            if err:
                errors.append(err)
    return errors


def check_seq_len(n: int) -> str | None:
    if n < 8 or n % 8:
        return f"Ligo needs a token count that is a positive multiple of 8 (4 atoms per token, 32-atom windows); got {n}"
    return None


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="ligo",
            kind=ENGINE,
            runner="af3_ligo.runner:LigoRunner",
            description="Ligo Biosciences' AlphaFold 3 in PyTorch (src.models.model.AlphaFold3), random "
                        "parameters, synthetic batch, eval + no_grad",
            modes=("toy", "trunk", "full"),
            default_mode="trunk",
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset="small",
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            check_seq_len=check_seq_len,
            setting_prefixes=(ligo_config.PREFIX,),
            libraries=("numpy", "scipy", "einops", "pyyaml"),
        )
    )
