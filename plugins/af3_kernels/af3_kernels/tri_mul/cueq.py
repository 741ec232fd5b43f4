"""cuEquivariance's fused triangle multiplicative update fed a :class:`TriMulParams`: the public
kernel the kernels plugin compares ``tri_mul`` with (``impl=cueq``), and one an engine can run in
place of its own module (Ligo's ``tri_mul_impl=cueq``).

``cuequivariance_torch.triangle_multiplicative_update`` takes the a and b input projections and
gates stacked ([a; b]: it splits its 2h outputs into halves, a then b), the output LayerNorm,
projection and gate as they are; it needs the hidden width equal to c (AF3's 128 and 128). Its
fp32 products follow ``torch.backends.cuda.matmul.allow_tf32``; under bf16 autocast its LayerNorms
read the fp32 pair and its matrix products run in bf16.
"""
from __future__ import annotations

import importlib
import importlib.metadata

import torch

from af3core import cuequivariance_error

FIX = ("pip install 'af3-kernels[anchors]' (cuEquivariance with its dependencies, platformdirs among "
       "them; the cu12 ops for a CUDA 12 torch)")


class CueqUnavailable(Exception):
    """cuEquivariance cannot run here, or not these parameters (the message says why, with the fix)."""


def load(hidden: int, channels: int) -> str:
    """Check that cuEquivariance loads and takes this width; return its version for the row."""
    error = cuequivariance_error()
    if error:
        raise CueqUnavailable(f"cuEquivariance does not load: {error}; fix: {FIX}")
    if hidden != channels:
        raise CueqUnavailable(f"cuEquivariance's triangle multiplication needs the hidden width equal to the pair "
                              f"width (its projections are square), got {hidden} and {channels}")
    return importlib.metadata.version("cuequivariance-torch")


def weights(p) -> dict:
    """``p``'s parameters as cuEquivariance's keyword arguments, the input projections and gates
    stacked once (a copy: build it after the parameters are final, and again if they change)."""
    return dict(norm_in_weight=p.ln_in_w, norm_in_bias=p.ln_in_b,
                p_in_weight=torch.cat([p.a_p_w, p.b_p_w]), p_in_bias=torch.cat([p.a_p_b, p.b_p_b]),
                g_in_weight=torch.cat([p.a_g_w, p.b_g_w]), g_in_bias=torch.cat([p.a_g_b, p.b_g_b]),
                norm_out_weight=p.ln_out_w, norm_out_bias=p.ln_out_b, p_out_weight=p.z_w, p_out_bias=p.z_b,
                g_out_weight=p.g_w, g_out_bias=p.g_b, eps=p.eps_in)


def tri_mul_cueq(z: torch.Tensor, mask: torch.Tensor | None, stacked: dict, variant: str) -> torch.Tensor:
    """The update of ``z`` [..., N, N, c] (not z plus it), as AF3's Algorithms 12 (``outgoing``) and
    13 (``incoming``), with the parameters of :func:`weights`; ``mask`` [..., N, N] or None."""
    cuet = importlib.import_module("cuequivariance_torch")
    return cuet.triangle_multiplicative_update(z, direction=variant, mask=mask, **stacked)


__all__ = ["CueqUnavailable", "load", "weights", "tri_mul_cueq", "FIX"]
