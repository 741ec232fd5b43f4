"""Where DeepMind's AlphaFold 2 source is, and which version it is. Light: no jax, no alphafold import.

Search order (the first hit wins):
1. ``AF2_SRC``: a checkout (or an exported tree) of github.com/google-deepmind/alphafold;
2. ``third_party/alphafold2`` in each third-party folder af3core knows
   (:func:`af3core.source.third_party_dirs`: ``$AF3_THIRD_PARTY``, ``./third_party``, the af3-bench
   checkout's ``third_party``).

The version is the checkout's commit (its ``.git``, or the ``.af3bench_commit`` marker of a tree
exported with ``git archive``), else ``version:<x.y.z>`` from ``alphafold/version.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from af3core.source import EngineSource, SourceNotFound  # noqa: F401 - SourceNotFound re-exported

SOURCE = EngineSource(
    name="DeepMind AlphaFold 2",
    env_var="AF2_SRC",
    folder="alphafold2",
    repo_url="https://github.com/google-deepmind/alphafold",
    pinned_commit="c77e5d2",  # main, 2026-04-22 (AlphaFold v2.3.2 model code)
    required=("alphafold/model/modules.py", "alphafold/model/config.py"),
)


@dataclass(frozen=True)
class Source:
    """A located AlphaFold 2 source: ``path`` goes on ``sys.path``."""

    path: Path
    origin: str  # "AF2_SRC" or "third_party"
    version: str  # "git:<commit>", "version:<x.y.z>" (alphafold/version.py) or "unknown"


def _version_file(src: Path) -> str:
    """For a tree without a commit (no ``.git``, no marker): the version its package declares."""
    version_file = src / "alphafold" / "version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.strip().startswith("__version__"):
                return "version:" + line.split("=", 1)[1].strip().strip("'\"")
    return "unknown"


def locate() -> Source:
    """Find the source or raise :class:`af3core.source.SourceNotFound` (``reason``, ``fix``)."""
    found = SOURCE.locate()
    version = found.version if found.version != "unknown" else _version_file(found.root)
    return Source(found.root, found.origin, version)
