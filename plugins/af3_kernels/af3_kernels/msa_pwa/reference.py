"""The PyTorch reference of MSA pair-weighted averaging: the ground truth of the tests, the benchmark's
``torch`` and ``compile`` implementations, and the float64 check of every case. Runs anywhere
torch runs, CPUs included; no triton."""
from __future__ import annotations

import torch

#: the logit a masked pair gets, in natural-log units (replaces the bias; Ligo adds 1e8*(mask-1));
#: the kernels use the same constant
MASKED_LOGIT = -1e9


def masked_logits(b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The pair bias with masked pairs replaced by a large negative logit (see function.py)."""
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


def reference_rows(v, b, g, mask, rows: int, seqs: int, dtype: torch.dtype) -> torch.Tensor:
    """The reference in ``dtype`` for output rows i < ``rows`` and MSA rows s < ``seqs`` only:
    rows i < k of the output depend only on rows i < k of the bias, so a float64 check of a slice
    stays small at any R. -> [B, seqs, rows, H*C]."""
    B, _, _, H, C = v.shape
    bias = b[:, :rows].to(dtype)
    logits = masked_logits(bias, None if mask is None else mask[..., :rows, :])  # mask [..., i, j]
    w = torch.softmax(logits, dim=2)
    y = torch.einsum("bijh,bsjhc->bsihc", w, v[:, :seqs].to(dtype))
    out = torch.sigmoid(g[:, :seqs, :rows].to(dtype)) * y
    return out.reshape(B, seqs, rows, H * C)
