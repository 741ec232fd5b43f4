"""The constructor arguments of the released Boltz-2 model, with the overrides ``boltz predict``
passes to ``Boltz2.load_from_checkpoint``, and the model built from them with random parameters.

Where the arguments come from: the widths and depths of the repo's
``scripts/train/configs/structurev2.yaml`` (not shipped in the wheel; read at upstream commit
70eee514), the confidence head of its ``confidencev2`` config (8 Pairformer blocks, separate
heads), templates v2; the dataclasses of ``boltz/main.py`` (2.2.1), copied because importing
``boltz.main`` pulls in click, requests, modelcif, pandas and Biopython, which the model does not
need.
"""
from __future__ import annotations

import inspect

# `boltz predict` inference defaults (boltz 2.2.1, src/boltz/main.py)
PREDICT_DEFAULTS = dict(
    recycling_steps=3,
    sampling_steps=200,
    diffusion_samples=1,
    max_parallel_samples=5,  # click default (signature says None)
    max_msa_seqs=8192,  # a3m/csv parsing cap
    step_scale=1.5,  # Boltz-2 (Boltz-1: 1.638)
    subsample_msa=False,  # 2.2.1: is_flag without default -> False (community fork: True)
    num_subsampled_msa=1024,
    precision="bf16-mixed",  # Trainer(precision=...) for boltz2 (boltz1: 32)
    use_kernels=True,  # not --no_kernels; forced False unless CUDA with sm >= 8.0
    use_potentials=False,
)

# Copies of the dataclasses in boltz/main.py (2.2.1): importing boltz.main pulls in click,
# requests, modelcif, pandas, Biopython..., which the model does not need.
PAIRFORMER_ARGS_V2 = dict(num_blocks=64, num_heads=16, dropout=0.0,
                          activation_checkpointing=False, offload_to_cpu=False, v2=True)
MSA_MODULE_ARGS = dict(msa_s=64, msa_blocks=4, msa_dropout=0.0, z_dropout=0.0,
                       use_paired_feature=True, pairwise_head_width=32, pairwise_num_heads=4,
                       activation_checkpointing=False, offload_to_cpu=False,
                       subsample_msa=False, num_subsampled_msa=1024)
BOLTZ2_DIFFUSION_PARAMS = dict(gamma_0=0.8, gamma_min=1.0, noise_scale=1.003, rho=7,
                               step_scale=1.5, sigma_min=0.0001, sigma_max=160.0,
                               sigma_data=16.0, P_mean=-1.2, P_std=1.5,
                               coordinate_augmentation=True, alignment_reverse_diff=True,
                               synchronize_sigmas=True)
STEERING_PARAMS = dict(fk_steering=False, num_particles=3, fk_lambda=4.0,
                       fk_resampling_interval=3, physical_guidance_update=False,
                       contact_guidance_update=True, num_gd_steps=20)


def model_hparams(
    pairformer_blocks: int = 64,
    use_kernels: bool = False,
    confidence: bool = True,
    templates: bool = True,
    bfactor: bool = True,
    recycles: int = 3,
    steps: int = 200,
    samples: int = 1,
    max_parallel_samples: int | None = 5,
    subsample_msa: bool = False,
    num_subsampled_msa: int = 1024,
    use_potentials: bool = False,
    step_scale: float = 1.5,
) -> dict:
    """Constructor kwargs for Boltz2 (= released checkpoint hparams + predict overrides)."""
    pairformer_args = dict(PAIRFORMER_ARGS_V2, num_blocks=pairformer_blocks)
    msa_args = dict(MSA_MODULE_ARGS, subsample_msa=subsample_msa,
                    num_subsampled_msa=num_subsampled_msa, use_paired_feature=True)
    diffusion = dict(BOLTZ2_DIFFUSION_PARAMS, step_scale=step_scale)
    steering = dict(STEERING_PARAMS, fk_steering=use_potentials,
                    physical_guidance_update=use_potentials)

    return dict(
        # --- widths (structurev2.yaml) ---
        atom_s=128,
        atom_z=16,
        token_s=384,
        token_z=128,
        num_bins=64,
        atom_feature_dim=388,  # 3 pos + 1 charge + 128 element + 4*64 name chars
        atoms_per_window_queries=32,
        atoms_per_window_keys=128,
        fix_sym_check=True,
        cyclic_pos_enc=True,
        bond_type_feature=True,
        conditioning_cutoff_min=4.0,
        conditioning_cutoff_max=20.0,
        exclude_ions_from_lddt=True,
        predict_bfactor=bfactor,
        use_templates=templates,
        use_templates_v2=True,
        template_args=dict(template_dim=64, template_blocks=2, activation_checkpointing=True),
        embedder_args=dict(
            atom_encoder_depth=3,
            atom_encoder_heads=4,
            add_mol_type_feat=True,
            add_method_conditioning=True,
            add_modified_flag=True,
            add_cyclic_flag=True,
        ),
        score_model_args=dict(
            sigma_data=16,
            dim_fourier=256,
            atom_encoder_depth=3,
            atom_encoder_heads=4,
            token_transformer_depth=24,
            token_transformer_heads=16,
            atom_decoder_depth=3,
            atom_decoder_heads=4,
            conditioning_transition_layers=2,
            transformer_post_ln=False,
            activation_checkpointing=True,  # only active in training mode
        ),
        # --- confidence head (confidencev2 config: 8 Pairformer blocks) ---
        confidence_prediction=confidence,
        alpha_pae=1.0,
        confidence_model_args=dict(
            num_dist_bins=64,
            max_dist=22,
            add_s_to_z_prod=True,
            add_s_input_to_s=True,
            add_z_input_to_z=True,
            pairformer_args=dict(num_blocks=8, num_heads=16, dropout=0.0, v2=True),
            confidence_args=dict(
                num_plddt_bins=50, num_pde_bins=64, num_pae_bins=64, use_separate_heads=True
            ),
        ),
        affinity_prediction=False,
        # --- overrides that `boltz predict` passes to load_from_checkpoint ---
        pairformer_args=pairformer_args,
        msa_args=msa_args,
        diffusion_process_args=diffusion,
        steering_args=steering,
        use_kernels=use_kernels,
        ema=False,
        predict_args=dict(
            recycling_steps=recycles,
            sampling_steps=steps,
            diffusion_samples=samples,
            max_parallel_samples=max_parallel_samples,
            write_confidence_summary=True,
            write_full_pae=False,
            write_full_pde=False,
        ),
        # --- training-only args (required positional, unused at inference) ---
        training_args=dict(recycling_steps=3, sampling_steps=20, diffusion_multiplicity=32,
                           diffusion_samples=1),
        validation_args=dict(recycling_steps=3, sampling_steps=200, diffusion_samples=5,
                             symmetry_correction=True),
        diffusion_loss_args=dict(add_smooth_lddt_loss=True, nucleotide_loss_weight=5.0,
                                 ligand_loss_weight=10.0),
        validate_structure=False,  # else needs validators
    )


def build_model(settings, use_kernels: bool):
    """Boltz2 with the released architecture, random parameters (the model's own initialisation,
    drawn by torch from ``settings["seed"]``), eval mode. ``settings``: the plugin's resolved settings."""
    import torch
    from boltz.model.layers import initialize  # Linear's LeCun/He init, through scipy's truncnorm
    from boltz.model.models.boltz2 import Boltz2

    from af3core import truncnorm_by_torch

    hp = model_hparams(pairformer_blocks=int(settings["pairformer_blocks"]), use_kernels=use_kernels,
                       confidence=bool(settings["confidence"]), templates=bool(settings["templates"]),
                       recycles=int(settings["recycles"]), steps=int(settings["steps"]),
                       samples=int(settings["samples"]))
    if "use_flash_attn" in inspect.signature(Boltz2.__init__).parameters:
        hp["use_flash_attn"] = False  # boltz-community only; upstream has no such argument
    torch.manual_seed(int(settings["seed"]))
    with truncnorm_by_torch(initialize):  # the package's init, sampled by torch: seconds, not a minute
        model = Boltz2(**hp)
    return model.eval()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
