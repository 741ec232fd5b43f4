"""From resolved settings to one DeepMind AF3 graph ready to compile: source import, stand-ins,
synthetic batch, random parameters, all on the device.

What the runner's ``setup`` needs (``af3 bench --in-process`` runs that same runner in the host
process). Heavy imports (jax, haiku, alphafold3) happen inside :func:`build` only.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Mapping

from af3core.jaxrun import count_haiku_params, jax_device
from af3core.source import SourceNotFound

from af3_deepmind import source as source_mod
from af3_deepmind.settings import CPU_ATTENTION, resolve_attention

#: Environment variables that change memory figures or compilation; recorded with every result.
RECORDED_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_CLIENT_MEM_FRACTION", "XLA_FLAGS", "TF_GPU_ALLOCATOR")


class BuildError(Exception):
    """A problem the user can fix (missing source, setting unusable on this device)."""


@dataclasses.dataclass
class Built:
    forward: Any  # hk.Transformed of the model for this mode
    params: Any  # on the device
    batch: dict  # on the device
    key: Any  # the model's RNG key (fixed: every pass runs the same work)
    device: Any
    facts: dict[str, Any]


def import_source() -> tuple[source_mod.Source, dict[str, str], dict[str, Any]]:
    """Locate and import DeepMind's package with stand-ins only where modules are absent."""
    try:
        src = source_mod.locate()
    except SourceNotFound as exc:
        raise BuildError(str(exc)) from None
    if src.path is not None and str(src.path) not in sys.path:
        sys.path.insert(0, str(src.path))
    from af3_deepmind import compat, standins

    import alphafold3  # noqa: F401 - the real package must import before stand-ins go under it

    try:
        report = standins.install()
    except standins.BrokenModule as exc:
        raise BuildError(str(exc)) from None
    fixes = {"absl_flags_initialised": compat.init_absl_flags(), "pallas_dot_patched": compat.patch_pallas_dot()}
    return src, report, fixes


def build(mode: str, tokens: int, settings: Mapping[str, Any], device_type: str) -> Built:
    from af3_deepmind.batch import ATOMS_PER_TOKEN, BatchSpec, make_batch

    attention = resolve_attention(settings["attention"], device_type)
    if device_type == "cpu" and attention not in CPU_ATTENTION:
        raise BuildError(f"attention={attention} needs a GPU; on a CPU use one of {', '.join(CPU_ATTENTION)}")
    src, standin_report, fixes = import_source()

    import jax
    import jaxlib

    from af3_deepmind import model as model_mod

    device = jax_device(device_type, BuildError)
    seed = int(settings["seed"])
    t0 = time.perf_counter()
    spec = BatchSpec(
        num_tokens=tokens,
        msa_pad_rows=int(settings["msa_pad_rows"]),
        msa_depth=int(settings["msa_pad_rows"]),  # a full alignment: the pipeline pads to this anyway
        templates=int(settings["templates"]),
        seed=seed,
    )
    host_batch = make_batch(spec)
    t1 = time.perf_counter()
    config = model_mod.make_config(mode, settings, attention)
    forward = model_mod.transformed(mode, config)
    host_params = model_mod.random_params(forward, host_batch, seed=seed)
    t2 = time.perf_counter()
    # Inputs live on the device before anything is timed: a pass never includes host transfers.
    params = jax.device_put(host_params, device)
    batch = jax.device_put(host_batch, device)
    key = jax.device_put(jax.random.PRNGKey(seed), device)
    jax.block_until_ready((params, batch, key))

    standins_used = sorted(name for name, how in standin_report.items() if how != "real")
    facts: dict[str, Any] = {
        "engine_source_version": src.version,
        "engine_source": str(src.path) if src.path is not None else src.origin,
        "engine_source_origin": src.origin,
        "n_params": count_haiku_params(host_params),
        "param_dtypes": model_mod.dtype_summary(host_params),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "backend": device.platform,
        "device_kind": device.device_kind,
        "attention": attention,
        "kernels": f"attention {attention}",  # af3core's summary column
        "glu": "tokamax auto (triton, else xla)" if device.platform == "gpu" else "xla",
        "bf16": bool(settings["bf16"]),
        "recycles": int(settings["recycles"]),
        "diffusion_steps": int(settings["diffusion_steps"]) if mode != "trunk" else None,
        "samples": int(settings["samples"]) if mode != "trunk" else None,
        "msa_rows": int(settings["msa_rows"]),
        "msa_pad_rows": spec.msa_pad_rows,
        "templates": spec.templates,
        "atoms_per_token": ATOMS_PER_TOKEN,
        "num_atoms": spec.num_atoms,
        "pair_transition_shard_spec": str(settings["pair_transition_shard_spec"]),
        "toy_depths": ",".join(f"{k}={v}" for k, v in model_mod.TOY_DEPTHS.items()) if mode == "toy" else None,
        "standins": ",".join(standins_used) or "none",
        "pallas_dot_patched": fixes["pallas_dot_patched"],
        "batch_ms": (t1 - t0) * 1e3,
        "params_ms": (t2 - t1) * 1e3,
    }
    for name in RECORDED_ENV:
        facts[f"env_{name}"] = os.environ.get(name)
    return Built(forward, params, batch, key, device, facts)

