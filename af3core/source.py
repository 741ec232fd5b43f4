"""Finding an engine's source checkout, for engines that are not on the package index.

One rule for every plugin: the plugin's environment variable, else ``<third_party>/<folder>`` in
each third-party folder (``$AF3_THIRD_PARTY``, ``./third_party``, and the ``third_party`` folder of
the af3-bench checkout af3core runs from, when it runs from one). Light: no framework import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from af3core.provenance import source_commit

THIRD_PARTY_ENV = "AF3_THIRD_PARTY"


class SourceNotFound(Exception):
    """The source is missing or incomplete; ``reason`` says what, ``fix`` how to get it."""

    def __init__(self, reason: str, fix: str):
        super().__init__(f"{reason}; fix: {fix}")
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True)
class LocatedSource:
    root: Path  # the folder that holds ``required`` (a checkout, or its ``src/`` for some engines)
    origin: str  # the variable's name, or "third_party"
    version: str  # "git:<commit>" or "unknown"


def third_party_dirs() -> list[Path]:
    """Where engine checkouts are looked for, in order, without duplicates."""
    dirs = []
    if os.environ.get(THIRD_PARTY_ENV):
        dirs.append(Path(os.environ[THIRD_PARTY_ENV]).expanduser())
    dirs.append(Path.cwd() / "third_party")
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "af3core").is_dir():
        dirs.append(checkout / "third_party")  # af3core runs from an af3-bench checkout
    unique = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


@dataclass(frozen=True)
class EngineSource:
    """How to find one engine's checkout.

    ``required`` are paths that a usable root holds; ``subdirs`` are the places inside a checkout
    where that root may be ("" = the checkout itself, "src" for DeepMind's layout).
    """

    name: str  # e.g. "Ligo's AlphaFold 3"
    env_var: str  # e.g. "AF3_LIGO_SRC"
    folder: str  # e.g. "alphafold3_ligo" under third_party/
    repo_url: str
    pinned_commit: str
    required: Sequence[str]
    subdirs: Sequence[str] = ("",)

    @property
    def fix(self) -> str:
        return (f"set {self.env_var} to a checkout of {self.repo_url}, or clone it at {self.pinned_commit} "
                f"into third_party/{self.folder} (git clone {self.repo_url} third_party/{self.folder} && "
                f"git -C third_party/{self.folder} checkout {self.pinned_commit})")

    def _root_in(self, checkout: Path) -> Path | None:
        for sub in self.subdirs:
            root = checkout / sub if sub else checkout
            if all((root / r).exists() for r in self.required):
                return root.resolve()
        return None

    def _version(self, root: Path) -> str:
        for candidate in (root, *root.parents[:1]):  # the checkout, or the checkout above src/
            commit = source_commit(candidate)
            if commit:
                return f"git:{commit}"
        return "unknown"

    def locate(self) -> LocatedSource:
        """The source, or :class:`SourceNotFound` with the reason and the fix."""
        env = os.environ.get(self.env_var)
        if env:
            root = self._root_in(Path(env).expanduser())
            if root is None:
                raise SourceNotFound(f"{self.env_var}={env} holds no {', '.join(self.required)}", self.fix)
            return LocatedSource(root, self.env_var, self._version(root))
        for base in third_party_dirs():
            root = self._root_in(base / self.folder)
            if root is not None:
                return LocatedSource(root, "third_party", self._version(root))
        raise SourceNotFound(f"the source of {self.name} was not found ({self.env_var} unset, no "
                             f"third_party/{self.folder})", self.fix)
