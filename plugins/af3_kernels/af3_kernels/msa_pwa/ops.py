"""The fused kernel as torch.library custom ops: the form torch.compile can hold (fullgraph=True).

Under torch.compile, ``msa_pair_weighted_averaging`` (function.py) calls :func:`apply` instead of
its autograd Function. Dynamo and Inductor then see opaque ops with shape-only ("fake")
implementations and an autograd formula; they never trace the Triton launches (TMA descriptors,
programmatic dependent launch, the Gluon kernel), which run in eager mode inside the ops:

- ``af3_kernels::msa_pwa_fwd``       v, bias, g, mask -> out, m2, l2, v's gemm copy, y, P
- ``af3_kernels::msa_pwa_bwd_prep``  dout, y, g -> dY', dg, D, n-major dY'
- ``af3_kernels::msa_pwa_bwd_gemms`` dY', D, v, bias, mask, P... -> dv, dbias

The backward is two ops so that y (fp32, S*R*H*C) is dead once the first has run, as in the eager
backward. The launches and kernels are those of the eager path (launch.py), with the same
arguments: the results are the same bit for bit.

Custom ops take tensors and simple scalars only. An :class:`MSAPWAOptions` travels as its string key,
``MSAPWAOptions.key`` (made with the object, so traced code reads a constant); the ops look
the object up and hand it to the launches. A custom op returns fresh tensors, never None nor one of
its inputs: what does not exist (no gemm copy, no y, no P, a gradient not asked for) comes back as
an empty tensor.

Eager calls keep the autograd Function: no dispatcher on the launch path, and its fp32 y is
released inside the backward rather than when autograd drops the saved tensors.
"""
from __future__ import annotations

from typing import Optional

import torch

from af3_kernels.msa_pwa import launch
from af3_kernels.msa_pwa.options import MSAPWAOptions, by_key

Tensor = torch.Tensor


class _Options:
    """The options objects by key (MSAPWAOptions.key, made when the object was)."""

    def __getitem__(self, key: str) -> MSAPWAOptions:
        return by_key(key)


_OPTIONS = _Options()


def _nothing(like: Tensor) -> Tensor:
    return like.new_empty(0)


@torch.library.custom_op("af3_kernels::msa_pwa_fwd", mutates_args=())
def msa_pwa_fwd(v: Tensor, bias: Tensor, g: Tensor, mask: Optional[Tensor], precision: str, stored: bool,
                gemm: bool, keep_y: bool, dy_gemm: bool, options: str
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """launch.forward: (out, m2, l2, v's gemm copy or empty, y or empty, P or empty). ``dy_gemm`` is
    for the backward (the layout of dY')."""
    v, bias, g = v.contiguous(), bias.contiguous(), g.contiguous()
    B, S, R, H, C = v.shape
    mask_u8, mstrides = launch.prepare_mask(mask, B, R, v.device)
    out, m2, l2, vop, y, p = launch.forward(v, bias, g, mask_u8, mstrides, precision, stored, gemm, keep_y,
                                            _OPTIONS[options])
    return (out, m2, l2, vop if gemm else _nothing(v), y if keep_y else _nothing(v),
            p if stored else _nothing(v))


@msa_pwa_fwd.register_fake
def _(v, bias, g, mask, precision, stored, gemm, keep_y, dy_gemm, options):
    B, S, R, H, C = v.shape
    f32 = torch.float32
    return (v.new_empty((B, S, R, H * C)), v.new_empty((B, H, R), dtype=f32), v.new_empty((B, H, R), dtype=f32),
            v.new_empty((B, H, R, S * C)) if gemm else _nothing(v),
            v.new_empty(v.shape, dtype=f32) if keep_y else _nothing(v),
            bias.new_empty((B, H, R, R)) if stored else _nothing(v))


@torch.library.custom_op("af3_kernels::msa_pwa_bwd_prep", mutates_args=())
def msa_pwa_bwd_prep(dout: Tensor, y: Tensor, g: Tensor, dy_gemm: bool, nmajor: bool, options: str
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """launch.backward_prep: (dY', dg, D, n-major dY' or empty)."""
    dy, dg, d, dyn = launch.backward_prep(dout, y, g.contiguous(), dy_gemm, nmajor, _OPTIONS[options])
    return dy, dg, d, dyn if nmajor else _nothing(g)


@msa_pwa_bwd_prep.register_fake
def _(dout, y, g, dy_gemm, nmajor, options):
    B, S, R, H, C = g.shape
    return (g.new_empty((B, H, R, S * C) if dy_gemm else g.shape), g.new_empty(g.shape),
            g.new_empty((B, H, R), dtype=torch.float32), g.new_empty((B, H, S * C, R)) if nmajor else _nothing(g))


@torch.library.custom_op("af3_kernels::msa_pwa_bwd_gemms", mutates_args=())
def msa_pwa_bwd_gemms(dy: Tensor, dyn: Optional[Tensor], d: Tensor, v: Tensor, vop: Optional[Tensor], bias: Tensor,
                      mask: Optional[Tensor], m2: Tensor, l2: Tensor, p: Optional[Tensor], precision: str,
                      stored: bool, gemm: bool, dy_gemm: bool, need_v: bool, need_bias: bool, options: str
                      ) -> tuple[Tensor, Tensor]:
    """launch.backward_gemms: (dv or empty, dbias or empty); ``vop`` the forward's gemm copy of v
    (None: v read in place), ``p`` the forward's P (None: rebuilt when stored)."""
    v, bias = v.contiguous(), bias.contiguous()
    B, S, R, H, C = v.shape
    mask_u8, mstrides = launch.prepare_mask(mask, B, R, v.device)
    dv, dbias = launch.backward_gemms(dy, dyn, d, v, vop if gemm else v, bias, mask_u8, mstrides, m2, l2, p,
                                      precision, stored, gemm, dy_gemm, (need_v, need_bias), _OPTIONS[options])
    return (dv if need_v else _nothing(v)), (dbias if need_bias else _nothing(v))


@msa_pwa_bwd_gemms.register_fake
def _(dy, dyn, d, v, vop, bias, mask, m2, l2, p, precision, stored, gemm, dy_gemm, need_v, need_bias, options):
    return (v.new_empty(v.shape) if need_v else _nothing(v)), (bias.new_empty(bias.shape) if need_bias
                                                               else _nothing(v))


def _setup_context(ctx, inputs, output):
    v, bias, g, mask, precision, stored, gemm, keep_y, dy_gemm, options = inputs
    _, m2, l2, vop, y, p = output
    keep_p = stored and _OPTIONS[options].keep_p_for_backward
    ctx.save_for_backward(v, bias, g, mask, m2, l2, vop if gemm else None, y if keep_y else None,
                          p if keep_p else None)
    ctx.mark_non_differentiable(m2, l2, vop, y, p)
    ctx.settings = (precision, stored, gemm, keep_y, dy_gemm, options)


def _backward(ctx, dout, *_):
    need_v, need_bias, need_g = ctx.needs_input_grad[:3]
    none = (None,) * 7  # mask (not differentiable) and the scalar arguments
    if not (need_v or need_bias or need_g):  # only the mask requires grad: it has none
        return (None, None, None) + none
    v, bias, g, mask, m2, l2, vop, y, p = ctx.saved_tensors
    precision, stored, gemm, keep_y, dy_gemm, options = ctx.settings
    if y is None:
        raise RuntimeError("msa_pair_weighted_averaging: the forward kept nothing for a backward (it ran with "
                           "grad mode off or with no input requiring grad)")
    nmajor = launch.dbias_nmajor(need_bias, v.dtype, precision, _OPTIONS[options])
    dy, dg, d, dyn = msa_pwa_bwd_prep(dout, y, g, dy_gemm, nmajor, options)
    del y
    dv, dbias = msa_pwa_bwd_gemms(dy, dyn if nmajor else None, d, v, vop, bias, mask, m2, l2, p, precision, stored,
                                  gemm, dy_gemm, need_v, need_bias, options)
    return (dv if need_v else None, dbias if need_bias else None, dg if need_g else None) + none


msa_pwa_fwd.register_autograd(_backward, setup_context=_setup_context)


def apply(v, bias, g, mask, precision: str, stored: bool, gemm: bool, keep_y: bool, dy_gemm: bool,
          options: MSAPWAOptions) -> Tensor:
    """The forward op's output (the other outputs are for the backward); arguments checked and
    decided by the caller (function.py)."""
    return msa_pwa_fwd(v, bias, g, mask, precision, stored, gemm, keep_y, dy_gemm, options.key)[0]
