"""OpenFold3's model config for inference, the plugin's settings applied to it, and the model built
from it quickly with random parameters.

The config is the package's own: ``OF3ProjectEntry().get_model_config_with_presets(["predict"])``
(openfold3 0.5.0, ``projects/of3_all_atom/project_entry.py``; what ``ExperimentRunner`` builds for
``run_openfold predict`` before a user's model update). Only the keys below change.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Mapping

import torch
from torch import nn

#: The config keys each depth setting writes (paths under ``architecture``).
DEPTH_KEYS = {
    "pairformer_blocks": ("pairformer.no_blocks",),
    "msa_blocks": ("msa.msa_module.no_blocks",),
    "template_blocks": ("template.template_pair_stack.no_blocks",),
    "diffusion_blocks": ("diffusion_module.diffusion_transformer.no_blocks",),
    "atom_blocks": ("input_embedder.atom_attn_enc.no_blocks", "diffusion_module.atom_attn_enc.no_blocks",
                    "diffusion_module.atom_attn_dec.no_blocks"),
    "confidence_blocks": ("heads.pairformer_embedding.pairformer.no_blocks",),
}


def _set(cfg, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if leaf not in node:  # the config is locked: a renamed key would raise a bare KeyError
        raise KeyError(f"OpenFold3's model config has no key {dotted!r}")
    node[leaf] = value


def model_config(settings: Mapping[str, Any], kernels: str):
    """The inference config (``predict`` preset) with the plugin's settings: depths, loop counts,
    the triangle kernels (``kernels``: resolved, ``triton``, ``cueq`` or ``off``), chunking."""
    from openfold3.projects.of3_all_atom.project_entry import OF3ProjectEntry

    cfg = OF3ProjectEntry().get_model_config_with_presets(["predict"])
    arch = cfg.architecture
    for setting, paths in DEPTH_KEYS.items():
        for path in paths:
            _set(arch, path, int(settings[setting]))
    arch.shared.num_recycles = int(settings["recycles"])
    arch.shared.diffusion.no_full_rollout_steps = int(settings["steps"])
    arch.shared.diffusion.no_full_rollout_samples = int(settings["samples"])
    mem = cfg.settings.memory.eval
    mem.use_triton_triangle_kernels = kernels == "triton"
    mem.use_cueq_triangle_kernels = kernels == "cueq"
    mem.use_deepspeed_evo_attention = False
    chunk = int(settings["chunk_size"])
    mem.chunk_size = chunk if chunk > 0 else None
    return cfg


@contextmanager
def fast_init():
    """Build with the package's initialisation, sampled by torch instead of scipy.

    ``initialization.trunc_normal_init_`` (LeCun and He init of every ``Linear``) samples each
    weight with ``scipy.stats.truncnorm.rvs`` on the CPU: about a minute for the released model on
    two cores; af3core's ``truncnorm_by_torch`` draws the same distribution with torch.
    ``Linear.__init__`` also overwrites every weight and bias that ``nn.Linear``'s own
    ``reset_parameters`` has just drawn, so that draw is skipped for the package's ``Linear``. Both
    originals are restored afterwards.
    """
    from openfold3.core.model.primitives import initialization as init
    from openfold3.core.model.primitives import linear

    from af3core import truncnorm_by_torch

    original_reset = linear.Linear.__dict__.get("reset_parameters")

    def reset_parameters(self):
        if type(self) is not linear.Linear:  # a subclass may rely on it
            nn.Linear.reset_parameters(self)

    linear.Linear.reset_parameters = reset_parameters
    try:
        with truncnorm_by_torch(init):
            yield
    finally:
        if original_reset is None:
            del linear.Linear.reset_parameters
        else:
            linear.Linear.reset_parameters = original_reset


def build_model(cfg, seed: int) -> nn.Module:
    """``OpenFold3(cfg)`` on the CPU, eval mode, fp32 parameters drawn from ``seed``."""
    from openfold3.projects.of3_all_atom.model import OpenFold3

    torch.manual_seed(seed)
    with fast_init():
        model = OpenFold3(cfg)
    return model.eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def zero_matrices(model: nn.Module) -> tuple[int, int]:
    """(all-zero weight matrices, weight matrices): the package zero-initialises final projections."""
    mats = [p for p in model.parameters() if p.dim() >= 2]
    return sum(not bool(p.any()) for p in mats), len(mats)


@torch.no_grad()
def rerandomise_(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter a random, non-zero value at a sane scale.

    The package zero-initialises its final projections and gates (``init='final'``/``'gating'``),
    so at construction many residual branches contribute exactly zero. Matrices get
    N(0, 1/fan_in); vectors (norm scales, biases) keep their value plus N(0, 0.1^2) noise, so
    LayerNorm scales stay near 1.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=gen).div_(math.sqrt(p.shape[-1])).to(p.device, p.dtype))
        else:
            p.add_((0.1 * torch.randn(p.shape, generator=gen)).to(p.device, p.dtype))
