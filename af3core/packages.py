"""Availability of an engine installed from the package index (Boltz-2, OpenFold3, ESM-2...): the
distribution's version and whether the modules its model imports are there, found without
importing anything (an availability check must stay cheap)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Sequence

from af3core.plugin import Availability
from af3core.runner import CaseError


def installed_distribution(*names: str) -> tuple[str, str] | None:
    """(name, version) of the first of ``names`` that is installed, or None."""
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The top-level modules among ``modules`` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def package_check(engine: str, distributions: Sequence[str], package: str, needs: Sequence[str],
                  fix: str) -> Availability:
    """Available when one of ``distributions`` is installed, provides ``package``, and every module
    in ``needs`` is importable; the source version is "<distribution> <version>"."""
    found = installed_distribution(*distributions)
    if found is None or importlib.util.find_spec(package) is None:
        return Availability.no(f"{engine} is not installed", fix)
    missing = missing_modules(needs)
    if missing:
        return Availability.no(f"{engine}'s model needs {', '.join(missing)}", fix)
    return Availability.yes(source_version=f"{found[0]} {found[1]}")


#: How to install cuEquivariance's triangle kernels for a CUDA 13 torch (what engines' errors suggest).
CUEQUIVARIANCE_FIX = ("pip install cuequivariance-torch cuequivariance-ops-torch-cu13 (cu12 for a CUDA 12 "
                      "torch) and their dependencies")


def cuequivariance_installed() -> bool:
    """Whether ``cuequivariance_torch`` is installed (found, not imported): an engine's ``auto``
    falls back to torch only when it is not; an installed one that does not load is a broken
    install, to be fixed rather than measured as something else."""
    return importlib.util.find_spec("cuequivariance_torch") is not None


def cuequivariance_for_auto(without: str) -> str | None:
    """For an engine whose kernels default to cuEquivariance (an ``auto`` setting): None when they
    load, the reason to fall back to the engine's own path when cuEquivariance is not installed.
    Installed but not loading is a broken install, and timing the fallback would report what the
    user did not ask for: a CaseError with the fix and ``without``, the setting that times the
    engine without it."""
    error = cuequivariance_error()
    if error and cuequivariance_installed():
        raise CaseError(f"cuEquivariance is installed but does not load ({error}); fix: {CUEQUIVARIANCE_FIX}, "
                        f"or time the engine without it: {without}")
    return error


def cuequivariance_error() -> str | None:
    """Why cuEquivariance's triangle kernels cannot run in this process, or None when they can.

    Unlike the checks above this imports the packages: call it where a model is built, not in an
    availability check. Finding ``cuequivariance_torch`` is not enough: ``cuequivariance_ops_torch``
    silently leaves out its Triton kernels (triangle multiplication among them) when one of their
    imports fails, as ``platformdirs`` does on a ``--no-deps`` install, and an engine that turned the
    kernels on then fails in its first pass."""
    if not cuequivariance_installed():
        return "cuequivariance-torch is not installed"
    try:
        importlib.import_module("cuequivariance_torch")
        ops = importlib.import_module("cuequivariance_ops_torch")
    except Exception as exc:  # a missing or broken binary package: any import error says why
        return f"cuequivariance_ops_torch does not import ({type(exc).__name__}: {exc})"
    missing = [name for name in ("triangle_attention", "triangle_multiplicative_update") if not hasattr(ops, name)]
    if not missing:
        return None
    try:  # the import that cuequivariance_ops_torch swallowed names the cause
        importlib.import_module("cuequivariance_ops.triton")
    except Exception as exc:
        return f"cuequivariance_ops_torch lacks {', '.join(missing)}: {type(exc).__name__}: {exc}"
    return f"cuequivariance_ops_torch lacks {', '.join(missing)}"
