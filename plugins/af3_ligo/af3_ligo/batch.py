"""A synthetic input batch with the shapes and dtypes of Ligo's own featuriser (one protein chain)."""
from __future__ import annotations

import torch
from torch import nn

#: atoms per token in Ligo's featuriser (N, CA, C, O); with 32-query atom windows, tokens % 8 == 0
#: (checked by ``af3_ligo.settings.check_seq_len``)
ATOMS_PER_TOKEN = 4
MSA_FEAT_DIM = 49


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
