"""From resolved settings to a ready model and synthetic batch on the device: the runner's ``setup``.

Errors a user can fix are :class:`BuildError`; the runner turns them into CaseError. torch and
OpenFold3 are imported inside the functions only.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Mapping

from af3_openfold3.plugin import DISTRIBUTION, installed
from af3core import CUEQUIVARIANCE_FIX


class BuildError(Exception):
    """A setting this machine cannot honour (the runner reports it as a CaseError)."""


@dataclass
class Built:
    model: Any
    batch: dict
    facts: dict[str, Any]


def _package_kernels() -> tuple[bool, bool]:
    """(Triton kernels, cuEquivariance) as the package itself found them on import. OpenFold3 imports
    cuEquivariance's ops whenever cuequivariance is installed, so a broken install stops the model
    itself from importing: that gets a fix rather than a traceback."""
    try:
        from openfold3.core.model.primitives import attention
    except ImportError as exc:
        if "cuequivariance" not in "".join(traceback.format_exception(exc)):
            raise
        raise BuildError(f"OpenFold3 imports cuEquivariance when it is installed, and it does not load here "
                         f"({type(exc).__name__}: {exc}); fix: install what it names (platformdirs, for one), or "
                         "pip uninstall cuequivariance-torch") from None

    return bool(getattr(attention, "TRITON_AVAILABLE", False)), bool(getattr(attention, "cueq_is_installed", False))


def kernels_wanted(setting: str, device: str) -> tuple[str, str]:
    """Which triangle kernels run (``triton``, ``cueq`` or ``off``), and why. Inference's config turns
    OpenFold3's Triton kernels on; they need a GPU (Triton compiles for one)."""
    if setting == "off":
        return "off", "off"
    if device != "cuda":
        if setting != "auto":
            raise BuildError(f"kernels={setting} needs a CUDA GPU")
        return "off", "auto: off (a CPU: the Triton kernels need a GPU)"
    have_triton, have_cueq = _package_kernels()
    if setting == "triton":
        if not have_triton:
            raise BuildError("kernels=triton: OpenFold3's Triton kernels do not import here (pip install triton)")
        return "triton", "triton"
    if setting == "cueq":
        if not have_cueq:
            raise BuildError(f"kernels=cueq needs cuEquivariance: {CUEQUIVARIANCE_FIX}")
        return "cueq", "cueq"
    if have_triton:
        return "triton", "auto: triton (a CUDA GPU, the package's Triton kernels import: inference's config)"
    return "off", "auto: off (the package's Triton kernels do not import here)"


def effective(settings: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The settings a mode runs: ``toy`` is ``full`` with 0 recycles, 2 steps, 1 sample."""
    if mode == "toy":
        return {**settings, "recycles": 0, "steps": 2, "samples": 1}
    return dict(settings)


def prepare(settings: Mapping[str, Any], mode: str, n_tokens: int, device: str) -> Built:
    import torch

    from af3_openfold3 import batch as batch_mod
    from af3_openfold3 import model as model_mod

    settings = effective(settings, mode)
    kernels, kernels_note = kernels_wanted(settings["kernels"], device)
    seed = int(settings["seed"])
    # as run_openfold predict does with --use_tf32 (its default), for the whole process
    torch.set_float32_matmul_precision("high" if settings["tf32"] else "highest")
    cfg = model_mod.model_config(settings, kernels)
    model = model_mod.build_model(cfg, seed)
    if settings["weights"] == "random":
        model_mod.rerandomise_(model, seed=seed)
    zero, matrices = model_mod.zero_matrices(model)
    model = model.to(device)
    batch = batch_mod.synthetic_batch(n_tokens, int(settings["msa_rows"]), int(settings["templates"]), seed=seed)
    batch = {k: v.to(device) for k, v in batch.items()}
    facts = {
        "engine_source_version": f"{DISTRIBUTION} {installed() or '?'}",
        "n_params": model_mod.n_params(model),
        "zero_weight_matrices": zero,
        "weight_matrices": matrices,
        "n_atoms": int(batch["atom_mask"].shape[-1]),
        "kernels": kernels,
        "kernels_reason": kernels_note,
        "chunk_size": cfg.settings.memory.eval.chunk_size,
        "dtype": settings["dtype"],
        "matmul_precision": torch.get_float32_matmul_precision(),
        "weights": settings["weights"],
        "torch_version": torch.__version__,
        **{k: int(settings[k]) for k in ("pairformer_blocks", "msa_blocks", "template_blocks", "diffusion_blocks",
                                         "atom_blocks", "confidence_blocks", "recycles", "msa_rows", "templates",
                                         "seed")},
        "msa_rows_used": min(int(settings["msa_rows"]), int(cfg.architecture.msa.msa_module_embedder
                                                             .max_subsampled_all_msa)),
        "steps": int(settings["steps"]) if mode != "trunk" else 0,
        "samples": int(settings["samples"]) if mode != "trunk" else 0,
    }
    return Built(model, batch, facts)
