"""Two small fixes needed to run DeepMind's pinned source on today's libraries. Both are no-ops
where they are not needed, and both are recorded in the result rows."""
from __future__ import annotations

import warnings


def init_absl_flags() -> bool:
    """Parse absl flags with only the program name. Returns whether this call parsed them.

    tokamax parses ``sys.argv`` with absl the first time a kernel runs and aborts on flags it does
    not know, such as the worker's own ``--fd``/``--case`` or pytest's. Parsing an argv of just the
    program name first keeps every absl flag at its default.
    """
    from absl import flags

    if flags.FLAGS.is_parsed():
        return False
    flags.FLAGS(["af3bench"], known_only=True)
    return True


def patch_pallas_dot() -> bool:
    """Re-export ``jax.experimental.pallas.triton.dot`` as ``jax.experimental.pallas.dot``.

    jax 0.11 removed ``pallas.dot``; tokamax 0.0.12's Triton attention and GLU kernels call it and
    fail at trace time on a GPU (even with XLA attention, the GLU fallback only catches
    NotImplementedError). Returns whether the patch was applied (False: the name still exists).
    """
    import jax.experimental.pallas as pl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jax 0.10 still has it, deprecated
        if hasattr(pl, "dot"):
            return False
    try:
        from jax.experimental.pallas import triton as pl_triton
    except ImportError:  # no Triton backend in this jaxlib: nothing will call pl.dot
        return False
    if not hasattr(pl_triton, "dot"):
        return False
    pl.dot = pl_triton.dot
    return True
