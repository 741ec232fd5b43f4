"""The knobs of the Ligo engine, its presets and their plan-time validation. Light: PyYAML only.

``paper`` is the repo's ``configs/model/alphafold3.yaml`` as it is (48 Pairformer blocks, 4 MSA
blocks, 24 diffusion-transformer blocks...) with the setting defaults (:data:`DEFAULTS`)
(512 MSA rows, 4 trunk cycles, 200 diffusion steps, 1 sample). ``small`` shrinks widths and depths
so a pass takes well under a second on a CPU at 32 tokens. Every key of the yaml is a setting too,
written ``config.<dotted.path>`` (``af3_ligo.config``); :func:`validate` checks those against the
yaml of the source in use.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from af3core import Setting
from af3core.source import SourceNotFound

from af3_ligo import config as ligo_config
from af3_ligo import source

MSA_IMPLS = ("torch", "seed", "fused")
TRI_ATTN_IMPLS = ("torch", "fused")
TRI_MUL_IMPLS = ("torch", "fused", "cueq")
TRANSITION_IMPLS = ("torch", "fused")
LN_LINEAR_IMPLS = ("torch", "fused")
KERNELS = ("per_op", "af3")
#: The op settings ``kernels=af3`` sets to ``fused`` (each op that has an af3 kernel today).
FUSED_OPS = ("msa_impl", "tri_attn_impl", "tri_mul_impl", "transition_impl")
DTYPES = ("fp32", "bf16")

#: Every setting's default (:data:`SETTINGS` documents them): the paper's inference
#: loop counts (512 MSA rows, 4 trunk cycles, 200 diffusion steps, 1 sample per trunk), the
#: einsum MSA averaging, fp32, the model's own initialisation.
DEFAULTS = {
    "msa_impl": "torch",
    "tri_attn_impl": "torch",
    "tri_mul_impl": "torch",
    "transition_impl": "torch",
    "ln_linear_impl": "torch",
    "kernels": "per_op",
    "dtype": "fp32",
    "msa_rows": 512,
    "cycles": 4,
    "diffusion_steps": 200,
    "samples": 1,
    "weights": "repo",
    "seed": 0,
    "check_finite": True,
    "module_times": False,
}

# Defaults are the paper's inference setting: the yaml's widths and depths as they are, plus the
# loop counts the model's forward and the paper use (4 trunk cycles, 512 MSA rows, 200 steps, 1 sample).
SETTINGS = {
    "msa_impl": Setting(DEFAULTS["msa_impl"], "MSA pair-weighted averaging: torch (softmax+einsum), seed (the repo's "
                                 "Triton kernel, CUDA fp32), fused (af3_kernels)", MSA_IMPLS),
    "tri_attn_impl": Setting(DEFAULTS["tri_attn_impl"], "triangle attention (start and end node): torch (the repo's "
                                           "module), fused (af3_kernels evo_attn)", TRI_ATTN_IMPLS),
    "tri_mul_impl": Setting(DEFAULTS["tri_mul_impl"], "triangle multiplicative update (outgoing and incoming): "
                                                      "torch (the repo's module), fused (af3_kernels tri_mul), "
                                                      "cueq (cuEquivariance's fused update; a CUDA GPU)",
                            TRI_MUL_IMPLS),
    "transition_impl": Setting(DEFAULTS["transition_impl"], "Transition (LayerNorm, SwiGLU, linear): torch (the repo's "
                                                            "module), fused (af3_kernels transition; "
                                                            "widths up to 256, wider ones stay torch)",
                               TRANSITION_IMPLS),
    "ln_linear_impl": Setting(DEFAULTS["ln_linear_impl"], "triangle attention's LayerNorm and q/k/v/gate/bias "
                                                          "projection: torch (nn.LayerNorm, F.linear), fused "
                                                          "(af3_kernels ln_linear; needs tri_attn_impl=fused; not "
                                                          "in kernels=af3: faster with dtype=bf16, slower in fp32)",
                              LN_LINEAR_IMPLS),
    "kernels": Setting(DEFAULTS["kernels"], "af3: every op with an af3 kernel fused (" + ", ".join(FUSED_OPS) + "); "
                                            "per_op: each *_impl setting decides", KERNELS),
    "dtype": Setting(DEFAULTS["dtype"], "fp32, or bf16 = autocast with fp32 weights (the repo's bf16-mixed)", DTYPES),
    "msa_rows": Setting(DEFAULTS["msa_rows"], "MSA rows (sequences) fed to the MSA module"),
    "cycles": Setting(DEFAULTS["cycles"], "trunk cycles (recycling iterations; the batch's trailing dimension)"),
    "diffusion_steps": Setting(DEFAULTS["diffusion_steps"],
                               "diffusion sampling steps in full mode (the forward hard-codes 200)"),
    "samples": Setting(DEFAULTS["samples"], "diffusion samples per trunk in full mode (the forward hard-codes 1)"),
    "weights": Setting(DEFAULTS["weights"], "repo: the model's own initialisation; random: every parameter re-randomised "
                               "(no zero-initialised branches)", ("repo", "random")),
    "seed": Setting(DEFAULTS["seed"], "seed of the parameters and the synthetic batch"),
    "module_times": Setting(DEFAULTS["module_times"], "time each kind of module (triangle attention, triangle "
                                                      "multiplication, Transition...) in every pass: ms_<group> "
                                                      "figures in the rows and the summary (af3_ligo.module_times)"),
    "check_finite": Setting(DEFAULTS["check_finite"], "fail a pass whose outputs hold NaN/Inf (false: time "
                                                      "it anyway, e.g. the seed kernel's defect)"),
}


# Reduced widths and depths, quick on a CPU; every yaml key is reachable as config.<path>.
SMALL = {
    "msa_rows": 16,
    "cycles": 2,
    "diffusion_steps": 10,
    "samples": 1,
    "config.c_token": 64,
    "config.c_pair": 32,
    "config.c_atom": 32,
    "config.c_atompair": 8,
    "config.c_hidden_tri_mul": 32,
    "config.no_heads_single_attn": 4,
    "config.msa_module.no_blocks": 1,
    "config.msa_module.c_msa": 16,
    "config.pairformer_stack.no_blocks": 2,
    "config.diffusion_module.token_transformer_blocks": 2,
    "config.diffusion_module.token_transformer_heads": 4,
    "config.diffusion_module.atom_encoder_blocks": 1,
    "config.diffusion_module.atom_encoder_heads": 4,
    "config.diffusion_module.atom_decoder_blocks": 1,
    "config.diffusion_module.atom_decoder_heads": 4,
}
PRESETS = {"small": SMALL, "paper": {}}


def op_impls(settings: Mapping[str, Any]) -> dict[str, str]:
    """The implementation each op runs: its *_impl setting, or ``fused`` for all under ``kernels=af3``."""
    if settings.get("kernels", DEFAULTS["kernels"]) == "af3":
        return {op: "fused" for op in FUSED_OPS}
    return {op: settings.get(op, DEFAULTS[op]) for op in FUSED_OPS}


def device_error(device_type: str, impls: Mapping[str, str], dtype: str) -> str | None:
    """Why this device cannot run these choices (``impls``: :func:`op_impls`), in one line; None when it can."""
    impl = impls["msa_impl"]
    if device_type not in ("cpu", "cuda"):
        return f"the ligo plugin runs on cpu or cuda, not {device_type}"
    if impl == "seed":
        if device_type != "cuda":
            return ("msa_impl=seed is the repo's Triton kernel and needs a CUDA GPU; "
                    "use msa_impl=torch (or fused with TRITON_INTERPRET=1) on a CPU")
        if dtype != "fp32":
            return "msa_impl=seed runs in fp32 only: use dtype=fp32 or msa_impl=torch|fused"
    if impls["tri_mul_impl"] == "cueq" and device_type != "cuda":
        return "tri_mul_impl=cueq runs cuEquivariance's CUDA kernels: it needs a CUDA GPU"
    fused = [name for name in FUSED_OPS if impls[name] == "fused"]
    if fused and device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return (f"{'/'.join(fused)}=fused on a CPU runs af3 Triton kernels in Triton's interpreter: "
                "set TRITON_INTERPRET=1 (slow; for correctness checks, not timings)")
    return None


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time checks across settings and for the device type, and the ``config.<path>`` keys
    against the repo's yaml."""
    errors = []
    if settings.get("kernels") == "af3":
        clash = [f"{op}={settings[op]}" for op in FUSED_OPS if settings.get(op, DEFAULTS[op]) not in (DEFAULTS[op], "fused")]
        if clash:
            errors.append(f"kernels=af3 runs every op fused; drop {', '.join(clash)} or kernels=af3")
    impls = op_impls(settings)
    if settings.get("ln_linear_impl", "torch") == "fused" and impls["tri_attn_impl"] != "fused":
        errors.append("ln_linear_impl=fused works inside the fused triangle attention: add tri_attn_impl=fused "
                      "(or kernels=af3)")
    problem = device_error(device_type, impls, settings.get("dtype", "fp32"))
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
        raw = ligo_config.load_raw(source.config_file(source.SOURCE.locate().root))
    except SourceNotFound:
        raw = None  # availability reports the missing source; only the form of the keys is checked
    for key in extra:
        if raw is None:
            if not key.startswith(ligo_config.PREFIX):
                errors.append(f"unknown setting {key!r} (yaml keys are set as config.<dotted.path>)")
        else:
            err = ligo_config.check_override(raw, key, settings[key])
            if err:
                errors.append(err)
    return errors


def check_seq_len(n: int) -> str | None:
    if n < 8 or n % 8:
        return f"Ligo needs a token count that is a positive multiple of 8 (4 atoms per token, 32-atom windows); got {n}"
    return None
