"""The PyTorch reference of Evoformer attention: plain softmax attention, for every variant. The
ground truth of the tests, the benchmark's ``torch`` and ``compile`` implementations, and the float64
check of every case. Runs anywhere torch runs, CPUs included; no triton.

Every variant is the same operation on a *rows view* ``[B, R, L, H, D]`` of its tensors: R rows
(sharing one bias) each attend over L positions. The views are strided views, never copies:

=========  ==================  ========  ========  ==================  ================
variant    q, k, v, gate, out  R         L         bias                mask (1 = keep)
=========  ==================  ========  ========  ==================  ================
tri_start  [B, N, N, H, D]     N (i)     N (j)     [B, H, N, N]        [B, N, N]  (i, j)
tri_end    [B, N, N, H, D]     N (j)     N (i)     [B, H, N, N]        [B, N, N]  (i, j)
msa_row    [B, S, N, H, D]     S         N         [B, H, N, N]        [B, S, N]
msa_col    [B, S, N, H, D]     N         S         none (or [B,H,S,S]) [B, S, N]
single     [B, N, H, D]        1         N         [B, H, N, N]        [B, N]
=========  ==================  ========  ========  ==================  ================

tri_end is tri_start on the pair tensor transposed (dims 1 and 2 of q, k, v, gate, out and mask
swapped; the bias is the ending node's own [B, H, N, N], indexed [query, key]); msa_col is msa_row
transposed likewise. The rows view of those two is ``x.transpose(1, 2)``.

    out[b,r,i,h] = sum_j softmax_j(scale * q[b,r,i,h] . k[b,r,j,h] + bias[b,h,i,j] | mask[b,r,j]) v[b,r,j,h]
    (times sigmoid(gate[b,r,i,h]) when a gate is given)

Mask semantics: ``mask[b, r, j] == 0`` removes key j from row r's softmax (its weight is exactly 0,
its logit gets no gradient). A *fully masked row* (every key of row r masked) gives an output of
exactly 0 (gated or not) and passes no gradient to anything: the convention of FlashAttention
for empty rows, and what padding rows need (no NaN, nothing leaks from padding into real tokens).
(An additive ``-1e9`` mask, as OpenFold uses, instead averages such a row roughly uniformly in
fp32; rows with at least one kept key agree.)
"""
from __future__ import annotations

import torch

VARIANTS = ("tri_start", "tri_end", "msa_row", "msa_col", "single")
#: variants whose rows view is the tensor with dims 1 and 2 swapped
TRANSPOSED = ("tri_end", "msa_col")


def rows_view(x: torch.Tensor | None, variant: str) -> torch.Tensor | None:
    """q, k, v, gate or out in the variant's layout -> the [B, R, L, H, D] rows view (no copy)."""
    if x is None:
        return None
    if variant in TRANSPOSED:
        return x.transpose(1, 2)
    if variant == "single":
        return x.unsqueeze(1)
    if variant in VARIANTS:
        return x
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")


def from_rows_view(x: torch.Tensor, variant: str) -> torch.Tensor:
    """The inverse of rows_view: a [B, R, L, H, D] tensor back in the variant's layout (a view)."""
    if variant in TRANSPOSED:
        return x.transpose(1, 2)
    if variant == "single":
        return x.squeeze(1)
    return x


def mask_rows_view(mask: torch.Tensor | None, variant: str, shape) -> torch.Tensor | None:
    """A mask broadcastable to the variant's mask shape (``q.shape[:-2]``) -> a bool [B, R, L] view
    (stride 0 where broadcast). Nonzero = keep."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        mask = mask != 0
    mask = torch.broadcast_to(mask, tuple(shape))
    if variant in TRANSPOSED:
        return mask.transpose(1, 2)
    if variant == "single":
        return mask.unsqueeze(1)
    return mask


def _attend(q, k, v, bias, keep, gate, scale):
    """Attention on rows views: q, k, v, gate [B, R, L, H, D]; bias [B, H, L, L]; keep [B, R, L]."""
    logits = torch.einsum("brihd,brjhd->brhij", q, k) * scale
    if bias is not None:
        logits = logits + bias[:, None]
    if keep is not None:
        logits = logits.masked_fill(~keep[:, :, None, None, :], float("-inf"))
        # A fully masked row: constant logits (finite softmax, no gradient), then weight 0.
        alive = keep.any(-1)[:, :, None, None, None]
        logits = torch.where(alive, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
        w = torch.softmax(logits, dim=-1) * alive
    else:
        w = torch.softmax(logits, dim=-1)
    out = torch.einsum("brhij,brjhd->brihd", w, v)
    if gate is not None:
        out = out * torch.sigmoid(gate)
    return out


def evo_attention_reference(q, k, v, bias=None, mask=None, gate=None, variant: str = "tri_start",
                            scale: float | None = None) -> torch.Tensor:
    """Plain softmax attention in the inputs' dtype (see the module docstring for shapes); returns
    out in q's layout (a view of a [B, R, L, H, D] result). Memory O(B*R*H*L*L)."""
    qv, kv, vv, gv = (rows_view(x, variant) for x in (q, k, v, gate))
    scale = qv.shape[-1] ** -0.5 if scale is None else scale
    keep = mask_rows_view(mask, variant, q.shape[:-2])
    return from_rows_view(_attend(qv, kv, vv, bias, keep, gv, scale), variant)


def reference_rows(q, k, v, bias, mask, gate, variant: str, rows: int, dtype: torch.dtype,
                   scale: float | None = None) -> torch.Tensor:
    """The reference in ``dtype`` for rows r < ``rows`` of the rows view only (each row depends on
    its own q, k, v, mask and the shared bias), so a float64 check stays small at any size.
    -> [B, rows, L, H, D] (rows view)."""
    qv, kv, vv, gv = (rows_view(x, variant) for x in (q, k, v, gate))
    scale = qv.shape[-1] ** -0.5 if scale is None else scale
    keep = mask_rows_view(mask, variant, q.shape[:-2])
    cut = [None if x is None else x[:, :rows].to(dtype) for x in (qv, kv, vv, gv)]
    return _attend(cut[0], cut[1], cut[2], None if bias is None else bias.to(dtype),
                   None if keep is None else keep[:, :rows], cut[3], scale)
