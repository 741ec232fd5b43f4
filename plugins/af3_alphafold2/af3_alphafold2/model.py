"""DeepMind's AlphaFold 2 Haiku model, configured from the benchmark's settings, with random parameters.

``full`` is ``alphafold.model.modules.AlphaFold`` unmodified, called as ``RunModel`` calls it
(``is_training=False, compute_loss=False, ensemble_representations=True``), built with
``hk.transform`` directly: ``alphafold.model.model`` imports TensorFlow through ``features.py``.

``trunk`` is :class:`TrunkAlphaFold`: the same recycle loop (``hk.while_loop`` over ``num_recycle``
iterations, then a last one, each on its own MSA sample) around ``EmbeddingsAndEvoformer`` alone:
input embedding, recycling embedder, relative positions, templates, extra MSA stack and the 48
Evoformer blocks. Without a structure module there are no positions to recycle, so ``prev_pos``
stays at zeros (its distogram embedding still runs); ``prev_msa_first_row`` and ``prev_pair`` are
recycled as in the full model. Its parameter names are a subset of the full model's.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

MODEL_NAME = "model_1_ptm"


def make_config(settings: Mapping[str, Any]):
    """``config.model_config('model_1_ptm')`` with the benchmark's knobs; returns the full config
    (``.model`` is what ``modules.AlphaFold`` takes)."""
    from alphafold.model import config as af_config

    cfg = af_config.model_config(MODEL_NAME)
    recycles = int(settings["recycles"])
    cfg.data.common.num_recycle = recycles
    cfg.model.num_recycle = recycles
    cfg.data.eval.max_msa_clusters = int(settings["msa_rows"]) + int(settings["templates"])
    cfg.data.common.max_extra_msa = int(settings["extra_msa_rows"])
    cfg.data.eval.max_templates = int(settings["templates"])
    cfg.model.embeddings_and_evoformer.template.max_templates = int(settings["templates"])
    if int(settings["templates"]) == 0:
        cfg.data.common.use_templates = False
        cfg.model.embeddings_and_evoformer.template.enabled = False
        cfg.model.embeddings_and_evoformer.template.embed_torsion_angles = False
    subbatch = int(settings["subbatch_size"])
    cfg.model.global_config.subbatch_size = subbatch if subbatch > 0 else None
    return cfg


def _trunk_classes():
    import haiku as hk
    import jax
    import jax.numpy as jnp
    from alphafold.common import residue_constants
    from alphafold.model import modules

    class TrunkIteration(modules.AlphaFoldIteration):
        """``AlphaFoldIteration`` without heads: one ``EmbeddingsAndEvoformer`` call (same name,
        same parameters)."""

        def __call__(self, ensembled_batch, non_ensembled_batch, is_training, **_):
            batch = {k: v[0] for k, v in ensembled_batch.items()}
            batch.update(non_ensembled_batch)
            evoformer = modules.EmbeddingsAndEvoformer(self.config.embeddings_and_evoformer, self.global_config)
            return evoformer(batch, is_training)

    class TrunkAlphaFold(modules.AlphaFold):
        """``AlphaFold.__call__`` (modules.py, c77e5d2) with the trunk iteration in its loop."""

        def __call__(self, batch, is_training=False):
            impl = TrunkIteration(self.config, self.global_config)
            batch_size, num_residues = batch["aatype"].shape
            num_ensemble = batch_size // (self.config.num_recycle + 1)

            def do_call(prev, recycle_idx):
                def slice_recycle_idx(x):
                    return jax.lax.dynamic_slice_in_dim(x, recycle_idx * num_ensemble, num_ensemble, axis=0)

                return impl(ensembled_batch=jax.tree.map(slice_recycle_idx, batch),
                            non_ensembled_batch=dict(prev), is_training=is_training)

            emb = self.config.embeddings_and_evoformer
            prev = {
                "prev_pos": jnp.zeros([num_residues, residue_constants.atom_type_num, 3]),
                "prev_msa_first_row": jnp.zeros([num_residues, emb.msa_channel]),
                "prev_pair": jnp.zeros([num_residues, num_residues, emb.pair_channel]),
            }

            def get_prev(ret, prev):
                new = {"prev_pos": prev["prev_pos"], "prev_msa_first_row": ret["msa_first_row"],
                       "prev_pair": ret["pair"]}
                return jax.tree.map(jax.lax.stop_gradient, new)

            num_iter = self.config.num_recycle
            if num_iter:
                def body(x):
                    return x[0] + 1, get_prev(do_call(x[1], recycle_idx=x[0]), x[1])

                if hk.running_init():
                    _, prev = body((0, prev))
                else:
                    _, prev = hk.while_loop(lambda x: x[0] < num_iter, body, (0, prev))
            ret = do_call(prev, recycle_idx=num_iter)
            return {"single": ret["single"], "pair": ret["pair"], "msa_first_row": ret["msa_first_row"]}

    return TrunkAlphaFold


def transformed(mode: str, cfg):
    """``hk.transform`` of the full model or of the trunk-only variant."""
    import haiku as hk
    from alphafold.model import modules

    if mode == "trunk":
        cls = _trunk_classes()

        def forward(batch):
            return cls(cfg.model)(batch, is_training=False)
    else:
        def forward(batch):
            return modules.AlphaFold(cfg.model)(
                batch, is_training=False, compute_loss=False, ensemble_representations=True
            )

    return hk.transform(forward)


#: Modules that hk.layer_stack stacks under their own name (modules.py builds them outside the
#: stacked function); inside TemplatePairStack the stacked scope is ``__layer_stack_no_state``.
STACKED_MODULES = ("evoformer_iteration", "extra_msa_stack")


def stack_axes(module: str) -> int:
    """How many leading layer-stack axes the parameters of ``module`` carry."""
    parts = module.split("/")
    return sum(p.startswith("__layer_stack") or p in STACKED_MODULES for p in parts)


def init_shapes(mode: str, cfg, batch: Mapping[str, np.ndarray], seed: int = 0):
    """The parameter shapes ``init`` creates, from ``jax.eval_shape`` (traced, never compiled).

    Parameter shapes depend on neither the recycle count, the chunking nor the sizes, so the trace
    runs with ``num_recycle = 0`` on one recycle's slice of the features (one trace of the
    iteration fewer) and without inference chunking (whose ``hk.scan`` wrappers cost most of the
    tracing time).
    """
    import copy

    import jax

    init_cfg = copy.deepcopy(cfg)
    init_cfg.model.num_recycle = 0
    init_cfg.model.global_config.subbatch_size = None
    init_cfg.model.embeddings_and_evoformer.template.subbatch_size = None
    init_batch = {k: v[:1] for k, v in batch.items()}
    fn = transformed(mode, init_cfg)
    return jax.eval_shape(fn.init, jax.random.PRNGKey(seed), init_batch)


def random_params(mode: str, cfg, batch: Mapping[str, np.ndarray], seed: int = 0):
    """Random parameters with the shapes ``init`` would create, in seconds
    (:func:`af3core.jaxrun.random_haiku_params`: N(0, 1/fan_in) weights without the layer-stack
    axes, layer-norm scales 1, offsets and biases 0, float32); :func:`init_shapes` traces the model
    without compiling or running it."""
    from af3core.jaxrun import random_haiku_params

    return random_haiku_params(init_shapes(mode, cfg, batch, seed), seed, stack_axes)
