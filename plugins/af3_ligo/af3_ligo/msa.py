"""The three implementations of the MSA pair-weighted averaging, and the one place that picks one.

Ligo's ``MSAPairWeightedAveraging.forward`` ends in::

    if use_triton_kernel:  o = MSAWeightedAveragingFused(v, b, g)       # the repo's Triton kernel
    else:                  o = self.msa(v, b, g, n_seq, n_res)          # MSAWeightedAveragingNaive

with ``use_triton_kernel`` taken from ``config.globals.use_triton_kernel``, v, g ``[B,S,R,H,C]``,
b ``[B,R,R,H]`` (pair mask already added), o ``[B,S,R,H*C]``. :func:`install` chooses by setting
that flag and replacing each instance's ``.msa`` submodule after construction, so the repo's code
runs unmodified around the swapped piece and nothing is patched at module level:

- ``torch``: a softmax over j then one einsum. The repo's own non-Triton module expands v to
  ``[B,S,R,R,H,C]`` (about 154 GB at paper size), which is not a usable baseline.
- ``seed``: the flag set, ``.msa`` untouched: the repo's Triton kernel exactly as shipped
  (CUDA only, fp32 only; known defects in docs/LIGO.md).
- ``fused``: ``af3_kernels.msa_pwa.function`` (the af3-bench fused kernel), same call signature.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from af3_ligo import kernels

IMPLS = ("torch", "seed", "fused")
FUSED_MODULE = "af3_kernels.msa_pwa.function"


class TorchPairWeightedAveraging(nn.Module):
    """out = sigmoid(g) * sum_j softmax_j(b[..., i, j, h]) v[..., s, j, h, :], without the R x R x S expansion."""

    def forward(self, v, b, g, n_seq=None, n_res=None):
        w = torch.softmax(b, dim=-2)  # b [*, R_i, R_j, H]: over j, as the repo's module does
        o = torch.einsum("...ijh,...sjhc->...sihc", w.to(v.dtype), v)
        return (torch.sigmoid(g) * o).flatten(-2)  # [*, S, R, H*C]


class FusedPairWeightedAveraging(nn.Module):
    """Calls the af3-kernels fused kernel with the seed's ``(v, b, g)`` arguments."""

    def __init__(self, fn, precision: str):
        super().__init__()
        self.fn = fn
        self.precision = precision

    def forward(self, v, b, g, n_seq=None, n_res=None):
        # Under bf16 autocast v and g come out of linear layers in bf16 but b is fp32 (the fp32 pair
        # mask was added to it); a custom kernel gets no autocast, so give it one dtype.
        return self.fn(v, b.to(v.dtype), g.to(v.dtype), precision=self.precision)


def load_fused():
    """The fused kernel's functional form, or :class:`kernels.FusedUnavailable` with the fix."""
    (fn,) = kernels.load("msa_impl", FUSED_MODULE, "msa_pair_weighted_averaging")
    return fn


def fused_precision() -> str:
    """The fused kernel's fp32 dot precision matching torch's matmul precision for the einsum.

    Ligo's config sets ``torch.set_float32_matmul_precision`` ("high" = TF32 on an H100), which the
    ``torch`` implementation's einsum follows; the fused kernel gets the same so the two are compared
    at equal arithmetic ("highest" -> exact fp32 FMA).
    """
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def install(model: nn.Module, impl: str) -> dict:
    """Make every MSA pair-weighted averaging of ``model`` use ``impl``; return facts for the row."""
    if impl not in IMPLS:
        raise ValueError(f"msa_impl must be one of {IMPLS}, not {impl!r}")
    naive_cls = sys.modules["src.models.msa_module"].MSAPairWeightedAveraging
    facts: dict = {"msa_impl": impl}
    if impl == "torch":
        replacement = TorchPairWeightedAveraging()
    elif impl == "fused":
        facts["fused_precision"] = precision = fused_precision()
        replacement = FusedPairWeightedAveraging(load_fused(), precision)
    else:
        replacement = None  # seed: the repo's own call of its Triton kernel
    count = 0
    for module in model.modules():
        if isinstance(module, naive_cls):
            if replacement is not None:
                module.msa = replacement  # stateless: one instance serves every block
            count += 1
    model.globals["use_triton_kernel"] = impl == "seed"
    facts["msa_modules_swapped"] = count
    return facts
