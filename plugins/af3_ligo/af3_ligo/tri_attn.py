"""The two implementations of triangle attention (Algorithms 13 and 14), and the one place that picks one.

Ligo's ``TriangleAttention.forward(x, mask, ...)`` on the pair tensor x ``[*, I, J, C]`` runs, for
the ending node on x transposed: LayerNorm, a bias ``linear(x)`` ``[*, H, I, J]``, an additive mask
term ``inf * (mask - 1)``, and ``Attention`` (q, k, v and gate projections, softmax over j, sigmoid
gate, output projection), materialising the ``[*, I, H, J, J]`` logits and their softmax.

- ``torch``: the repo's module as it is.
- ``fused``: the same module's parameters through ``af3_kernels.evo_attn`` (the af3-bench fused
  Evoformer attention): one GEMM for q, k, v, gate and bias (their weights concatenated), the
  attention, gate and mask in one kernel that never writes the logits, then the repo's output
  projection. The ending node reads the untransposed tensors through the kernel's ``tri_end``
  variant instead of copying x transposed.

:func:`install` rebinds ``forward`` on each instance after construction (the parameters, their names
and the state dict stay the repo's); nothing is patched at module level. Two documented differences:
the repo's ``chunk_size`` is ignored (the kernel needs no chunking: it never holds the logits), and a
fully masked query row outputs 0 before the output projection, where the repo's finite mask bias
averages v over all keys (only padding rows are fully masked; the synthetic batch has none).
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from af3_ligo import kernels

IMPLS = ("torch", "fused")


def _projection(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights (and biases) of q, k, v, gate and the triangle bias, stacked for one GEMM.

    Concatenated on every call: a few hundred KB, against a GEMM over N*N positions; caching would
    go stale when weights are re-randomised or loaded after install."""
    mha = module.mha
    linears = [mha.linear_q[0], mha.linear_k[0], mha.linear_v[0]]
    if mha.to_gamma is not None:
        linears.append(mha.to_gamma[0])
    linears.append(module.linear)
    weight = torch.cat([lin.weight for lin in linears])
    if all(lin.bias is None for lin in linears):
        return weight, None
    bias = torch.cat([lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
                      for lin in linears])
    return weight, bias


def _fused_forward(self, x, mask=None, chunk_size=None, use_deepspeed_evo_attention=False, inplace_safe=False):
    """``TriangleAttention.forward`` through the fused kernel; same arguments, same result (see module doc)."""
    mha = self.mha
    heads, dim = mha.no_heads, mha.c_hidden
    width = heads * dim
    lead, (n_i, n_j, c_in) = x.shape[:-3], x.shape[-3:]
    x = x.reshape(-1, n_i, n_j, c_in)
    weight, bias = _projection(self)
    if self._af3_ln_linear is not None:  # ln_linear_impl=fused: LayerNorm and projection in one kernel
        ln = self.layer_norm
        proj = self._af3_ln_linear(x, ln.weight, ln.bias, weight, bias, ln.eps, self._af3_precision)
    else:
        proj = F.linear(self.layer_norm(x), weight, bias)  # under bf16 autocast: a bf16 GEMM, as the repo's linears
    # q, k, v, gate: strided views of proj, heads after the sequence dims as the kernel reads them
    q, k, v = (proj[..., i * width:(i + 1) * width].unflatten(-1, (heads, dim)) for i in range(3))
    gate = proj[..., 3 * width:4 * width].unflatten(-1, (heads, dim)) if mha.to_gamma is not None else None
    tri = proj[..., -heads:]  # [B, I, J, H]
    # The ending node's bias is linear(x^T) [H, I', J'] = linear(x)[J', I']: transpose it back.
    tri = tri.permute(0, 3, 1, 2) if self.starting else tri.permute(0, 3, 2, 1)
    if mask is not None:
        mask = mask.reshape(-1, n_i, n_j)
    o = self._af3_fused(q, k, v, tri.to(q.dtype), mask, gate,
                        variant="tri_start" if self.starting else "tri_end", precision=self._af3_precision)
    out = mha.linear_o(o.flatten(-2))
    return out.reshape(*lead, n_i, n_j, out.shape[-1])


def install(model: nn.Module, impl: str, precision: str, ln_linear_impl: str = "torch") -> dict:
    """Make every triangle attention of ``model`` use ``impl``; return facts for the row.

    ``precision``: the fused kernel's fp32 dot precision (the one the torch path's matmuls use).
    ``ln_linear_impl=fused`` (with ``impl=fused``): the LayerNorm and the q/k/v/gate/bias projection
    through af3_kernels' ln_linear instead of nn.LayerNorm then F.linear."""
    if impl not in IMPLS:
        raise ValueError(f"tri_attn_impl must be one of {IMPLS}, not {impl!r}")
    ln_linear = None
    if ln_linear_impl == "fused":
        if impl != "fused":
            raise kernels.FusedUnavailable("ln_linear_impl=fused works inside tri_attn_impl=fused: set both")
        (ln_linear,) = kernels.load("ln_linear_impl", "af3_kernels.ln_linear.function", "ln_linear")
    tri_cls = sys.modules["src.models.components.triangular_attention"].TriangleAttention
    facts: dict = {"tri_attn_impl": impl}
    fn = None
    if impl == "fused":
        (fn,) = kernels.load("tri_attn_impl", "af3_kernels.evo_attn.function", "evo_attention")
        facts["tri_attn_precision"] = precision
        facts["ln_linear_impl"] = ln_linear_impl
    count = 0
    for module in model.modules():
        if isinstance(module, tri_cls):
            if fn is not None:
                kernels.rebind(module, _fused_forward, _af3_fused=fn, _af3_precision=precision,
                               _af3_ln_linear=ln_linear)
            count += 1
    facts["tri_attn_modules_swapped"] = count if fn is not None else 0
    return facts
