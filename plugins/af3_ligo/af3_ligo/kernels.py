"""What the op swaps (msa.py, tri_attn.py, tri_mul.py, transition.py) share: loading the af3 kernel
an op needs, with the fix when the af3-kernels distribution is missing, and rebinding a module
instance's forward (parameters, their names and the state dict stay the repo's)."""
from __future__ import annotations

import importlib
import types
from typing import Any, Callable

FIX = "pip install --no-deps -e plugins/af3_kernels (the af3-kernels distribution of this repository)"


class FusedUnavailable(Exception):
    """An op was asked to run fused and the af3 kernel is not importable (the message has the fix)."""


def load(setting: str, module: str, *names: str) -> tuple[Any, ...]:
    """``names`` from af3-kernels' ``module``, or FusedUnavailable naming ``setting`` and the fix."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise FusedUnavailable(f"{setting}=fused needs the af3-kernels package ({exc}); fix: {FIX}") from exc
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise FusedUnavailable(f"{module} has no {', '.join(missing)}; fix: update af3-kernels")
    return tuple(getattr(mod, n) for n in names)


def rebind(module: Any, forward: Callable, **attrs: Any) -> None:
    """Make ``forward`` (a function of ``self``) the instance's forward, with ``attrs`` set on it."""
    for key, value in attrs.items():
        setattr(module, key, value)
    module.forward = types.MethodType(forward, module)
