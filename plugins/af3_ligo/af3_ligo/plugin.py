"""Registers the ``ligo`` engine. Cheap: imports neither torch nor Ligo's code (the worker does)."""
from __future__ import annotations

import importlib.util

from af3core import ENGINE, Availability, Plugin, hookimpl
from af3core.source import SourceNotFound

from af3_ligo import config as ligo_config
from af3_ligo.settings import PRESETS, SETTINGS, check_seq_len, validate
from af3_ligo.source import SOURCE


def check() -> Availability:
    try:
        src = SOURCE.locate()
    except SourceNotFound as exc:
        return Availability.no(exc.reason, exc.fix)
    if importlib.util.find_spec("torch") is None:
        return Availability.no("PyTorch is not installed", "pip install torch")
    return Availability.yes(source_version=src.version)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="ligo",
            kind=ENGINE,
            runner="af3_ligo.runner:LigoRunner",
            description="Ligo Biosciences' AlphaFold 3 in PyTorch (src.models.model.AlphaFold3), random "
                        "parameters, synthetic batch, eval + no_grad",
            modes=("toy", "trunk", "full"),
            default_mode="trunk",
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset="small",
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            check_seq_len=check_seq_len,
            setting_prefixes=(ligo_config.PREFIX,),
            libraries=("numpy", "scipy", "einops", "pyyaml"),
        )
    )
