"""Registers the ``openfold3`` engine. Cheap: imports neither torch nor OpenFold3 (the worker does;
importing the ``openfold3`` package itself imports gemmi and, when installed, deepspeed)."""
from __future__ import annotations

from af3core import ENGINE, Availability, Plugin, hookimpl, installed_distribution, package_check

from af3_openfold3.settings import PRESETS, SETTINGS, validate

DISTRIBUTION = "openfold3"
VERSION = "0.5.0"  # the version this plugin was written and checked against
FIX = (f"pip install --no-deps {DISTRIBUTION}=={VERSION} && pip install 'af3-openfold3[run]' "
       "(or: bash scripts/setup.sh, which does both; docs/OPENFOLD3.md)")
#: What the model, its config entry point and the plugin import, by importable name (without the
#: package's packaging-only dependencies: pandas, rdkit, pdbeccdutils, boto3, wandb...).
NEEDS = ("torch", "numpy", "scipy", "yaml", "ml_collections", "absl", "gemmi", "biotite", "pydantic",
         "pytorch_lightning", "torchmetrics")


def installed() -> str | None:
    """The installed OpenFold3's version, or None."""
    found = installed_distribution(DISTRIBUTION)
    return found[1] if found else None


def check() -> Availability:
    return package_check("OpenFold3", (DISTRIBUTION,), "openfold3", NEEDS, FIX)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="openfold3",
            kind=ENGINE,
            runner="af3_openfold3.runner:OpenFold3Runner",
            description="OpenFold3 (openfold3.projects.of3_all_atom.model.OpenFold3), random parameters, "
                        "synthetic batch, inference mode",
            modes=("toy", "trunk", "full"),
            default_mode="trunk",
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset={"cpu": "small", "cuda": "default"},
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            libraries=(DISTRIBUTION, "ml-collections", "biotite", "gemmi", "pytorch-lightning",
                       "cuequivariance-torch", "deepspeed"),
        )
    )
