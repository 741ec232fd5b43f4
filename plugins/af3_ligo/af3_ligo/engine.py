"""Building and running Ligo's ``AlphaFold3``: shared by the runner and the standalone timing script.

Modes, all through the model's own ``forward(batch, train=False)`` under ``torch.no_grad()``:
- ``full``: unmodified forward: input embedding, ``cycles`` trunk passes (MSA module + Pairformer),
  diffusion sampling, distogram head. The forward hard-codes 200 steps and 1 sample; the sampler is
  wrapped on the instance so ``diffusion_steps`` and ``samples`` reach it (same values by default).
- ``trunk``: the same forward with the sampler replaced on the instance by a function that keeps
  the trunk outputs it is handed (s, z) and samples nothing. What remains after the trunk is the
  distogram head, one linear layer on z (well under 1% of a pass).
- ``toy``: ``full`` with 1 cycle, 2 diffusion steps (1 denoiser call), 1 sample: every component
  once, for smoke tests; widths and depths are the preset's.
"""
from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

#: atoms per token in Ligo's featuriser (N, CA, C, O); with 32-query atom windows, tokens % 8 == 0
#: (checked by ``af3_ligo.plugin.check_seq_len``)
ATOMS_PER_TOKEN = 4
MSA_FEAT_DIM = 49


# Standard deviation of a standard normal truncated to [-2, 2] (scipy's truncnorm(-2, 2).std()).
_PHI2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
_TRUNCNORM2_STD = math.sqrt(1 - 2 * 2 * _PHI2 / math.erf(2 / math.sqrt(2)))


@contextmanager
def _torch_trunc_normal_init():
    """Draw the repo's truncated-normal initialisation with torch instead of scipy while building.

    ``primitives.trunc_normal_init_`` samples each weight with ``scipy.stats.truncnorm.rvs`` on the
    CPU: about 15 of the 17 s it takes to build the paper model. ``torch.nn.init.trunc_normal_``
    draws from the same distribution (normal, std chosen the repo's way, cut at +-2 std) in well
    under a second. Only the sampler changes; the repo's fan and scale rules are kept, and the
    original function is restored afterwards.
    """
    prims = sys.modules["src.models.components.primitives"]
    original = prims.trunc_normal_init_

    def trunc_normal_init_(weights, scale=1.0, fan="fan_in"):
        std = math.sqrt(scale / max(1, prims._calculate_fan(weights.shape, fan))) / _TRUNCNORM2_STD
        with torch.no_grad():
            nn.init.trunc_normal_(weights, mean=0.0, std=std, a=-2 * std, b=2 * std)

    prims.trunc_normal_init_ = trunc_normal_init_
    try:
        yield
    finally:
        prims.trunc_normal_init_ = original


def build_model(model_module, cfg, device: str) -> nn.Module:
    """``AlphaFold3(cfg)`` on ``device`` in eval mode, fp32 weights."""
    torch.set_float32_matmul_precision(cfg["globals"]["matmul_precision"])  # as the repo's wrapper does
    with _torch_trunc_normal_init():
        model = model_module.AlphaFold3(cfg)
    return model.to(device).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def rerandomise_(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter a random, non-zero value at a sane scale.

    The repo zero-initialises its final projections (``init='final'``), so at construction many
    residual branches contribute exactly zero: an output comparison between two implementations of
    one of those branches would pass vacuously. Matrices get N(0, 1/fan_in); vectors (norm scales,
    biases) keep their value plus N(0, 0.1^2) noise, so LayerNorm scales stay near 1.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for p in model.parameters():
        if p.dim() >= 2:
            fan_in = p.shape[-1]
            noise = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
            p.copy_(noise.to(p.device, p.dtype))
        else:
            p.add_((0.1 * torch.randn(p.shape, generator=gen)).to(p.device, p.dtype))


def synthetic_batch(n_tokens: int, msa_rows: int, cycles: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch with the shapes and dtypes of Ligo's own featuriser (``AF3Featurizer`` followed by
    ``model_wrapper.reshape_features``): one protein chain, 4 backbone atoms per token, an MSA of
    ``msa_rows`` rows, every feature with a trailing recycling dimension of size ``cycles``
    (expanded, as the repo does: the same features each cycle, no copies)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    n, a = n_tokens, n_tokens * ATOMS_PER_TOKEN
    residue_index = torch.arange(n)
    per_token_atom = torch.arange(ATOMS_PER_TOKEN).repeat(n)  # 0,1,2,3,0,1,...
    atom_to_token = torch.arange(n).repeat_interleave(ATOMS_PER_TOKEN)
    # Reference conformer: a random 4-atom residue placed at random, in Angstrom
    ref_pos = (torch.randn(n, 1, 3, generator=g) * 10 + torch.randn(n, ATOMS_PER_TOKEN, 3, generator=g)).reshape(a, 3)
    feats = {
        "aatype": torch.randint(0, 20, (n,), generator=g),
        "residue_index": residue_index,
        "token_index": residue_index.clone(),
        "asym_id": torch.zeros(n),
        "entity_id": torch.zeros(n),
        "sym_id": torch.zeros(n),
        "token_mask": torch.ones(n),
        "token_repr_atom": residue_index * ATOMS_PER_TOKEN + 1,  # CA
        "ref_pos": ref_pos,
        "ref_mask": torch.ones(a),
        "ref_element": nn.functional.one_hot(torch.tensor([0, 1, 1, 2])[per_token_atom], 4).float(),  # N C C O
        "ref_charge": torch.zeros(a),
        "ref_atom_name_chars": nn.functional.one_hot(per_token_atom, 4).float(),
        "ref_space_uid": residue_index.repeat_interleave(ATOMS_PER_TOKEN).float(),
        "atom_to_token": atom_to_token,
        "atom_mask": torch.ones(a),
        "msa_feat": torch.randn(msa_rows, n, MSA_FEAT_DIM, generator=g),
        "msa_mask": torch.ones(msa_rows, n),
    }
    return {k: v.to(device)[None, ..., None].expand(*((1,) + v.shape + (cycles,))) for k, v in feats.items()}


@dataclass
class TrunkCapture:
    """Stands in for ``diffusion_module.sample`` in trunk mode: keeps (s, z), samples nothing."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(self, *, features, s_inputs, s_trunk, z_trunk, **_ignored):
        self.outputs = {"s_trunk": s_trunk, "z_trunk": z_trunk}
        bs = s_trunk.shape[0]
        return s_trunk.new_zeros((bs, 0, 3))  # no coordinates: nothing was sampled


def configure_mode(model: nn.Module, mode: str, diffusion_steps: int, samples: int) -> TrunkCapture | None:
    """Point the instance's sampler at what ``mode`` runs. Returns the capture in trunk mode."""
    dm = model.diffusion_module
    original: Callable = type(dm).sample.__get__(dm)  # the class's method, even if set before
    if mode == "trunk":
        capture = TrunkCapture()
        dm.sample = capture
        return capture
    steps, n_samples = (2, 1) if mode == "toy" else (diffusion_steps, samples)

    def sample(*args, **kwargs):
        # forward(train=False) passes n_steps=200, samples_per_trunk=1: replace with the settings
        kwargs["n_steps"], kwargs["samples_per_trunk"] = steps, n_samples
        return original(*args, **kwargs)

    dm.sample = sample
    return None


def outputs_of(result: dict[str, torch.Tensor], capture: TrunkCapture | None) -> dict[str, torch.Tensor]:
    """The tensors a pass produced that should be finite."""
    if capture is not None:
        return dict(capture.outputs, distogram_logits=result["distogram_logits"])
    return {k: result[k] for k in ("sampled_positions", "distogram_logits")}


def non_finite(outputs: dict[str, torch.Tensor]) -> list[str]:
    """Names of outputs holding NaN or Inf (one device reduction each)."""
    return [k for k, t in outputs.items() if t.numel() and not bool(torch.isfinite(t).all())]


def autocast_for(dtype: str, device: str):
    """``bf16``: the repo's own GPU precision, Lightning's ``bf16-mixed`` (autocast, fp32 weights)."""
    if dtype == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return torch.autocast(device_type=device.split(":")[0], enabled=False)


def run_pass(model: nn.Module, batch: dict, dtype: str, device: str) -> dict[str, Any]:
    """One inference pass: ``forward(train=False)`` under no_grad (and autocast for bf16)."""
    with torch.no_grad(), autocast_for(dtype, device):
        return model(batch, train=False)
