"""The ``small`` and ``paper`` presets: plain data, shared by the plugin and the standalone script.

``paper`` is the repo's ``configs/model/alphafold3.yaml`` as it is (48 Pairformer blocks, 4 MSA
blocks, 24 diffusion-transformer blocks...) with the setting defaults (:data:`DEFAULTS`)
(512 MSA rows, 4 trunk cycles, 200 diffusion steps, 1 sample). ``small`` shrinks widths and depths
so a pass takes well under a second on a CPU at 32 tokens.
"""
from __future__ import annotations

#: Every setting's default (``af3_ligo.plugin.SETTINGS`` documents them): the paper's inference
#: loop counts (512 MSA rows, 4 trunk cycles, 200 diffusion steps, 1 sample per trunk), the
#: einsum MSA averaging, fp32, the model's own initialisation.
DEFAULTS = {
    "msa_impl": "torch",
    "dtype": "fp32",
    "msa_rows": 512,
    "cycles": 4,
    "diffusion_steps": 200,
    "samples": 1,
    "weights": "repo",
    "seed": 0,
    "check_finite": True,
}

# Reduced widths and depths, quick on a CPU; every yaml key is reachable as config.<path>.
SMALL = {
    "msa_rows": 16,
    "cycles": 2,
    "diffusion_steps": 10,
    "samples": 1,
    "config.c_token": 64,
    "config.c_pair": 32,
    "config.c_atom": 32,
    "config.c_atompair": 8,
    "config.c_hidden_tri_mul": 32,
    "config.no_heads_single_attn": 4,
    "config.msa_module.no_blocks": 1,
    "config.msa_module.c_msa": 16,
    "config.pairformer_stack.no_blocks": 2,
    "config.diffusion_module.token_transformer_blocks": 2,
    "config.diffusion_module.token_transformer_heads": 4,
    "config.diffusion_module.atom_encoder_blocks": 1,
    "config.diffusion_module.atom_encoder_heads": 4,
    "config.diffusion_module.atom_decoder_blocks": 1,
    "config.diffusion_module.atom_decoder_heads": 4,
}
PRESETS = {"small": SMALL, "paper": {}}
