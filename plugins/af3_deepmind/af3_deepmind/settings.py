"""The knobs of the DeepMind engine, its presets and their validation. Light: no jax import."""
from __future__ import annotations

from typing import Any, Mapping

from af3core import Setting

ATTENTION_CHOICES = ("auto", "triton", "cudnn", "xla", "xla_chunked")
#: Implementations that run on a CPU (tokamax's Triton and cuDNN kernels need a GPU).
CPU_ATTENTION = ("xla", "xla_chunked")
#: DeepMind's GlobalConfig.pair_transition_shard_spec: unsharded up to 2048 tokens, then 1024.
DEFAULT_SHARD_SPEC = "2048:none,none:1024"

# Defaults are DeepMind's own inference settings (run_alphafold.py, WholePdbPipeline.Config,
# model_config.GlobalConfig at c0f97ed); the ``small`` preset, used when none is named, shrinks
# the work for quick runs.
SETTINGS: dict[str, Setting] = {
    "recycles": Setting(10, "trunk recycles after the first pass (Model.Config.num_recycles)"),
    "diffusion_steps": Setting(200, "denoising steps per diffusion sample (heads.diffusion.eval.steps)"),
    "samples": Setting(5, "diffusion samples (heads.diffusion.eval.num_samples)"),
    "msa_rows": Setting(1024, "MSA rows the Evoformer uses after shuffling (evoformer.num_msa)"),
    "msa_pad_rows": Setting(16384, "rows the MSA features are padded to (pipeline msa_crop_size)"),
    "templates": Setting(4, "template slots, empty as when no template is found (pipeline max_templates)"),
    "attention": Setting(
        "auto", "flash_attention_implementation; auto = triton on GPU, xla on CPU", ATTENTION_CHOICES
    ),
    "bf16": Setting(True, "bfloat16 throughout (GlobalConfig.bfloat16 'all'); false = 'none' (fp32)"),
    "pair_transition_shard_spec": Setting(
        DEFAULT_SHARD_SPEC,
        "GlobalConfig.pair_transition_shard_spec as BOUND:SIZE,...; none = unbounded/unsharded",
    ),
    "preallocate": Setting(
        False, "let XLA preallocate most GPU memory (DeepMind's Docker does); NVML then shows the pool"
    ),
    "seed": Setting(0, "seed for the synthetic input, the random parameters and the model's RNG key"),
}

PRESETS: dict[str, dict[str, Any]] = {
    "small": {"recycles": 1, "diffusion_steps": 4, "samples": 1, "msa_rows": 16, "msa_pad_rows": 16, "templates": 0},
    # Spelled out although equal to the defaults, so the preset still means DeepMind's settings if
    # a default ever changes.
    "default": {
        "recycles": 10, "diffusion_steps": 200, "samples": 5, "msa_rows": 1024, "msa_pad_rows": 16384,
        "templates": 4, "attention": "auto", "bf16": True, "pair_transition_shard_spec": DEFAULT_SHARD_SPEC,
    },
}


def parse_shard_spec(text: str) -> tuple[tuple[int | None, int | None], ...]:
    """``"2048:none,none:1024"`` -> ``((2048, None), (None, 1024))``.

    Each entry is ``num_tokens_upper_bound:shard_size`` as in DeepMind's docs/performance.md.
    """
    def one(x: str) -> int | None:
        x = x.strip().lower()
        return None if x in ("none", "") else int(x)

    entries = []
    for part in str(text).split(","):
        bound, sep, size = part.partition(":")
        if not sep:
            raise ValueError(f"pair_transition_shard_spec entry {part!r} is not BOUND:SIZE")
        entries.append((one(bound), one(size)))
    if entries[-1][0] is not None:
        raise ValueError("pair_transition_shard_spec must end with an unbounded entry (none:SIZE)")
    return tuple(entries)


def resolve_attention(choice: str, device_type: str) -> str:
    if choice == "auto":
        return "triton" if device_type == "cuda" else "xla"
    return choice


def validate(settings: Mapping[str, Any], device_type: str = "cpu") -> list[str]:
    """Plan-time checks of the merged settings for a device type (the host calls this before any
    worker starts)."""
    errors = []
    attention = resolve_attention(str(settings.get("attention", "auto")), device_type)
    if device_type != "cuda" and attention not in CPU_ATTENTION:
        errors.append(f"attention={attention} needs a CUDA GPU; on {device_type} use one of {', '.join(CPU_ATTENTION)}")
    for key in ("diffusion_steps", "samples", "msa_rows", "msa_pad_rows"):
        if key in settings and int(settings[key]) < 1:
            errors.append(f"{key} must be at least 1")
    for key in ("recycles", "templates"):
        if key in settings and int(settings[key]) < 0:
            errors.append(f"{key} must be 0 or more")
    if "seed" in settings and not 0 <= int(settings["seed"]) < 1 << 32:
        errors.append("seed must be in 0..2**32-1 (numpy's RandomState draws the synthetic batch)")
    if int(settings.get("msa_rows", 0)) > int(settings.get("msa_pad_rows", 1 << 30)):
        errors.append("msa_rows (rows used) cannot exceed msa_pad_rows (rows padded to)")
    try:
        parse_shard_spec(settings.get("pair_transition_shard_spec", DEFAULT_SHARD_SPEC))
    except ValueError as exc:
        errors.append(str(exc))
    return errors


def check_seq_len(tokens: int) -> str | None:
    # Atom cross-attention slides 128-key windows over the flat atoms (24 slots per token).
    if tokens < 8:
        return "the DeepMind model needs at least 8 tokens (atom attention uses 128-atom key windows)"
    return None
