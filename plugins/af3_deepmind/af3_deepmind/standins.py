"""Stand-ins for the few modules AF3's model imports but never calls on the forward path.

DeepMind's package imports its C++ extension (``alphafold3.cpp``), RDKit, zstandard and a set of
chemical-component names read from a pickle built from the CCD database, all at module import
time, all for data-pipeline work (parsing mmCIF, conformers, compressing outputs). None of it runs
in a forward pass over a featurised batch. A user who only wants to benchmark the network should
not need the C++ build or the 300 MB CCD, so for each of those modules:

* the real module is imported first, and used whenever it imports (never shadowed);
* only when the module itself is absent (or, for the CCD name sets, its data file) is a
  stand-in registered in ``sys.modules``; a present module that fails to import is an error;
* a stand-in has any attribute (so ``from x import y`` and ``x.Y | None`` annotations work), but
  calling, instantiating or iterating anything from it raises :class:`StandInCalled`, so a
  benchmark can never silently run on fake behaviour.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types

#: Modules that may be replaced, with the reason they are off the forward path.
OFF_PATH_MODULES: dict[str, str] = {
    "alphafold3.cpp": "DeepMind's C++ extension (mmCIF parsing, MSA conversion, DSSP); needs the CMake build",
    "rdkit": "RDKit, used for conformers and ligand parsing in the data pipeline",
    "zstandard": "zstd (de)compression of parameter files and outputs",
    "alphafold3.constants.chemical_component_sets": (
        "glycan name sets read at import from a pickle generated from the CCD database"
    ),
    # tokamax imports qwix for its quantised-array type, used on the forward path only in
    # ``isinstance(x, QArray)`` checks (a stand-in class answers False: nothing is quantised).
    # qwix needs flax, and no released flax imports under jax 0.11 (flax.nnx uses jax internals
    # that 0.11 removed), so on a jax 0.11 machine both are left uninstalled.
    "qwix": "qwix, quantisation library; tokamax only checks isinstance(x, qwix.QArray) on this path",
}


class StandInCalled(RuntimeError):
    """Code on the benchmarked path used a module that is only a stand-in."""


class BrokenModule(ImportError):
    """An off-path module is installed but fails to import: fix or remove it, no stand-in."""

    def __init__(self, name: str, exc: BaseException):
        super().__init__(
            f"{name} is installed but fails to import ({type(exc).__name__}: {exc}); repair it or "
            f"uninstall it (af3-bench stands in for it only when it is absent)"
        )


class _StandInType(type):
    """Metaclass: every attribute is another stand-in; every use raises."""

    def __getattr__(cls, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _make(f"{cls.__qualname__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise StandInCalled(
            f"{cls.__qualname__} was called, but it is a stand-in for a module that is not installed "
            "(af3_deepmind.standins). This code path needs the real module."
        )

    def __iter__(cls):
        raise StandInCalled(f"{cls.__qualname__} was iterated, but it is a stand-in (af3_deepmind.standins)")

    def __contains__(cls, item):
        raise StandInCalled(f"{cls.__qualname__} was searched, but it is a stand-in (af3_deepmind.standins)")


def _make(qualname: str) -> type:
    # A class, not an instance: it can appear in annotations (``X | None``) and as a base class
    # at import time, and the metaclass makes any real use raise.
    return _StandInType(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname, "__module__": qualname})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _make(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StandInFinder:
    """Meta-path finder answering for submodules of installed stand-ins (``rdkit.Chem.AllChem``)."""

    def __init__(self) -> None:
        self.roots: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname.startswith(root + ".") for root in self.roots):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        module.__af3bench_standin__ = True
        return module

    def exec_module(self, module):
        pass


_FINDER = _StandInFinder()


def _register(name: str) -> None:
    module = _StandInModule(name)
    module.__path__ = []  # a package, so submodule imports go through the finder
    module.__af3bench_standin__ = True
    module.__doc__ = f"af3-bench stand-in: {OFF_PATH_MODULES[name]}"
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    _FINDER.roots.add(name)
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)  # last: real modules are always found first


def is_standin(module: types.ModuleType | None) -> bool:
    return bool(getattr(module, "__af3bench_standin__", False))


def install() -> dict[str, str]:
    """Import each off-path module for real; register a stand-in only where that fails.

    Returns ``{module: "real" | "stand-in (<why the import failed>)"}`` for the record.
    Must run after the ``alphafold3`` package is importable (its parent packages are real).
    """
    report: dict[str, str] = {}
    for name in OFF_PATH_MODULES:
        existing = sys.modules.get(name)
        if existing is not None:
            report[name] = "stand-in" if is_standin(existing) else "real"
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                # Installed, but one of its own dependencies is missing: a broken install, not an
                # absent module; standing in for it would hide the real problem.
                raise BrokenModule(name, exc) from exc
            sys.modules.pop(name, None)
            _register(name)
            report[name] = f"stand-in (not installed: {exc})"
        except FileNotFoundError as exc:
            # chemical_component_sets opens a pickle generated from the CCD at import time; a
            # checkout without the data build lacks it.
            sys.modules.pop(name, None)
            _register(name)
            report[name] = f"stand-in (data file missing: {exc.filename})"
        except Exception as exc:  # noqa: BLE001 - any other failure of a present module
            raise BrokenModule(name, exc) from exc
        else:
            report[name] = "real"
    return report
