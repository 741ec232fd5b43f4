"""From resolved settings to one AlphaFold 2 graph ready to compile: source import, the jnp.clip
fix, synthetic features, random parameters, all on the device.

What the runner's ``setup`` needs (``af3 bench --in-process`` runs that same runner in the host
process). Heavy imports (jax, haiku, alphafold) happen inside :func:`build` only.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Mapping

from af3core.jaxrun import count_haiku_params, jax_device
from af3core.source import SourceNotFound

from af3_alphafold2 import source as source_mod

#: Environment variables that change memory figures or compilation; recorded with every result.
RECORDED_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_CLIENT_MEM_FRACTION", "XLA_FLAGS")


class BuildError(Exception):
    """A problem the user can fix (missing source, missing library, no such device)."""


@dataclasses.dataclass
class Built:
    forward: Any  # hk.Transformed of the model for this mode
    params: Any  # on the device
    batch: dict  # on the device
    key: Any  # the model's RNG key (fixed: every pass runs the same work)
    device: Any
    matmul_precision: str
    facts: dict[str, Any]


def import_source() -> tuple[source_mod.Source, dict[str, Any]]:
    """Locate DeepMind's AlphaFold 2 source, put it on ``sys.path`` and apply the jnp.clip fix."""
    try:
        src = source_mod.locate()
    except SourceNotFound as exc:
        raise BuildError(str(exc)) from None
    if str(src.path) not in sys.path:
        sys.path.insert(0, str(src.path))
    try:
        import haiku  # noqa: F401
        import ml_collections  # noqa: F401
    except ImportError as exc:
        raise BuildError(f"DeepMind's AlphaFold 2 model needs {exc.name}: pip install dm-haiku ml-collections") from None
    from af3_alphafold2 import compat

    return src, {"clip_keywords_patched": compat.patch_clip_keywords()}


def build(mode: str, residues: int, settings: Mapping[str, Any], device_type: str) -> Built:
    src, fixes = import_source()

    import jax
    import jaxlib

    from af3_alphafold2 import features as features_mod
    from af3_alphafold2 import model as model_mod

    device = jax_device(device_type, BuildError)
    seed = int(settings["seed"])
    t0 = time.perf_counter()
    spec = features_mod.FeatureSpec(
        num_res=residues,
        recycles=int(settings["recycles"]),
        msa_rows=int(settings["msa_rows"]),
        extra_msa_rows=int(settings["extra_msa_rows"]),
        templates=int(settings["templates"]),
        seed=seed,
    )
    host_batch = features_mod.make_features(spec)
    t1 = time.perf_counter()
    cfg = model_mod.make_config(settings)
    forward = model_mod.transformed(mode, cfg)
    precision = str(settings["matmul_precision"])  # applied where the runner traces the forward
    host_params = model_mod.random_params(mode, cfg, host_batch, seed=seed)
    t2 = time.perf_counter()
    # Inputs live on the device before anything is timed: a pass never includes host transfers.
    params = jax.device_put(host_params, device)
    batch = jax.device_put(host_batch, device)
    key = jax.device_put(jax.random.PRNGKey(seed), device)
    jax.block_until_ready((params, batch, key))

    emb = cfg.model.embeddings_and_evoformer
    facts: dict[str, Any] = {
        "engine_source_version": src.version,
        "engine_source": str(src.path),
        "engine_source_origin": src.origin,
        "model_config": model_mod.MODEL_NAME,
        "n_params": count_haiku_params(host_params),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "backend": device.platform,
        "device_kind": device.device_kind,
        "evoformer_blocks": int(emb.evoformer_num_block),
        "extra_msa_blocks": int(emb.extra_msa_stack_num_block),
        "structure_layers": int(cfg.model.heads.structure_module.num_layer) if mode == "full" else None,
        "recycles": spec.recycles,
        "feature_leading_dim": spec.ensemble,
        "msa_rows": spec.msa_rows,
        "extra_msa_rows": spec.extra_msa_rows,
        "templates": spec.templates,
        "template_embedding": bool(emb.template.enabled),
        "subbatch_size": cfg.model.global_config.subbatch_size,
        "matmul_precision": precision,
        "dtype": "float32",
        "clip_keywords_patched": fixes["clip_keywords_patched"],
        "features_ms": (t1 - t0) * 1e3,
        "params_ms": (t2 - t1) * 1e3,
    }
    for name in RECORDED_ENV:
        facts[f"env_{name}"] = os.environ.get(name)
    return Built(forward, params, batch, key, device, precision, facts)
