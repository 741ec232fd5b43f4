"""One inference pass, and the outputs of it that must be finite (the runner's ``step``)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from af3_ligo.modes import TrunkCapture


def autocast_for(dtype: str, device: str):
    """``bf16``: the repo's own GPU precision, Lightning's ``bf16-mixed`` (autocast, fp32 weights)."""
    if dtype == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return torch.autocast(device_type=device.split(":")[0], enabled=False)


def run_pass(model: nn.Module, batch: dict, dtype: str, device: str) -> dict[str, Any]:
    """One inference pass: ``forward(train=False)`` under no_grad (and autocast for bf16)."""
    with torch.no_grad(), autocast_for(dtype, device):
        return model(batch, train=False)


def outputs_of(result: dict[str, torch.Tensor], capture: TrunkCapture | None) -> dict[str, torch.Tensor]:
    """The tensors a pass produced that should be finite."""
    if capture is not None:
        return dict(capture.outputs, distogram_logits=result["distogram_logits"])
    return {k: result[k] for k in ("sampled_positions", "distogram_logits")}

