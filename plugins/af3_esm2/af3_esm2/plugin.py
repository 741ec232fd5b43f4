"""Registers the ``esm2`` engine. Cheap: imports neither torch nor esm (the worker does)."""
from __future__ import annotations

from af3core import ENGINE, Availability, Plugin, hookimpl, installed_distribution, package_check

from af3_esm2.settings import PRESETS, SETTINGS, check_seq_len, validate

DISTRIBUTION = "fair-esm"
FIX = "pip install fair-esm==2.0.0 (or: pip install 'af3-esm2[run]'; bash scripts/setup.sh does it; docs/ESM2.md)"


def installed() -> str | None:
    """The installed fair-esm version, or None."""
    found = installed_distribution(DISTRIBUTION)
    return found[1] if found else None


def check() -> Availability:
    shadow = installed_distribution("esm")
    if shadow is not None:  # EvolutionaryScale's `esm` (ESM3/ESM C) installs a package of the same name
        return Availability.no(f"the `esm` distribution {shadow[1]} (EvolutionaryScale) shadows fair-esm's `esm` "
                               "package", "pip uninstall esm && pip install --force-reinstall fair-esm==2.0.0 (or "
                                          "use a separate environment: AF3_PYTHON_ESM2)")
    return package_check("fair-esm (ESM-2)", (DISTRIBUTION,), "esm", ("torch",), FIX)


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
