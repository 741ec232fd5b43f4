"""The released ESM-2 architectures and the model built from them with random parameters.

Sizes as fair-esm 2.0.0's ``esm.pretrained.esm2_t*_UR50D`` checkpoints define them (layers,
embedding width, attention heads; every checkpoint has token dropout on and the ``ESM-1b``
alphabet). The 15B model is left out: 48 layers at 5120 need 60 GB in fp32 before any activation.
"""
from __future__ import annotations

from typing import NamedTuple


class Size(NamedTuple):
    layers: int
    embed_dim: int
    heads: int
    checkpoint: str


SIZES = {
    "8M": Size(6, 320, 20, "esm2_t6_8M_UR50D"),
    "35M": Size(12, 480, 20, "esm2_t12_35M_UR50D"),
    "150M": Size(30, 640, 20, "esm2_t30_150M_UR50D"),
    "650M": Size(33, 1280, 20, "esm2_t33_650M_UR50D"),
    "3B": Size(36, 2560, 40, "esm2_t36_3B_UR50D"),
}
ALPHABET = "ESM-1b"


def expected_params(layers: int, embed_dim: int, heads: int, vocab: int = 33) -> int:
    """Parameters of fair-esm's ESM2 (the LM head's projection is tied to the token embedding):
    per layer 4 attention projections (E x E + bias), 2 layer norms, a 4E feed-forward; then the
    final layer norm, the LM head (dense, layer norm, bias) and the contact head's regression."""
    e = embed_dim
    per_layer = 4 * (e * e + e) + 2 * 2 * e + (e * 4 * e + 4 * e) + (4 * e * e + e)
    return vocab * e + layers * per_layer + 2 * e + (e * e + e) + 2 * e + vocab + (layers * heads + 1)


def build_model(size: str, layers: int | None = None, seed: int = 0, device: str = "cpu"):
    """ESM2 at ``size`` (``layers`` overrides the depth: the toy mode's one layer), random
    parameters from the module's own initialisation, seeded; eval mode, fp32, built on ``device``
    (on a GPU the 3B model initialises in seconds instead of a minute of CPU time)."""
    import torch
    import esm
    from esm.model.esm2 import ESM2

    spec = SIZES[size]
    alphabet = esm.data.Alphabet.from_architecture(ALPHABET)
    torch.manual_seed(int(seed))
    with torch.device(device):
        model = ESM2(num_layers=spec.layers if layers is None else int(layers), embed_dim=spec.embed_dim,
                     attention_heads=spec.heads, alphabet=alphabet, token_dropout=True)
    return model.eval(), alphabet


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
