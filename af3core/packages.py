"""Availability of an engine installed from the package index (Boltz-2, OpenFold3, ESM-2...): the
distribution's version and whether the modules its model imports are there, found without
importing anything (an availability check must stay cheap)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Sequence

from af3core.plugin import Availability


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
