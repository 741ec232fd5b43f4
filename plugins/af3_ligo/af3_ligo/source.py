"""Where Ligo's AlphaFold 3 source is, and which version it is. Light: no torch, no Ligo import.

Search order (the first hit wins):
1. ``AF3_LIGO_SRC``: a checkout of github.com/Ligo-Biosciences/AlphaFold3 (the folder holding
   ``src/`` and ``configs/``);
2. ``third_party/alphafold3_ligo`` under the current directory, then under the af3-bench
   repository this plugin sits in (``plugins/af3_ligo/../../third_party``).
The repo is not a Python package (its modules import each other as ``src.*``), so there is no
installed-package fallback.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from af3core.provenance import COMMIT_MARKER, source_commit

ENV_VAR = "AF3_LIGO_SRC"
PINNED_COMMIT = "621531e"
REPO_URL = "https://github.com/Ligo-Biosciences/AlphaFold3"
THIRD_PARTY = Path("third_party") / "alphafold3_ligo"
#: Written next to an exported (``git archive``) tree, which has no ``.git`` to ask.
COMMIT_FILE = COMMIT_MARKER
#: The two files the plugin needs: the model and the configuration it is built from.
MODEL_FILE = Path("src") / "models" / "model.py"
CONFIG_FILE = Path("configs") / "model" / "alphafold3.yaml"
FIX = (
    f"set {ENV_VAR} to a checkout of {REPO_URL}, or clone it at {PINNED_COMMIT} into "
    f"third_party/alphafold3_ligo (git clone {REPO_URL} third_party/alphafold3_ligo && "
    f"git -C third_party/alphafold3_ligo checkout {PINNED_COMMIT})"
)


class SourceNotFound(Exception):
    def __init__(self, reason: str):
        super().__init__(f"{reason}; fix: {FIX}")
        self.reason = reason


@dataclass(frozen=True)
class Source:
    """A located checkout: ``root`` goes on ``sys.path`` so that ``import src.models...`` works."""

    root: Path
    origin: str  # "AF3_LIGO_SRC" or "third_party"
    version: str  # "git:<commit>" or "unknown"

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE


def _is_checkout(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() and (path / CONFIG_FILE).is_file()


def _repo_root_of_plugin() -> Path:
    return Path(__file__).resolve().parents[3]  # af3_ligo/ -> plugins/af3_ligo -> plugins -> repo


def version_of(root: Path) -> str:
    commit = source_commit(root)
    return f"git:{commit}" if commit else "unknown"


def locate() -> Source:
    """Find the source or raise :class:`SourceNotFound` with the reason and the fix."""
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_checkout(root):
            raise SourceNotFound(f"{ENV_VAR}={env} holds no {MODEL_FILE} and {CONFIG_FILE}")
        return Source(root, ENV_VAR, version_of(root))
    for base in (Path.cwd(), _repo_root_of_plugin()):
        root = (base / THIRD_PARTY).resolve()
        if _is_checkout(root):
            return Source(root, "third_party", version_of(root))
    raise SourceNotFound("Ligo's AlphaFold 3 source was not found (AF3_LIGO_SRC unset, no third_party/alphafold3_ligo)")
