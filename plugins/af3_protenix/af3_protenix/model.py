"""Protenix's inference config, the plugin's settings applied to it, and the model built from it
quickly with random parameters.

The config is built as the package's inference entry points build it (protenix 2.0.0,
``runner.batch_inference.get_default_runner``): ``configs_base`` + ``{"data": data_configs}`` +
``inference_configs`` through ``protenix.config.parse_configs``, then ``model_configs[model]``, then
the loop counts, dtype and kernel choices. ``skip_amp`` follows ``runner.inference.
update_inference_configs`` for the token count (re-stated here: that module imports the data
pipeline). Only the keys below change.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Mapping

import torch
from torch import nn

#: The config keys each depth setting writes (paths under ``model``).
DEPTH_KEYS = {
    "pairformer_blocks": ("pairformer.n_blocks",),
    "msa_blocks": ("msa_module.n_blocks",),
    "template_blocks": ("template_embedder.n_blocks",),
    "diffusion_blocks": ("diffusion_module.transformer.n_blocks",),
    "atom_blocks": ("diffusion_module.atom_encoder.n_blocks", "diffusion_module.atom_decoder.n_blocks"),
    "confidence_blocks": ("confidence_head.n_blocks",),
}


def _set(cfg, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if leaf not in node:  # a renamed key would otherwise be added silently
        raise KeyError(f"Protenix's model config has no key {dotted!r}")
    node[leaf] = value


def skip_amp(model_name: str, n_tokens: int) -> tuple[bool, bool]:
    """(sample_diffusion, confidence_head) kept out of autocast: ``update_inference_configs``."""
    if n_tokens > 3840:
        return False, False
    if n_tokens > 2560:
        return True, False
    return True, model_name != "protenix-v2"


def model_config(settings: Mapping[str, Any], n_tokens: int, tri_attention: str, tri_multiplicative: str):
    """The inference config of ``settings["model"]`` with the plugin's settings applied."""
    from configs.configs_base import configs as configs_base
    from configs.configs_data import data_configs
    from configs.configs_inference import inference_configs
    from configs.configs_model_type import model_configs
    from ml_collections.config_dict import ConfigDict
    from protenix.config.config import parse_configs

    name = settings["model"]
    cfg = parse_configs(configs={**configs_base, "data": data_configs, **inference_configs, "model_name": name},
                        fill_required_with_null=True)
    cfg.update(ConfigDict(model_configs[name]))
    for setting, paths in DEPTH_KEYS.items():
        for path in paths:
            _set(cfg.model, path, int(settings[setting]))
    cfg.model.N_cycle = int(settings["cycles"])
    cfg.sample_diffusion.N_step = int(settings["steps"])
    cfg.sample_diffusion.N_sample = int(settings["samples"])
    cfg.dtype = settings["dtype"]
    cfg.enable_tf32 = bool(settings["tf32"])
    cfg.triangle_attention = tri_attention
    cfg.triangle_multiplicative = tri_multiplicative
    cfg.skip_amp.sample_diffusion, cfg.skip_amp.confidence_head = skip_amp(name, n_tokens)
    return cfg


@contextmanager
def fast_init():
    """Build with the package's initialisation, sampled by torch instead of scipy: the package draws
    every ``Linear`` weight with ``scipy.stats.truncnorm.rvs`` (about four minutes for the released
    model on two CPU cores); af3core's ``truncnorm_by_torch`` draws the same distribution with torch
    in seconds."""
    from protenix.model.triangular import layers  # defines trunc_normal_init_ (primitives imports it)

    from af3core import truncnorm_by_torch

    with truncnorm_by_torch(layers):
        yield


def build_model(cfg, seed: int) -> nn.Module:
    """``Protenix(cfg)`` on the CPU, eval mode, fp32 parameters drawn from ``seed``."""
    from protenix.model.protenix import Protenix

    torch.manual_seed(seed)
    with fast_init():
        model = Protenix(cfg)
    return model.eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def zero_matrices(model: nn.Module) -> tuple[int, int]:
    """(all-zero weight matrices, weight matrices): the package zero-initialises final projections."""
    mats = [p for p in model.parameters() if p.dim() >= 2]
    return sum(not bool(p.any()) for p in mats), len(mats)


@torch.no_grad()
def rerandomise_(model: nn.Module, seed: int = 0) -> None:
    """Every parameter random and non-zero at a sane scale: matrices N(0, 1/fan_in); vectors (norm
    scales, biases) keep their value plus N(0, 0.1^2) noise."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=gen).div_(math.sqrt(p.shape[-1])).to(p.device, p.dtype))
        else:
            p.add_((0.1 * torch.randn(p.shape, generator=gen)).to(p.device, p.dtype))
