"""Registers the ``boltz`` engine. Cheap: imports neither torch nor Boltz (the worker does)."""
from __future__ import annotations

from af3core import ENGINE, Availability, Plugin, hookimpl, installed_distribution, package_check

from af3_boltz.settings import PRESETS, SETTINGS, validate

#: The distributions that provide the ``boltz`` package: upstream, and the maintained fork.
DISTRIBUTIONS = ("boltz", "boltz-community")
FIX = ("pip install --no-deps boltz==2.2.1 && pip install 'af3-boltz[run]' "
       "(or: bash scripts/setup.sh, which does both; docs/BOLTZ.md)")


def installed() -> tuple[str, str] | None:
    """(distribution, version) of the installed Boltz, or None."""
    return installed_distribution(*DISTRIBUTIONS)


def check() -> Availability:
    return package_check("Boltz", DISTRIBUTIONS, "boltz", ("torch", "pytorch_lightning", "rdkit", "einx"), FIX)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="boltz",
            kind=ENGINE,
            runner="af3_boltz.runner:BoltzRunner",
            description="Boltz-2 (boltz.model.models.boltz2.Boltz2), random parameters, synthetic batch, "
                        "inference mode",
            modes=("toy", "trunk", "full"),
            default_mode="trunk",
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset={"cpu": "small", "cuda": "default"},
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            libraries=DISTRIBUTIONS + ("pytorch-lightning", "rdkit", "einx", "cuequivariance-torch"),
        )
    )
