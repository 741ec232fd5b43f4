"""Registers the ``alphafold2`` engine. Light: imports neither jax nor DeepMind's code."""
from __future__ import annotations

import importlib.util

from af3core import ENGINE, Availability, Plugin, hookimpl
from af3core.source import SourceNotFound

from af3_alphafold2 import source
from af3_alphafold2.settings import PRESETS, SETTINGS, check_seq_len, validate

#: What AlphaFold 2's model path imports besides numpy (no TensorFlow: features.py is never imported).
REQUIRED_MODULES = {
    "jax": "jax",
    "haiku": "dm-haiku",
    "ml_collections": "ml-collections",
    "numpy": "numpy",
}


def check() -> Availability:
    try:
        src = source.locate()
    except SourceNotFound as exc:
        return Availability.no(exc.reason, exc.fix)
    missing = [pip for mod, pip in REQUIRED_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        return Availability.no(
            f"DeepMind's AlphaFold 2 model needs {', '.join(missing)}", f"pip install {' '.join(missing)}"
        )
    return Availability.yes(source_version=src.version)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="alphafold2",
            kind=ENGINE,
            runner="af3_alphafold2.runner:AlphaFold2Runner",
            description="DeepMind AlphaFold 2 (JAX/Haiku, model_1_ptm): the real model graph, random parameters, "
                        "synthetic features",
            modes=("trunk", "full"),
            default_mode="trunk",
            # compile() only lowers and compiles; the first execution still pays one-time costs.
            default_warmup=1,
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset="small",
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            check_seq_len=check_seq_len,
            libraries=("dm-haiku", "ml-collections"),
            # Preallocation off so NVML's per-process figure is what JAX really uses (the
            # ``preallocate`` setting turns it back on).
            env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
        )
    )
