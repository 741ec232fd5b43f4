"""The public implementations the fused kernel is measured beside, each fed its own documented
layout. Worker only (imports torch). Every adapter takes the case's canonical inputs (q, k, v,
bias, mask, gate in the variant's layout, reference.py) and returns an
:class:`~af3_kernels.kernel.Implementation` whose ``inputs`` are copies in the anchor's layout,
made here, untimed; ``to_rows`` (kept on the case) maps its output back to the [B, R, L, H, D]
rows view for the accuracy check. Only what the anchor's API itself needs is done inside the
timed call (building SDPA's attn_mask from the bias; the output gate, which no anchor fuses).

sdpa     torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask) on [B*R, H, L, D]
         (its documented (N, ..., L, E) layout, 4-D so its fused backends apply). attn_mask, built
         in the timed call from the bias leaf: the bias itself [1, H, L, L] (broadcast over the
         B*R rows) for B = 1 without a mask; else bias + the mask's -1e9 term, materialised as
         [B*R, H, L, L] (N^3*H elements for triangle attention). PyTorch picks the backend.
trifast  trifast.triangle_attention(q, k, v, b, mask): q, k, v [B, H, R, L, D] (row i attends over
         its L positions: trifast's "b h i j d"), b [B, H, L, L], mask bool [B, R, L] with
         True = *masked out* (trifast's convention; all False without a mask). Scale D**-0.5 fixed.
cueq     cuequivariance_torch.triangle_attention(q, k, v, bias, mask, scale): q, k, v
         [B, R, H, L, D] (its (B, N, H, Q, D)), bias [B, 1, H, L, L] (a view of the bias leaf; cast
         to fp32 inside), mask bool [B, R, 1, 1, L] with True = keep, or None.

Mask semantics differ only for fully masked rows: the anchors' -1e9 / finfo.min logits average
such a row (roughly) uniformly, this package's kernel and reference give 0. The random masks of
the benchmark (80% kept) leave no row fully masked at the sizes measured.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Callable

import torch

from af3core import CaseError, cuequivariance_error

from af3_kernels.evo_attn.reference import mask_rows_view, rows_view
from af3_kernels.kernel import Implementation, Inputs


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _leaf(x: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    """A detached copy (already in the anchor's layout) that requires grad as ``like`` did."""
    if x is None:
        return None
    return x.detach().contiguous().requires_grad_(like is not None and like.requires_grad)


def _split(canon: Inputs, variant: str):
    q, k, v, bias, mask, g = canon.args
    keep = mask_rows_view(mask, variant, q.shape[:-2]) if mask is not None else None
    rows = [rows_view(x, variant) for x in (q, k, v, g, canon.dout)]
    return q, k, v, bias, g, keep, rows


def _with_grads(args: tuple, fn: Callable, facts: dict, dout, to_rows) -> tuple[Implementation, Callable]:
    grad_args = tuple(x for x in args if isinstance(x, torch.Tensor) and x.requires_grad)
    impl = Implementation(fn, facts, inputs=Inputs(args=args, grad_args=grad_args, dout=dout))
    return impl, to_rows


def masked_logit(dtype: torch.dtype) -> float:
    """The additive logit of a masked key for the anchors that take one: -1e9 (OpenFold's), halved
    dtype minimum where -1e9 does not fit (fp16)."""
    return max(-1e9, torch.finfo(dtype).min / 2)


def sdpa(canon: Inputs, variant: str) -> tuple[Implementation, Callable]:
    import torch.nn.functional as F

    q, k, v, bias, g, keep, (qv, kv, vv, gv, dv) = _split(canon, variant)
    B, R, L, H, D = qv.shape

    def to_sdpa(x, like):
        return None if x is None else _leaf(x.permute(0, 1, 3, 2, 4).reshape(B * R, H, L, D), like)

    qs, ks, vs, gs = to_sdpa(qv, q), to_sdpa(kv, k), to_sdpa(vv, v), to_sdpa(gv, g)
    dout = None if dv is None else to_sdpa(dv, None)
    mterm = None
    if keep is not None:
        mterm = torch.zeros((B, R, 1, 1, L), dtype=q.dtype, device=q.device)
        mterm.masked_fill_(~keep[:, :, None, None, :], masked_logit(q.dtype))

    def sdpa_fn(qs, ks, vs, bias, gs):
        if bias is not None and mterm is None and B == 1:
            attn = bias  # [1, H, L, L]: broadcast over the B*R rows, nothing materialised
        elif bias is not None:
            full = bias[:, None] if mterm is None else bias[:, None] + mterm
            attn = full.expand(B, R, H, L, L).reshape(B * R, H, L, L)
        else:
            attn = None if mterm is None else mterm.reshape(B * R, 1, 1, L)
        out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=attn)
        return out if gs is None else out * torch.sigmoid(gs)

    facts = {"anchor_layout": "q, k, v [B*R, H, L, D] contiguous copies (untimed); attn_mask from the bias in "
                              "the timed call: " + ("the bias [1,H,L,L] broadcast" if mterm is None and B == 1
                                                    else "[B*R,H,L,L] materialised (bias + mask term)"),
             "sdpa_backends": {"flash": torch.backends.cuda.flash_sdp_enabled(),
                               "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                               "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
                               "math": torch.backends.cuda.math_sdp_enabled()}}

    def to_rows(out):
        return out.reshape(B, R, H, L, D).permute(0, 1, 3, 2, 4)

    return _with_grads((qs, ks, vs, bias, gs), sdpa_fn, facts, dout, to_rows)


def trifast(canon: Inputs, variant: str) -> tuple[Implementation, Callable]:
    try:
        from trifast import triangle_attention
    except ImportError as exc:
        raise CaseError(f"impl=trifast: cannot import trifast ({exc}); fix: pip install trifast") from None
    q, k, v, bias, g, keep, (qv, kv, vv, gv, dv) = _split(canon, variant)
    B, R, L, H, D = qv.shape

    def to_tf(x, like):  # rows view [B, R, L, H, D] -> trifast's [B, H, R, L, D]
        return None if x is None else _leaf(x.permute(0, 3, 1, 2, 4), like)

    qt, kt, vt, gt = to_tf(qv, q), to_tf(kv, k), to_tf(vv, v), to_tf(gv, g)
    dout = None if dv is None else to_tf(dv, None)
    # trifast masks where its mask is True
    masked = (~keep).contiguous() if keep is not None else torch.zeros((B, R, L), dtype=torch.bool, device=q.device)

    def trifast_fn(qt, kt, vt, bias, gt):
        out = triangle_attention(qt, kt, vt, bias, masked)
        return out if gt is None else out * torch.sigmoid(gt)

    facts = {"anchor_layout": "q, k, v [B, H, R, L, D] contiguous copies (untimed), bias [B, H, L, L], mask "
                              "bool [B, R, L] True = masked out (untimed)",
             "trifast_version": _version("trifast"),
             "anchor_note": "trifast autotunes on its first call (the untimed compile call) and caches to disk"}

    def to_rows(out):
        return out.permute(0, 2, 3, 1, 4)

    return _with_grads((qt, kt, vt, bias, gt), trifast_fn, facts, dout, to_rows)


def cueq(canon: Inputs, variant: str) -> tuple[Implementation, Callable]:
    error = cuequivariance_error()
    if error:
        raise CaseError(f"impl=cueq: cuEquivariance does not load: {error}; fix: pip install "
                        "'af3-kernels[anchors]' (cuEquivariance with its dependencies, platformdirs among them)")
    cuet = importlib.import_module("cuequivariance_torch")
    q, k, v, bias, g, keep, (qv, kv, vv, gv, dv) = _split(canon, variant)
    B, R, L, H, D = qv.shape
    scale = D ** -0.5

    def to_cq(x, like):  # rows view [B, R, L, H, D] -> cuEquivariance's [B, N, H, Q, D]
        return None if x is None else _leaf(x.permute(0, 1, 3, 2, 4), like)

    qc, kc, vc, gc = to_cq(qv, q), to_cq(kv, k), to_cq(vv, v), to_cq(gv, g)
    dout = None if dv is None else to_cq(dv, None)
    mask_cq = keep[:, :, None, None, :].contiguous() if keep is not None else None  # True = keep

    def cueq_fn(qc, kc, vc, bias, gc):
        out = cuet.triangle_attention(qc, kc, vc, bias[:, None], mask_cq, scale)
        return out if gc is None else out * torch.sigmoid(gc)

    facts = {"anchor_layout": "q, k, v [B, R, H, L, D] contiguous copies (untimed), bias [B, 1, H, L, L] (a view; "
                              "cuEquivariance casts it to fp32 inside), mask bool [B, R, 1, 1, L] True = keep",
             "cuequivariance_torch_version": _version("cuequivariance-torch"),
             "cuequivariance_ops_version": _version("cuequivariance-ops-torch-cu13") or _version(
                 "cuequivariance-ops-torch-cu12")}

    def to_rows(out):
        return out.permute(0, 1, 3, 2, 4)

    return _with_grads((qc, kc, vc, bias, gc), cueq_fn, facts, dout, to_rows)


ANCHORS = {"sdpa": sdpa, "trifast": trifast, "cueq": cueq}
