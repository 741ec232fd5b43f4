"""From resolved settings to a ready model and synthetic batch on the device: the runner's ``setup``.

Errors a user can fix are :class:`BuildError`; the runner turns them into CaseError. torch and
Boltz are imported inside :func:`prepare` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from af3_boltz.plugin import installed


class BuildError(Exception):
    """A setting this machine cannot honour (the runner reports it as a CaseError)."""


@dataclass
class Built:
    model: Any
    batch: dict
    facts: dict[str, Any]


def kernels_wanted(setting: str, device: str) -> tuple[bool, str]:
    """Whether cuEquivariance's kernels run, and why: ``boltz predict`` turns them on for a GPU of
    compute capability 8 or more; Boltz has no fallback when the package is missing or does not load."""
    import torch

    from af3core import CUEQUIVARIANCE_FIX, cuequivariance_error, cuequivariance_for_auto

    if setting == "off":
        return False, "off"
    capable = device == "cuda" and torch.cuda.get_device_capability()[0] >= 8
    if setting == "on":
        if not capable:
            raise BuildError("use_kernels=on needs a CUDA GPU of compute capability 8 or more")
        error = cuequivariance_error()
        if error:
            raise BuildError(f"use_kernels=on needs cuEquivariance: {error}; fix: {CUEQUIVARIANCE_FIX}")
        return True, "on"
    if not capable:
        return False, "auto: off (no GPU of compute capability 8+)"
    error = cuequivariance_for_auto(without="--set use_kernels=off")
    if error:
        return False, f"auto: off ({error})"
    return True, "auto: on (GPU of compute capability 8+, cuEquivariance loads)"


def prepare(settings: Mapping[str, Any], mode: str, n_tokens: int, device: str) -> Built:
    import torch

    from af3_boltz import batch as batch_mod
    from af3_boltz import model as model_mod

    use_kernels, kernels_note = kernels_wanted(settings["use_kernels"], device)
    if mode == "toy":  # every component once, at the preset's widths
        settings = {**settings, "recycles": 0, "steps": 2, "samples": 1}
    model = model_mod.build_model(settings, use_kernels).to(device)
    batch = batch_mod.synthetic_batch(n_tokens, int(settings["msa_rows"]), seed=int(settings["seed"]))
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    distribution, version = installed() or ("boltz", "?")
    facts = {
        "engine_source_version": f"{distribution} {version}",
        "boltz_distribution": distribution,
        "n_params": model_mod.n_params(model),
        "n_atoms": int(batch["atom_pad_mask"].shape[-1]),
        "use_kernels": use_kernels,
        "use_kernels_reason": kernels_note,
        "kernels": "cuequivariance" if use_kernels else "torch",  # af3core's summary column
        "dtype": settings["dtype"],
        "torch_version": torch.__version__,
        **{k: settings[k] for k in ("pairformer_blocks", "recycles", "msa_rows", "confidence", "templates")},
        "steps": int(settings["steps"]) if mode != "trunk" else 0,
        "samples": int(settings["samples"]) if mode != "trunk" else 0,
    }
    return Built(model, batch, facts)
