"""Random parameters without the wait: the OpenFold-lineage engines (OpenFold3, Protenix, Boltz-2,
Ligo) initialise every ``Linear`` weight in ``trunc_normal_init_`` with ``scipy.stats.truncnorm.rvs``,
float64 draws on one CPU core by inverting the normal CDF: most of a released model's build time,
paid again by every case's worker. :func:`truncnorm_by_torch` swaps the ``truncnorm`` that
such a module calls for one drawing the same distribution with torch, while the model is built.

Only the sampler changes: the engine's fan and scale rules, its cut at +-2 std and its graph stay
its own, and the draws come from torch's generator, so ``torch.manual_seed`` now fixes them (scipy
drew from numpy's global state, unseeded by the engines).
"""
from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from types import ModuleType


class TorchTruncnorm:
    """``scipy.stats.truncnorm`` as ``trunc_normal_init_`` uses it: ``std`` from scipy (once per
    distinct call), ``rvs`` drawn by torch (float32)."""

    def __init__(self, scipy_truncnorm):
        self.scipy = scipy_truncnorm
        self._std: dict = {}

    def std(self, *args, **kwargs):
        # asked once per weight with the same few arguments, and each scipy call is slow next to a draw
        key = (args, tuple(sorted(kwargs.items())))
        if key not in self._std:
            self._std[key] = self.scipy.std(*args, **kwargs)
        return self._std[key]

    def rvs(self, a, b, loc=0.0, scale=1.0, size=None, random_state=None):
        import torch

        if random_state is not None:  # a caller that seeds scipy explicitly gets scipy
            return self.scipy.rvs(a=a, b=b, loc=loc, scale=scale, size=size, random_state=random_state)
        shape = _shape(size)
        # by inverting the normal CDF between a and b (in units of scale around loc, as scipy's):
        # torch's own trunc_normal_ is a rejection loop, slower on a CPU
        lo, hi = math.erf(a / math.sqrt(2)), math.erf(b / math.sqrt(2))
        out = torch.empty(shape, dtype=torch.float32).uniform_(lo, hi).erfinv_().mul_(math.sqrt(2)).clamp_(a, b)
        out.mul_(scale).add_(loc)
        return out.numpy() if shape else float(out)


def _shape(size) -> tuple[int, ...]:
    """scipy's ``size``: None, an integer (numpy's too: Ligo passes ``np.prod``) or a shape."""
    if size is None:
        return ()
    try:
        return (operator.index(size),)
    except TypeError:
        return tuple(operator.index(n) for n in size)


@contextmanager
def truncnorm_by_torch(*modules: ModuleType):
    """While the block runs, each module's ``truncnorm`` (the name its ``trunc_normal_init_`` samples
    through) draws with torch; restored afterwards. A module without one is left alone (an engine
    version that initialises otherwise)."""
    swapped = [(m, m.truncnorm) for m in modules if hasattr(m, "truncnorm")]
    for module, original in swapped:
        module.truncnorm = TorchTruncnorm(original)
    try:
        yield len(swapped)
    finally:
        for module, original in swapped:
            module.truncnorm = original

