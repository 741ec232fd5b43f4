"""DeepMind's Haiku model, configured from the benchmark's settings, with random parameters.

``full`` is ``alphafold3.model.model.Model`` unmodified. ``trunk`` is :class:`TrunkModel`, a
subclass whose ``__call__`` stops after the trunk: the same target-feature embedding and the same
Evoformer inside the same ``hk.fori_loop`` recycle loop as ``Model.__call__``, without diffusion,
confidence and distogram heads. Its parameter names are a subset of the full model's.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

#: Reduced network for ``toy`` mode: every stack kept (so every kernel still runs), depths cut.
TOY_DEPTHS = {
    "evoformer.pairformer.num_layer": 2,
    "evoformer.msa_stack.num_layer": 1,
    "evoformer.template.template_stack.num_layer": 1,
    "heads.diffusion.transformer.num_blocks": 4,  # a multiple of super_block_size (4)
    "heads.confidence.pairformer.num_layer": 1,
}


def _set_path(config, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        config = getattr(config, name)
    setattr(config, leaf, value)


def make_config(mode: str, settings: Mapping[str, Any], attention: str):
    """The ``Model.Config`` run_alphafold.py's ``make_model_config`` builds, plus our knobs."""
    from alphafold3.model import model

    from af3_deepmind.settings import parse_shard_spec

    config = model.Model.Config()
    # The four fields DeepMind's make_model_config sets.
    config.global_config.flash_attention_implementation = attention
    config.heads.diffusion.eval.num_samples = int(settings["samples"])
    config.num_recycles = int(settings["recycles"])
    config.return_embeddings = False
    # The rest of the benchmark's knobs.
    config.heads.diffusion.eval.steps = int(settings["diffusion_steps"])
    config.evoformer.num_msa = int(settings["msa_rows"])
    config.global_config.bfloat16 = "all" if settings["bf16"] else "none"
    config.global_config.pair_transition_shard_spec = parse_shard_spec(settings["pair_transition_shard_spec"])
    if mode == "toy":
        for path, value in TOY_DEPTHS.items():
            _set_path(config, path, value)
    return config


def _trunk_model_class():
    import haiku as hk
    import jax
    import jax.numpy as jnp
    from alphafold3.model import feat_batch, model
    from alphafold3.model.network import evoformer as evoformer_network

    class TrunkModel(model.Model):
        """``Model.__call__`` up to the end of the recycle loop; returns the trunk embeddings."""

        def __call__(self, batch, key=None):
            if key is None:
                key = hk.next_rng_key()
            batch = feat_batch.Batch.from_data_dict(batch)
            embedding_module = evoformer_network.Evoformer(self.config.evoformer, self.global_config)
            target_feat = model.create_target_feat_embedding(
                batch=batch, config=embedding_module.config, global_config=self.global_config
            )

            # Same body, initial state and loop as Model.__call__ (model.py, c0f97ed).
            def recycle_body(_, args):
                prev, key = args
                key, subkey = jax.random.split(key)
                embeddings = embedding_module(batch=batch, prev=prev, target_feat=target_feat, key=subkey)
                embeddings["pair"] = embeddings["pair"].astype(jnp.float32)
                embeddings["single"] = embeddings["single"].astype(jnp.float32)
                return embeddings, key

            num_res = batch.num_res
            embeddings = {
                "pair": jnp.zeros([num_res, num_res, self.config.evoformer.pair_channel], dtype=jnp.float32),
                "single": jnp.zeros([num_res, self.config.evoformer.seq_channel], dtype=jnp.float32),
                "target_feat": target_feat,
            }
            if hk.running_init():
                embeddings, _ = recycle_body(None, (embeddings, key))
            else:
                num_iter = self.config.num_recycles + 1
                embeddings, _ = hk.fori_loop(0, num_iter, recycle_body, (embeddings, key))
            return {"single": embeddings["single"], "pair": embeddings["pair"]}

    return TrunkModel


def transformed(mode: str, config):
    """``hk.transform`` of the full model (toy and full) or of the trunk-only subclass."""
    import haiku as hk
    from alphafold3.model import model

    cls = _trunk_model_class() if mode == "trunk" else model.Model

    def forward(batch):
        return cls(config)(batch)

    return hk.transform(forward)


def random_params(transformed_fn, batch: Mapping[str, np.ndarray], seed: int = 0):
    """Random parameters with the shapes ``init`` would create, in seconds
    (:func:`af3core.jaxrun.random_haiku_params`: N(0, 1/fan_in) weights in the dtype ``init``
    declares, bf16 for most weights when ``bf16`` is on; layer-norm scales 1, offsets and biases 0).
    ``jax.eval_shape(init)`` traces the model without compiling or running it."""
    import jax

    from af3core.jaxrun import random_haiku_params

    # Initialise on a copy of the batch with one template slot: hk.scan over zero templates
    # creates no parameters, while parameter shapes never depend on the slot count.
    init_batch = dict(batch)
    if batch["template_aatype"].shape[0] == 0:
        for key in ("template_aatype", "template_atom_positions", "template_atom_mask"):
            init_batch[key] = np.zeros((1,) + batch[key].shape[1:], batch[key].dtype)
    shapes = jax.eval_shape(transformed_fn.init, jax.random.PRNGKey(seed), init_batch)
    # leading axes added by hk.layer_stack
    return random_haiku_params(shapes, seed, lambda module: module.count("__layer_stack"))


def dtype_summary(params) -> str:
    """E.g. ``"bfloat16:301234567,float32:1234"``: parameter counts per dtype."""
    counts: dict[str, int] = {}
    for leaves in params.values():
        for v in leaves.values():
            counts[str(v.dtype)] = counts.get(str(v.dtype), 0) + int(np.prod(v.shape))
    return ",".join(f"{k}:{n}" for k, n in sorted(counts.items()))
