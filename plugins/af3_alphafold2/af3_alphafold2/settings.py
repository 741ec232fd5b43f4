"""The knobs of the AlphaFold 2 engine, its presets and their validation. Light: no jax import."""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

#: jax.default_matmul_precision values. AlphaFold 2's monomer config has no bfloat16 switch (only
#: the multimer config's global_config.bfloat16 has one): the graph runs in float32, and this picks
#: how float32 matrix products run ("default" lets a GPU use TF32, "highest" is full float32).
MATMUL_PRECISIONS = ("default", "high", "highest")

# Defaults are DeepMind's model_1_ptm inference settings at c77e5d2 (config.model_config
# ('model_1_ptm'), the eval data config DeepMind's pipeline pads to); the ``small`` preset, used
# when none is named, shrinks the inputs and recycles for quick runs (the network stays whole).
SETTINGS: dict[str, Setting] = {
    "recycles": Setting(3, "recycling iterations after the first pass (model.num_recycle)"),
    "msa_rows": Setting(
        508, "MSA cluster rows the features are padded to (eval.max_msa_clusters 512 minus 4 template "
        "slots: reduce_msa_clusters_by_max_templates); all filled"),
    "extra_msa_rows": Setting(5120, "extra MSA rows the features are padded to (common.max_extra_msa); all filled"),
    "templates": Setting(
        4, "template slots, empty as when no template is found (eval.max_templates); 0 turns the "
        "template embedding off (template.enabled=false)"),
    "subbatch_size": Setting(
        4, "global_config.subbatch_size: inference chunk size of attention and transitions; 0 = no chunking"),
    "matmul_precision": Setting(
        "default", "jax.default_matmul_precision for the float32 graph (default: TF32 on a GPU; highest: "
        "full float32)", MATMUL_PRECISIONS),
    "preallocate": Setting(
        False, "let XLA preallocate most GPU memory (DeepMind's Docker does); NVML then shows the pool"),
    "seed": Setting(0, "seed for the synthetic features, the random parameters and the model's RNG key"),
}

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"recycles": 0, "msa_rows": 4, "extra_msa_rows": 16, "templates": 0},
    # Spelled out although equal to the defaults, so the preset still means DeepMind's settings if
    # a default ever changes.
    "default": {
        "recycles": 3, "msa_rows": 508, "extra_msa_rows": 5120, "templates": 4, "subbatch_size": 4,
        "matmul_precision": "default",
    },
}


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time checks of the merged settings for a device type (the host calls this before any
    worker starts)."""
    errors = []
    for key in ("msa_rows", "extra_msa_rows"):
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be at least 1")
    for key in ("recycles", "templates", "subbatch_size"):
        if key in settings and int(settings[key]) < 0:
            errors.append(f"{key} must be 0 or more")
    if "recycles" in settings and int(settings["recycles"]) > 64:
        errors.append("recycles must be at most 64 (every recycle adds a copy of the features)")
    if "seed" in settings and not 0 <= int(settings["seed"]) < 1 << 32:
        errors.append("seed must be in 0..2**32-1 (numpy draws the synthetic features)")
    return errors


def check_seq_len(residues: int) -> str | None:
    if residues < 2:
        return "the AlphaFold 2 model needs at least 2 residues"
    return None
