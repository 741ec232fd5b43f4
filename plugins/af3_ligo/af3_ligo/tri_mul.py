"""The two implementations of the triangle multiplicative update (outgoing and incoming), and the
one place that picks one.

- ``torch``: the repo's ``TriangleMultiplicativeUpdate`` (or ``FusedTriangleMultiplicativeUpdate``
  with ``fuse_projection_weights``) as it is: LayerNorm, four (two) projections with sigmoid
  gates and the mask, permutes and copies to [*, c, N, N], a batched matmul, LayerNorm, the output
  projection and its gate, each a pass over memory.
- ``fused``: the same parameters through ``af3_kernels.tri_mul.function.tri_mul`` (one GEMM for the
  five input-side projections, a Triton kernel for the gating that writes the contraction's
  channel-major operands, the contraction as one batched GEMM, a Triton kernel for LayerNorm, output
  projection and gate). Forward only: the engine's inference passes run under no_grad.
- ``cueq``: the same parameters through cuEquivariance's fused update
  (``af3_kernels.tri_mul.cueq``, the public kernel ``tri_mul`` is compared with), its input
  projections stacked once at install; it needs the hidden width equal to the pair width (the
  paper's 128 and 128) and a CUDA GPU.

:func:`install` rebinds ``forward`` on each instance after construction (parameters, names and state
dict stay the repo's); nothing is patched at module level. The repo's ``inplace_safe`` path (an
in-place, chunked variant for long inference) is honoured as to its result: with
``_add_with_inplace`` the update is added to z in place, as the repo's returns z + update.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from af3_ligo import kernels

IMPLS = ("torch", "fused", "cueq")


def params_of(module: nn.Module, params_cls):
    """The module's parameters as a TriMulParams (views, no copies), for either of the repo's classes."""
    h = module.c_hidden
    if hasattr(module, "linear_ab_p"):  # FusedTriangleMultiplicativeUpdate: a and b in one linear each
        ab_p, ab_g = module.linear_ab_p, module.linear_ab_g
        a_p = (ab_p.weight[:h], ab_p.bias[:h])
        b_p = (ab_p.weight[h:], ab_p.bias[h:])
        a_g = (ab_g.weight[:h], ab_g.bias[:h])
        b_g = (ab_g.weight[h:], ab_g.bias[h:])
    else:
        a_p, a_g = (module.linear_a_p.weight, module.linear_a_p.bias), (module.linear_a_g.weight, module.linear_a_g.bias)
        b_p, b_g = (module.linear_b_p.weight, module.linear_b_p.bias), (module.linear_b_g.weight, module.linear_b_g.bias)
    ln_in, ln_out = module.layer_norm_in, module.layer_norm_out
    return params_cls(ln_in.weight, ln_in.bias, *a_p, *a_g, *b_p, *b_g, ln_out.weight, ln_out.bias,
                      module.linear_z.weight, module.linear_z.bias, module.linear_g.weight, module.linear_g.bias,
                      eps_in=ln_in.eps, eps_out=ln_out.eps)


def _fused_forward(self, z, mask=None, inplace_safe=False, _add_with_inplace=False, _inplace_chunk_size=256):
    """``forward`` of the repo's triangle multiplicative update through the fused kernel."""
    lead, (n_i, n_j, c) = z.shape[:-3], z.shape[-3:]
    params = params_of(self, self._af3_params_cls)
    update = self._af3_fused(z.reshape(-1, n_i, n_j, c), None if mask is None else mask.reshape(-1, n_i, n_j),
                             params, "outgoing" if self._outgoing else "incoming", self._af3_precision)
    update = update.reshape(*lead, n_i, n_j, c)
    if inplace_safe and _add_with_inplace:
        return z.add_(update)
    return update


def _cueq_forward(self, z, mask=None, inplace_safe=False, _add_with_inplace=False, _inplace_chunk_size=256):
    """``forward`` of the repo's triangle multiplicative update through cuEquivariance."""
    lead, (n_i, n_j, c) = z.shape[:-3], z.shape[-3:]
    update = self._af3_cueq(z.reshape(-1, n_i, n_j, c), None if mask is None else mask.reshape(-1, n_i, n_j),
                            self._af3_cueq_weights, "outgoing" if self._outgoing else "incoming")
    update = update.reshape(*lead, n_i, n_j, c)
    if inplace_safe and _add_with_inplace:
        return z.add_(update)
    return update


def _install_cueq(model: nn.Module, base: type, facts: dict) -> dict:
    load, weights, fn, unavailable = kernels.load("tri_mul_impl", "af3_kernels.tri_mul.cueq", "load", "weights",
                                                  "tri_mul_cueq", "CueqUnavailable")
    (params_cls,) = kernels.load("tri_mul_impl", "af3_kernels.tri_mul.reference", "TriMulParams")
    count = 0
    for module in model.modules():
        if isinstance(module, base):
            params = params_of(module, params_cls)
            try:
                facts["cuequivariance_torch"] = load(int(module.c_hidden), int(params.ln_in_w.shape[0]))
            except unavailable as exc:
                raise kernels.FusedUnavailable(f"tri_mul_impl=cueq: {exc}") from None
            kernels.rebind(module, _cueq_forward, _af3_cueq=fn, _af3_cueq_weights=weights(params))
            count += 1
    facts["tri_mul_modules_swapped"] = count
    # its fp32 products follow torch's TF32 switch (the repo's matmul precision sets it), not ours
    facts["tri_mul_precision"] = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return facts


def install(model: nn.Module, impl: str, precision: str) -> dict:
    """Make every triangle multiplicative update of ``model`` use ``impl``; return facts for the row."""
    if impl not in IMPLS:
        raise ValueError(f"tri_mul_impl must be one of {IMPLS}, not {impl!r}")
    base = sys.modules["src.models.components.triangular_multiplicative_update"].BaseTriangleMultiplicativeUpdate
    facts: dict = {"tri_mul_impl": impl}
    if impl == "cueq":
        return _install_cueq(model, base, facts)
    fn = params_cls = None
    if impl == "fused":
        (fn,) = kernels.load("tri_mul_impl", "af3_kernels.tri_mul.function", "tri_mul")
        (params_cls,) = kernels.load("tri_mul_impl", "af3_kernels.tri_mul.reference", "TriMulParams")
        facts["tri_mul_precision"] = precision
    count = 0
    for module in model.modules():
        if isinstance(module, base):
            if fn is not None:
                kernels.rebind(module, _fused_forward, _af3_fused=fn, _af3_params_cls=params_cls,
                               _af3_precision=precision)
            count += 1
    facts["tri_mul_modules_swapped"] = count if fn is not None else 0
    return facts
