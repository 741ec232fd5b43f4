"""Registers the ``deepmind`` engine. Light: imports neither jax nor DeepMind's code."""
from __future__ import annotations

import importlib.util

from af3core import ENGINE, Availability, Plugin, hookimpl
from af3core.source import SourceNotFound

from af3_deepmind import source
from af3_deepmind.settings import PRESETS, SETTINGS, check_seq_len, validate

#: Needed by DeepMind's model code on the forward path (the rest is stood in when absent).
REQUIRED_MODULES = {
    "jax": "jax",
    "haiku": "dm-haiku==0.0.17",
    "tokamax": "tokamax==0.0.12",
    "absl": "absl-py",
    "numpy": "numpy",
    "scipy": "scipy",
    # what haiku and tokamax import on the model's path (a --no-deps install can lack them)
    "etils": "etils",
    "tqdm": "tqdm",
    "jaxtyping": "jaxtyping",
    "typeguard": "typeguard==2.13.3",
    "immutabledict": "immutabledict",
    "einshape": "einshape",
}


def check() -> Availability:
    try:
        src = source.locate()
    except SourceNotFound as exc:
        return Availability.no(exc.reason, exc.fix)
    missing = [pip for mod, pip in REQUIRED_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        return Availability.no(
            f"DeepMind's model needs {', '.join(missing)}", f"pip install {' '.join(missing)}"
        )
    return Availability.yes(source_version=src.version)


@hookimpl
def register_plugins(register):
    register(
        Plugin(
            name="deepmind",
            kind=ENGINE,
            runner="af3_deepmind.runner:DeepMindRunner",
            description="DeepMind AlphaFold 3 (JAX/Haiku): the real model graph, random parameters, synthetic input",
            modes=("toy", "trunk", "full"),
            default_mode="trunk",
            # compile() only lowers and compiles; the first execution still pays one-time costs
            # (measured on an H100, small preset, full, 256 tokens: 277 ms first pass vs 223 ms for later ones).
            default_warmup=1,
            default_seq_lens={"cpu": (32,), "cuda": (256,)},
            settings=SETTINGS,
            presets=PRESETS,
            default_preset="small",
            devices=("cpu", "cuda"),
            check=check,
            validate=validate,
            check_seq_len=check_seq_len,
            libraries=("dm-haiku", "tokamax", "absl-py", "scipy"),
            # Preallocation off so NVML's per-process figure is what JAX really uses (the
            # ``preallocate`` setting turns it back on); XLA_FLAGS as DeepMind's Dockerfile sets it
            # (Triton GEMM off avoids a known compile-time blow-up).
            env={
                "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                "XLA_FLAGS": "--xla_gpu_enable_triton_gemm=false",
            },
        )
    )
