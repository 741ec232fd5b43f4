"""Registers the ``esm2`` engine. Cheap: imports neither torch nor esm (the worker does)."""
from __future__ import annotations

import importlib.metadata
import importlib.util

from af3core import ENGINE, Availability, Plugin, hookimpl

from af3_esm2.settings import PRESETS, SETTINGS, check_seq_len, validate

DISTRIBUTION = "fair-esm"
FIX = "pip install fair-esm==2.0.0 (or: pip install 'af3-esm2[run]'; bash scripts/setup.sh does it; docs/ESM2.md)"


def installed() -> str | None:
    """The installed fair-esm version, or None."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def check() -> Availability:
    version = installed()
    if version is None or importlib.util.find_spec("esm") is None:
        return Availability.no("fair-esm (ESM-2) is not installed", FIX)
    try:  # EvolutionaryScale's `esm` (ESM3/ESM C) installs a package of the same name over fair-esm's
        other = importlib.metadata.version("esm")
    except importlib.metadata.PackageNotFoundError:
        other = None
    if other is not None:
        return Availability.no(f"the `esm` distribution {other} (EvolutionaryScale) shadows fair-esm's `esm` package",
                               "pip uninstall esm && pip install --force-reinstall fair-esm==2.0.0 (or use a "
                               "separate environment: AF3_PYTHON_ESM2)")
    if importlib.util.find_spec("torch") is None:
        return Availability.no("ESM-2 needs torch", FIX)
    return Availability.yes(source_version=f"{DISTRIBUTION} {version}")


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="esm2",
            kind=ENGINE,
            runner="af3_esm2.runner:ESM2Runner",
            description="ESM-2 protein language model (esm.model.esm2.ESM2) at a released size, random parameters, "
                        "synthetic sequences; --seq-len is residues per sequence",
            modes=("toy", "embed"),
            default_mode="embed",
            default_seq_lens={"cpu": (100,), "cuda": (400,)},
            default_passes=10,
            default_warmup=1,
            settings=SETTINGS,
            presets=PRESETS,
            default_preset={"cpu": "small", "cuda": "default"},
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            check_seq_len=check_seq_len,
            libraries=(DISTRIBUTION, "torchao"),
        )
    )
