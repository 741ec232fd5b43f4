"""What a pass runs in each mode, set on the model instance once, before the first pass.

Every mode goes through the model's own ``forward(batch, train=False)`` under ``torch.no_grad()``:
- ``full``: unmodified forward: input embedding, ``cycles`` trunk passes (MSA module + Pairformer),
  diffusion sampling, distogram head. The forward hard-codes 200 steps and 1 sample; the sampler is
  wrapped on the instance so ``diffusion_steps`` and ``samples`` reach it (same values by default).
- ``trunk``: the same forward with the sampler replaced on the instance by a function that keeps
  the trunk outputs it is handed (s, z) and samples nothing. What remains after the trunk is the
  distogram head, one linear layer on z (well under 1% of a pass).
- ``toy``: ``full`` with 1 cycle, 2 diffusion steps (1 denoiser call), 1 sample: every component
  once, for smoke tests; widths and depths are the preset's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class TrunkCapture:
    """Stands in for ``diffusion_module.sample`` in trunk mode: keeps (s, z), samples nothing."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(self, *, features, s_inputs, s_trunk, z_trunk, **_ignored):
        self.outputs = {"s_trunk": s_trunk, "z_trunk": z_trunk}
        bs = s_trunk.shape[0]
        return s_trunk.new_zeros((bs, 0, 3))  # no coordinates: nothing was sampled


def configure_mode(model: nn.Module, mode: str, diffusion_steps: int, samples: int) -> TrunkCapture | None:
    """Point the instance's sampler at what ``mode`` runs. Returns the capture in trunk mode."""
    dm = model.diffusion_module
    original: Callable = type(dm).sample.__get__(dm)  # the class's method, even if set before
    if mode == "trunk":
        capture = TrunkCapture()
        dm.sample = capture
        return capture
    steps, n_samples = (2, 1) if mode == "toy" else (diffusion_steps, samples)

    def sample(*args, **kwargs):
        # forward(train=False) passes n_steps=200, samples_per_trunk=1: replace with the settings
        kwargs["n_steps"], kwargs["samples_per_trunk"] = steps, n_samples
        return original(*args, **kwargs)

    dm.sample = sample
    return None
