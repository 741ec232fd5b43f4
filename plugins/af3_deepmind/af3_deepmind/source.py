"""Where DeepMind's AlphaFold 3 source is, and which version it is. Light: no jax, no alphafold3 import.

Search order (the first hit wins):
1. ``AF3_DEEPMIND_SRC``: a checkout of github.com/google-deepmind/alphafold3, or its ``src/``;
2. ``third_party/alphafold3_deepmind`` under the current directory, then under the af3-bench
   repository this plugin sits in (``plugins/af3_deepmind/../../third_party``);
3. an importable ``alphafold3`` package (e.g. ``pip install`` of DeepMind's repo with its C++ build).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from af3core.provenance import COMMIT_MARKER, source_commit

ENV_VAR = "AF3_DEEPMIND_SRC"
PINNED_COMMIT = "c0f97ed"
REPO_URL = "https://github.com/google-deepmind/alphafold3"
THIRD_PARTY = Path("third_party") / "alphafold3_deepmind"
#: Written next to an exported (``git archive``) tree, which has no ``.git`` to ask.
COMMIT_FILE = COMMIT_MARKER
FIX = (
    f"set {ENV_VAR} or clone {REPO_URL} at {PINNED_COMMIT} into third_party/alphafold3_deepmind "
    f"(git clone {REPO_URL} third_party/alphafold3_deepmind && "
    f"git -C third_party/alphafold3_deepmind checkout {PINNED_COMMIT})"
)


class SourceNotFound(Exception):
    def __init__(self, reason: str):
        super().__init__(f"{reason}; {FIX}")
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """A located AF3 source: ``path`` goes on ``sys.path`` (None: already importable)."""

    path: Path | None
    origin: str  # "AF3_DEEPMIND_SRC", "third_party" or "installed package"
    version: str  # "git:<commit>" or "package:<version>"

    @property
    def root(self) -> Path | None:
        """The checkout root (parent of ``src/``), where the commit can be read."""
        return self.path.parent if self.path is not None else None


def _src_dir(candidate: Path) -> Path | None:
    """``candidate`` or ``candidate/src``, whichever holds ``alphafold3/model/model.py``."""
    for path in (candidate / "src", candidate):
        if (path / "alphafold3" / "model" / "model.py").is_file():
            return path.resolve()
    return None


def _repo_root_of_plugin() -> Path:
    return Path(__file__).resolve().parents[3]  # af3_deepmind/ -> plugins/af3_deepmind -> plugins -> repo


def _version_of(src: Path) -> str:
    commit = source_commit(src.parent) or source_commit(src)
    if commit:
        return f"git:{commit}"
    version_file = src / "alphafold3" / "version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.strip().startswith("__version__"):
                return "version:" + line.split("=", 1)[1].strip().strip("'\"")
    return "unknown"


def _installed_package() -> bool:
    return importlib.util.find_spec("alphafold3") is not None


def locate() -> Source:
    """Find the source or raise :class:`SourceNotFound` with the reason (and the fix)."""
    env = os.environ.get(ENV_VAR)
    if env:
        src = _src_dir(Path(env).expanduser())
        if src is None:
            raise SourceNotFound(f"{ENV_VAR}={env} holds no alphafold3/model/model.py (nor src/alphafold3/...)")
        return Source(src, ENV_VAR, _version_of(src))
    for base in (Path.cwd(), _repo_root_of_plugin()):
        src = _src_dir(base / THIRD_PARTY)
        if src is not None:
            return Source(src, "third_party", _version_of(src))
    if _installed_package():
        from importlib import metadata

        try:
            version = "package:" + metadata.version("alphafold3")
        except metadata.PackageNotFoundError:
            version = "package:unknown"
        return Source(None, "installed package", version)
    raise SourceNotFound("DeepMind's AlphaFold 3 source was not found")
