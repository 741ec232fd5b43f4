"""The synthetic batch: one protein chain of N random residues with an MSA of M rows and T template
slots, with the keys, shapes and dtypes that OpenFold3's inference featurisation gives such an input
(``InferenceDataset.create_all_features`` after ``openfold_batch_collator``, batch size 1):

- structure (``featurize_structure_of3``): token and residue indices, one chain (asym, entity and
  sym id 1), ``restype`` one-hot over the 32 classes, molecule-type flags, token/atom masks, atoms
  per token, first atom of each token, atom-to-token index, no token bonds (none without a ligand),
  no cyclic chain;
- reference conformers (``featurize_reference_conformers_of3``): each residue's heavy atoms in the
  package's own ``TOKEN_NAME_TO_ATOM_NAMES`` order, elements (atomic number - 1 over 119 classes),
  atom-name characters (4 x 64), zero charges, one conformer id per residue, random centred
  positions standing in for the RDKit conformer;
- MSA (``MsaFeaturizerOF3``): row 0 the query, the other rows with 25% random substitutions and gaps,
  a few deletions (``atan(d / 3) * 2 / pi``), the profile and deletion mean, one paired row (a
  monomer);
- templates (``featurize_template_structures_of3`` without a hit): every slot a gap with all masks,
  distogram and unit vectors zero, as inference fills the 4 slots when no template is found.

Values are seeded (``seed``); ``ground_truth`` and ``loss_weights`` (training only) are absent, as at
inference. Needs torch and the package's residue tables only (no rdkit, no CCD, not the package's
test helpers, which need pdbeccdutils).
"""
from __future__ import annotations

import math

import torch

#: Atomic numbers of the elements of standard amino acids' heavy atoms (first letter of the name).
_ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "S": 16}


def synthetic_batch(n_tokens: int, msa_rows: int, n_templates: int, seed: int = 0) -> dict:
    """The feature dictionary OpenFold3's forward takes, batch dimension 1, on the CPU."""
    from openfold3.core.data.resources.residues import (
        STANDARD_PROTEIN_RESIDUES_3,
        STANDARD_RESIDUES_WITH_GAP_3,
    )
    from openfold3.core.data.resources.token_atom_constants import TOKEN_NAME_TO_ATOM_NAMES

    g = torch.Generator().manual_seed(seed)
    N, M, T = n_tokens, msa_rows, n_templates
    n_classes = len(STANDARD_RESIDUES_WITH_GAP_3)  # 32: 20 amino acids, UNK, RNA, DNA, GAP
    gap = STANDARD_RESIDUES_WITH_GAP_3.index("GAP")
    amino_acids = [r for r in STANDARD_PROTEIN_RESIDUES_3 if r != "UNK"]
    res_idx = torch.randint(0, len(amino_acids), (N,), generator=g)  # index into the 32 classes
    res_names = [amino_acids[int(i)] for i in res_idx]
    one_hot = torch.nn.functional.one_hot

    # ---- atoms: each residue's heavy atoms, as the package tokenises a standard residue ----
    atom_names = [TOKEN_NAME_TO_ATOM_NAMES[r] for r in res_names]
    per_token = torch.tensor([len(a) for a in atom_names], dtype=torch.int32)
    A = int(per_token.sum())
    start = torch.cumsum(per_token, 0) - per_token
    names = [name for atoms in atom_names for name in atoms]
    atom_to_token = torch.repeat_interleave(torch.arange(N, dtype=torch.int32), per_token.long())
    element = torch.tensor([_ATOMIC_NUMBER[n[0]] - 1 for n in names])
    chars = torch.tensor([[ord(c) - 32 for c in n.ljust(4)[:4]] for n in names])
    # a conformer per residue: random positions, centred per residue (the featuriser centres and
    # randomly rotates each RDKit conformer)
    pos = torch.randn(A, 3, generator=g) * 1.5
    centre = torch.zeros(N, 3).index_add_(0, atom_to_token.long(), pos) / per_token[:, None]
    pos = pos - centre[atom_to_token.long()]

    i32, f32 = torch.int32, torch.float32
    f = {
        # ---- structure ----
        "token_index": torch.arange(N, dtype=i32),
        "residue_index": torch.arange(1, N + 1, dtype=i32),
        "asym_id": torch.ones(N, dtype=i32),
        "entity_id": torch.ones(N, dtype=i32),
        "sym_id": torch.ones(N, dtype=i32),
        "restype": one_hot(res_idx, n_classes).to(i32),
        "is_protein": torch.ones(N, dtype=i32),
        "is_rna": torch.zeros(N, dtype=i32),
        "is_dna": torch.zeros(N, dtype=i32),
        "is_ligand": torch.zeros(N, dtype=i32),
        "is_atomized": torch.zeros(N, dtype=i32),
        "token_mask": torch.ones(N, dtype=f32),
        "num_atoms_per_token": per_token,
        "start_atom_index": start.to(i32),
        "atom_mask": torch.ones(A, dtype=f32),
        "token_bonds": torch.zeros(N, N, dtype=i32),
        "atom_to_token_index": atom_to_token,
        "cyclic_mask": torch.zeros(N, dtype=torch.bool),
        # ---- reference conformers ----
        "ref_pos": pos,
        "ref_mask": torch.ones(A, dtype=i32),
        "ref_element": one_hot(element, 119).to(i32),
        "ref_charge": torch.zeros(A, dtype=f32),
        "ref_atom_name_chars": one_hot(chars, 64).to(i32),
        "ref_space_uid": atom_to_token.clone(),
    }
    # ---- MSA: row 0 the query ----
    msa = res_idx[None].repeat(M, 1)
    deletions = torch.zeros(M, N)
    if M > 1:
        substitute = torch.rand(M - 1, N, generator=g) < 0.25
        other = torch.randint(0, len(amino_acids) + 1, (M - 1, N), generator=g)
        other[other == len(amino_acids)] = gap
        msa[1:] = torch.where(substitute, other, msa[1:])
        deletions[1:] = (torch.rand(M - 1, N, generator=g) < 0.05).float() * torch.randint(
            1, 10, (M - 1, N), generator=g)
    msa_one_hot = one_hot(msa, n_classes)
    f["msa"] = msa_one_hot.to(i32)
    f["has_deletion"] = (deletions != 0).to(f32)
    f["deletion_value"] = (torch.atan(deletions / 3.0) * (2.0 / math.pi)).to(f32)
    f["deletion_mean"] = deletions.mean(0).to(f32)
    f["profile"] = msa_one_hot.to(f32).mean(0)
    f["num_paired_seqs"] = torch.tensor([1], dtype=i32)  # collated to shape [1]: added back below
    f["msa_mask"] = torch.ones(M, N, dtype=f32)
    # ---- templates: no hit in any slot ----
    f["template_restype"] = one_hot(torch.full((T, N), gap), n_classes).to(i32)
    f["template_pseudo_beta_mask"] = torch.zeros(T, N, dtype=f32)
    f["template_backbone_frame_mask"] = torch.zeros(T, N, dtype=f32)
    f["template_distogram"] = torch.zeros(T, N, N, 39, dtype=f32)
    f["template_unit_vector"] = torch.zeros(T, N, N, 3, dtype=f32)

    batch = {k: v[None] for k, v in f.items() if k != "num_paired_seqs"}  # batch dimension 1
    batch["num_paired_seqs"] = f["num_paired_seqs"]  # the collator squeezes its trailing 1: shape [1]
    return batch
