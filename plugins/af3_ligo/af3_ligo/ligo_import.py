"""Importing Ligo's model from a checkout, without its training stack.

Ligo's modules import each other as ``src.*`` with the checkout root on ``sys.path``. Two of its
files import more than the model needs:
- ``src/utils/__init__.py`` imports hydra, lightning and rich (training utilities). The model only
  uses submodules of ``src.utils``, so the ``src.utils`` package is registered by hand, with its
  ``__path__``, and that file is never run.
- ``src/models/components/msa_kernel.py`` imports triton at import time, and ``msa_module.py``
  imports its ``MSAWeightedAveragingFused`` unconditionally. Where triton is missing (a Mac), a
  stand-in module takes its place that raises if the seed kernel is ever called; it is never
  installed when triton imports.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

_STANDIN_MARK = "__af3bench_standin__"


class LigoImportError(Exception):
    pass


def _register_package(name: str, path: Path) -> None:
    """Put an empty package ``name`` with ``__path__ = [path]`` in ``sys.modules``."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__package__ = name
    module.__file__ = None
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _install_msa_kernel_standin() -> None:
    name = "src.models.components.msa_kernel"
    module = types.ModuleType(name)

    def MSAWeightedAveragingFused(*args, **kwargs):  # noqa: N802 - the repo's name
        raise LigoImportError("the repo's Triton MSA kernel (msa_impl=seed) needs triton, which is not installed")

    module.MSAWeightedAveragingFused = MSAWeightedAveragingFused
    setattr(module, _STANDIN_MARK, True)
    sys.modules[name] = module


def import_model(root: Path):
    """Return Ligo's ``src.models.model`` module from the checkout at ``root``.

    Raises :class:`LigoImportError` when another package named ``src`` is already imported.
    """
    src_dir = (root / "src").resolve()
    existing = sys.modules.get("src")
    if existing is not None:
        paths = [Path(p).resolve() for p in getattr(existing, "__path__", [])]
        if src_dir not in paths:
            raise LigoImportError(
                f"another package named 'src' is already imported ({paths or existing!r}); "
                "Ligo's code must be imported as 'src' from its checkout: run it in a fresh process"
            )
    else:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        importlib.import_module("src")  # src/__init__.py is empty
    if "src.utils" not in sys.modules:
        _register_package("src.utils", src_dir / "utils")
    if "src.models.components.msa_kernel" not in sys.modules and importlib.util.find_spec("triton") is None:
        importlib.import_module("src.models.components")
        _install_msa_kernel_standin()
    return importlib.import_module("src.models.model")


def seed_kernel_available() -> bool:
    """Whether the imported ``msa_kernel`` is the repo's real Triton module."""
    module = sys.modules.get("src.models.components.msa_kernel")
    return module is not None and not getattr(module, _STANDIN_MARK, False)
