"""Where Ligo's AlphaFold 3 source is, and the model yaml inside it. Light: no torch, no Ligo import.

Search order (the first hit wins; :class:`af3core.source.EngineSource`):
1. ``AF3_LIGO_SRC``: a checkout of github.com/Ligo-Biosciences/AlphaFold3 (the folder holding
   ``src/`` and ``configs/``);
2. ``third_party/alphafold3_ligo`` in each third-party folder af3core knows
   (:func:`af3core.source.third_party_dirs`: ``$AF3_THIRD_PARTY``, ``./third_party``, the af3-bench
   checkout's ``third_party``).
The repo is not a Python package (its modules import each other as ``src.*``), so there is no
installed-package fallback.
"""
from __future__ import annotations

from pathlib import Path

from af3core.source import EngineSource

#: The model the plugin builds, and the configuration it is built from.
MODEL_FILE = "src/models/model.py"
CONFIG_FILE = "configs/model/alphafold3.yaml"

SOURCE = EngineSource(
    name="Ligo AlphaFold 3",
    env_var="AF3_LIGO_SRC",
    folder="alphafold3_ligo",
    repo_url="https://github.com/Ligo-Biosciences/AlphaFold3",
    pinned_commit="621531e",
    required=(MODEL_FILE, CONFIG_FILE),
)


def config_file(root: Path) -> Path:
    """The model yaml of the checkout at ``root`` (``SOURCE.locate().root``)."""
    return root / CONFIG_FILE
