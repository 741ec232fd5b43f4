"""PyTorch references for the kernels: the ground truth of the tests and the "torch"/"compile"
implementations of the benchmark. They run anywhere torch runs, CPUs included."""
from __future__ import annotations

import torch

from af3_kernels.ops.msa_pwa_constants import MASKED_LOGIT


def masked_logits(b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The pair bias with masked pairs replaced by a large negative logit (see ops/msa_pwa.py)."""
    if mask is None:
        return b
    keep = torch.broadcast_to(mask != 0, b.shape[:3])[..., None]
    # -1e9 overflows fp16 to -inf (a fully masked row would become NaN): clamp to the dtype's range;
    # any value this far below the others gives the same softmax.
    fill = max(MASKED_LOGIT, torch.finfo(b.dtype).min)
    return b.masked_fill(~keep, fill)


def msa_pwa_reference(v: torch.Tensor, b: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None = None):
    """AF3 Algorithm 10 core: softmax over j of the bias, weighted sum of v, sigmoid gate.

    v, g [B,S,R,H,C]; b [B,R,R,H]; mask broadcastable to [B,R,R] -> [B,S,R,H*C]. Memory is
    O(R*R*H + S*R*H*C): unlike Ligo's naive module it never expands v to [B,S,R,R,H,C].
    """
    B, S, R, H, C = v.shape
    w = torch.softmax(masked_logits(b, mask), dim=2)  # over j
    y = torch.einsum("bijh,bsjhc->bsihc", w, v)
    return (torch.sigmoid(g) * y).reshape(B, S, R, H * C)
