"""Registers the ``protenix`` engine. Cheap: imports neither torch nor Protenix (the worker does;
importing ``protenix.model`` imports rdkit and scipy, and JIT-compiles a CUDA LayerNorm unless
``LAYERNORM_TYPE`` says otherwise)."""
from __future__ import annotations

from af3core import ENGINE, Availability, Plugin, hookimpl, installed_distribution, package_check

from af3_protenix.settings import PRESETS, SETTINGS, check_seq_len, validate

DISTRIBUTION = "protenix"
VERSION = "2.0.0"  # the version this plugin was written and checked against
FIX = (f"pip install --no-deps {DISTRIBUTION}=={VERSION} && pip install 'af3-protenix[run]' "
       "(or: bash scripts/setup.sh, which does both; docs/PROTENIX.md)")
#: What the model, its config modules and the plugin import, by importable name (without the
#: package's packaging-only dependencies: pandas, deepspeed, wandb, pdbeccdutils, modelcif...).
#: ``configs`` is the top-level config package the protenix wheel installs beside ``protenix``.
NEEDS = ("torch", "numpy", "scipy", "ml_collections", "optree", "rdkit", "configs")


def installed() -> str | None:
    """The installed Protenix's version, or None."""
    found = installed_distribution(DISTRIBUTION)
    return found[1] if found else None


def check() -> Availability:
    return package_check("Protenix", (DISTRIBUTION,), "protenix", NEEDS, FIX)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="protenix",
            kind=ENGINE,
            runner="af3_protenix.runner:ProtenixRunner",
            description="Protenix (protenix.model.protenix.Protenix), random parameters, synthetic features, "
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
            check_seq_len=check_seq_len,
            libraries=(DISTRIBUTION, "ml-collections", "optree", "rdkit", "cuequivariance-torch",
                       "deepspeed"),
        )
    )
