"""Ligo's ``AlphaFold3`` built from its config, quickly, with optionally re-randomised parameters."""
from __future__ import annotations

import math
import sys

import torch
from torch import nn

from af3core import truncnorm_by_torch


def build_model(model_module, cfg, device: str) -> nn.Module:
    """``AlphaFold3(cfg)`` on ``device`` in eval mode, fp32 weights."""
    torch.set_float32_matmul_precision(cfg["globals"]["matmul_precision"])  # as the repo's wrapper does
    # primitives.trunc_normal_init_ samples each weight with scipy on the CPU (about 15 of the 17 s
    # the paper model took to build); the same distribution drawn by torch takes well under a second
    with truncnorm_by_torch(sys.modules["src.models.components.primitives"]):
        model = model_module.AlphaFold3(cfg)
    return model.to(device).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def rerandomise_(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter a random, non-zero value at a sane scale.

    The repo zero-initialises its final projections (``init='final'``), so at construction many
    residual branches contribute exactly zero: an output comparison between two implementations of
    one of those branches would pass vacuously. Matrices get N(0, 1/fan_in); vectors (norm scales,
    biases) keep their value plus N(0, 0.1^2) noise, so LayerNorm scales stay near 1.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            fan_in = p.shape[-1]
            noise = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
            p.copy_(noise.to(p.device, p.dtype))
        else:
            p.add_((0.1 * torch.randn(p.shape, generator=gen)).to(p.device, p.dtype))
