"""From resolved settings to a ready model and synthetic features on the device: the runner's
``setup``.

Errors a user can fix are :class:`BuildError`; the runner turns them into CaseError. torch and
Protenix are imported inside the functions only.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from af3_protenix.plugin import DISTRIBUTION, installed
from af3core import CUEQUIVARIANCE_FIX, cuequivariance_error, cuequivariance_for_auto


class BuildError(Exception):
    """A setting this machine cannot honour (the runner reports it as a CaseError)."""


@dataclass
class Built:
    model: Any
    features: dict
    facts: dict[str, Any]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _nvcc() -> bool:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    return bool(shutil.which("nvcc") or (home and os.path.isfile(os.path.join(home, "bin", "nvcc"))))


def kernels_wanted(settings: Mapping[str, Any], device: str) -> dict[str, str]:
    """The kernels that run (triangle attention, triangle multiplication, LayerNorm) and why. Inference's
    defaults are cuEquivariance for both triangle ops and Protenix's fused LayerNorm extension; none
    runs on a CPU."""
    att, mul, ln = settings["tri_attention"], settings["tri_multiplicative"], settings["layernorm"]
    if device != "cuda":
        for key, value in (("tri_attention", att), ("tri_multiplicative", mul), ("layernorm", ln)):
            if value not in ("auto", "torch"):
                raise BuildError(f"{key}={value} needs a CUDA GPU")
        return {"tri_attention": "torch", "tri_multiplicative": "torch", "layernorm": "torch",
                "kernels_reason": "a CPU: torch everywhere (LAYERNORM_TYPE=torch)"}
    notes = []
    if "auto" in (att, mul):
        cueq_error = cuequivariance_for_auto(without="--set tri_attention=torch --set tri_multiplicative=torch")
    else:
        cueq_error = cuequivariance_error() if "cuequivariance" in (att, mul) else None
    cueq = cueq_error is None
    if att == "auto":
        att = "cuequivariance" if cueq else "torch"
        notes.append(f"tri_attention auto: {att}" + ("" if cueq else f" ({cueq_error})"))
    if mul == "auto":
        mul = "cuequivariance" if cueq else "torch"
        notes.append(f"tri_multiplicative auto: {mul}")
    if ln == "auto":
        ln = "fast" if _nvcc() else "torch"
        notes.append(f"layernorm auto: {ln}" + ("" if ln == "fast" else " (no nvcc to build the extension)"))
    if "cuequivariance" in (att, mul) and not cueq:
        raise BuildError(f"cuequivariance kernels do not load: {cueq_error}; fix: {CUEQUIVARIANCE_FIX}")
    if att == "triattention" and not _importable("triton"):
        raise BuildError("tri_attention=triattention needs triton (pip install triton)")
    if att == "deepspeed" and not (_importable("deepspeed") and os.environ.get("CUTLASS_PATH")):
        raise BuildError("tri_attention=deepspeed needs deepspeed and CUTLASS_PATH (a CUTLASS checkout), as "
                         "Protenix's inference asserts")
    if ln == "fast" and not _nvcc():
        raise BuildError("layernorm=fast JIT-compiles Protenix's CUDA extension: it needs nvcc (CUDA_HOME)")
    return {"tri_attention": att, "tri_multiplicative": mul, "layernorm": ln, "kernels_reason": "; ".join(notes)}


def _import_protenix(layernorm: str) -> None:
    """Import the model with the LayerNorm wanted: ``LAYERNORM_TYPE`` is read once, on import
    (``protenix.model.triangular.layers``); unset means the fused CUDA extension, compiled then."""
    wanted = "fast_layernorm" if layernorm == "fast" else "torch"
    if "protenix.model.triangular.layers" not in sys.modules:
        os.environ["LAYERNORM_TYPE"] = wanted
    from protenix.model.triangular import layers

    if bool(layers.fastln_is_installed) != (layernorm == "fast"):
        raise BuildError(f"layernorm={layernorm}: Protenix was already imported in this process with "
                         f"LAYERNORM_TYPE={'fast_layernorm' if layers.fastln_is_installed else 'torch'}")
    import protenix.model.protenix  # noqa: F401


def effective(settings: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The settings a mode runs: ``toy`` is ``full`` with 1 cycle, 2 steps, 1 sample."""
    if mode == "toy":
        return {**settings, "cycles": 1, "steps": 2, "samples": 1}
    return dict(settings)


def prepare(settings: Mapping[str, Any], mode: str, n_tokens: int, device: str) -> Built:
    settings = effective(settings, mode)
    kernels = kernels_wanted(settings, device)
    _import_protenix(kernels["layernorm"])
    import torch

    from af3_protenix import batch as batch_mod
    from af3_protenix import model as model_mod

    seed = int(settings["seed"])
    cfg = model_mod.model_config(settings, n_tokens, kernels["tri_attention"], kernels["tri_multiplicative"])
    model = model_mod.build_model(cfg, seed)  # sets torch.backends.cuda.matmul.allow_tf32 = enable_tf32
    if settings["weights"] == "random":
        model_mod.rerandomise_(model, seed=seed)
    zero, matrices = model_mod.zero_matrices(model)
    model = model.to(device)
    features = batch_mod.synthetic_features(n_tokens, int(settings["msa_rows"]), int(settings["templates"]),
                                            seed=seed)
    features = {k: v.to(device) for k, v in features.items()}
    facts = {
        "engine_source_version": f"{DISTRIBUTION} {installed() or '?'}",
        "model": settings["model"],
        "n_params": model_mod.n_params(model),
        "zero_weight_matrices": zero,
        "weight_matrices": matrices,
        "n_atoms": int(features["atom_to_token_idx"].shape[0]),
        **{k: kernels[k] for k in ("tri_attention", "tri_multiplicative", "layernorm", "kernels_reason")},
        "kernels": (f"attention {kernels['tri_attention']}, multiplication {kernels['tri_multiplicative']}, "
                    f"LayerNorm {kernels['layernorm']}"),  # af3core's summary column
        "dtype": settings["dtype"],
        "skip_amp_diffusion": bool(cfg.skip_amp.sample_diffusion),
        "skip_amp_confidence": bool(cfg.skip_amp.confidence_head),
        "tf32": bool(cfg.enable_tf32),
        "diffusion_cache": bool(cfg.enable_diffusion_shared_vars_cache),
        "efficient_fusion": bool(cfg.enable_efficient_fusion),
        "chunk_size": model._get_dynamic_chunk_size(n_tokens),
        "weights": settings["weights"],
        "torch_version": torch.__version__,
        **{k: int(settings[k]) for k in ("pairformer_blocks", "msa_blocks", "template_blocks", "diffusion_blocks",
                                         "atom_blocks", "confidence_blocks", "cycles", "msa_rows", "templates",
                                         "seed")},
        "steps": int(settings["steps"]) if mode != "trunk" else 0,
        "samples": int(settings["samples"]) if mode != "trunk" else 0,
    }
    return Built(model, features, facts)
