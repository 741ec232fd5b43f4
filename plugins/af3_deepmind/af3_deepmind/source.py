"""Where DeepMind's AlphaFold 3 source is, and which version it is. Light: no jax, no alphafold3 import.

Search order (the first hit wins):
1. ``AF3_DEEPMIND_SRC``: a checkout of github.com/google-deepmind/alphafold3, or its ``src/``;
2. ``third_party/alphafold3_deepmind`` in each third-party folder af3core knows
   (:func:`af3core.source.third_party_dirs`: ``$AF3_THIRD_PARTY``, ``./third_party``, the af3-bench
   checkout's ``third_party``);
3. an importable ``alphafold3`` package (e.g. ``pip install`` of DeepMind's repo with its C++ build).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from af3core.source import EngineSource, SourceNotFound

SOURCE = EngineSource(
    name="DeepMind AlphaFold 3",
    env_var="AF3_DEEPMIND_SRC",
    folder="alphafold3_deepmind",
    repo_url="https://github.com/google-deepmind/alphafold3",
    pinned_commit="c0f97ed",  # v3.0.4
    required=("alphafold3/model/model.py",),
    subdirs=("src", ""),  # the root goes on sys.path: a checkout's src/, or src/ itself
)


@dataclass(frozen=True)
class Source:
    """A located AF3 source: ``path`` goes on ``sys.path`` (None: already importable)."""

    path: Path | None
    origin: str  # "AF3_DEEPMIND_SRC", "third_party" or "installed package"
    version: str  # "git:<commit>", "version:<x.y.z>" (alphafold3/version.py) or "package:<version>"


def _version_file(src: Path) -> str:
    """For a tree without a commit (no ``.git``, no marker): the version its package declares."""
    version_file = src / "alphafold3" / "version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.strip().startswith("__version__"):
                return "version:" + line.split("=", 1)[1].strip().strip("'\"")
    return "unknown"


def _installed_package() -> bool:
    return importlib.util.find_spec("alphafold3") is not None


def _package_version() -> str:
    from importlib import metadata

    try:
        return "package:" + metadata.version("alphafold3")
    except metadata.PackageNotFoundError:
        return "package:unknown"


def locate() -> Source:
    """Find the source or raise :class:`af3core.source.SourceNotFound` (``reason``, ``fix``)."""
    try:
        found = SOURCE.locate()
    except SourceNotFound as exc:
        if os.environ.get(SOURCE.env_var):
            raise  # the variable names a folder without the source: say so, never fall back
        if not _installed_package():
            raise SourceNotFound(f"{exc.reason}, and no importable alphafold3 package", exc.fix) from None
        return Source(None, "installed package", _package_version())
    version = found.version if found.version != "unknown" else _version_file(found.root)
    return Source(found.root, found.origin, version)
