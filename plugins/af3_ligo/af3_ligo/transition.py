"""The two implementations of the Transition (AF3 Algorithm 11: LayerNorm, SwiGLU to n*c, back to c),
and the one place that picks one.

- ``torch``: the repo's ``Transition`` as it is (the n*c-wide activation written three times).
- ``fused``: its parameters through ``af3_kernels.transition.function.transition``: one Triton
  kernel, the activation kept on chip. Forward only (inference runs under no_grad). Transitions
  wider than the kernel's limit (the single representation, c_token = 384) keep the repo's module;
  the row records how many of each.

:func:`install` rebinds ``forward`` on each instance after construction; nothing is patched at
module level. The diffusion module's ``ConditionedTransitionBlock`` (adaptive LayerNorm, an output
gate) is another module and is not swapped.
"""
from __future__ import annotations

import sys

from torch import nn

from af3_ligo import kernels

IMPLS = ("torch", "fused")


def _fused_forward(self, x):
    ln = self.layer_norm
    params = self._af3_params_cls(ln.weight, ln.bias, self.linear_1.weight, self.linear_2.weight,
                                  self.output_linear.weight, eps=ln.eps)
    return self._af3_fused(x, params, self._af3_precision)


def install(model: nn.Module, impl: str, precision: str) -> dict:
    """Make every Transition of ``model`` that the kernel can take use ``impl``; facts for the row."""
    if impl not in IMPLS:
        raise ValueError(f"transition_impl must be one of {IMPLS}, not {impl!r}")
    cls = sys.modules["src.models.components.transition"].Transition
    facts: dict = {"transition_impl": impl}
    fn = params_cls = max_c = None
    if impl == "fused":
        fn, max_c = kernels.load("transition_impl", "af3_kernels.transition.function", "transition", "MAX_C")
        (params_cls,) = kernels.load("transition_impl", "af3_kernels.transition.reference", "TransitionParams")
        facts["transition_precision"] = precision
    swapped = kept = 0
    for module in model.modules():
        if type(module) is not cls:
            continue
        if fn is not None and module.layer_norm.normalized_shape[0] <= max_c:
            kernels.rebind(module, _fused_forward, _af3_fused=fn, _af3_params_cls=params_cls, _af3_precision=precision)
            swapped += 1
        else:
            kept += 1
    facts["transition_modules_swapped"] = swapped
    if fn is not None:
        facts["transition_modules_kept_too_wide"] = kept
    return facts
