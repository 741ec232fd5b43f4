"""The one fix DeepMind's pinned AlphaFold 2 source needs on today's jax. Recorded in the result rows."""
from __future__ import annotations

import types


class _ClipShimNumpy(types.ModuleType):
    """``jax.numpy`` as AlphaFold 2's modules see it, with ``clip`` taking the old keywords.

    Only ``clip`` differs; every other name is jax.numpy's own.
    """

    def __init__(self, jnp):
        super().__init__(jnp.__name__)
        self._jnp = jnp

    def __getattr__(self, name):
        return getattr(self._jnp, name)

    def clip(self, a=None, *args, a_min=None, a_max=None, **kwargs):
        if a_min is not None:
            kwargs.setdefault("min", a_min)
        if a_max is not None:
            kwargs.setdefault("max", a_max)
        return self._jnp.clip(a, *args, **kwargs)


def patch_clip_keywords() -> bool:
    """Give ``alphafold.model.modules`` a ``jnp`` whose ``clip`` accepts ``a_min``/``a_max``.

    jax 0.6 renamed ``jnp.clip``'s keywords to ``min``/``max`` and later jax removed the old names;
    the relative-position encoding in ``EmbeddingsAndEvoformer`` still calls ``jnp.clip(x,
    a_min=0, a_max=...)``. The patch is local to that module (jax.numpy itself is untouched) and a
    no-op where jax still takes the old names. Returns whether it was applied.
    """
    import inspect

    import jax.numpy as jnp
    from alphafold.model import modules

    if isinstance(modules.jnp, _ClipShimNumpy):
        return True
    if "a_min" in inspect.signature(jnp.clip).parameters:
        return False
    modules.jnp = _ClipShimNumpy(jnp)
    return True
