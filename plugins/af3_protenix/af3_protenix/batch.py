"""The synthetic input: one protein chain of N random residues with an MSA of M rows and T template
slots, with the keys, shapes and dtypes that Protenix's inference featurisation gives such an input
(``InferenceDataset.process_one``: ``SampleDictToFeatures`` -> ``Featurizer.get_all_input_features``,
``InferenceMSAFeaturizer``, ``InferenceTemplateFeaturizer`` without templates, ``data_type_transform``;
no batch dimension, as Protenix's loader gives it with ``collate_fn_identity``):

- tokens (``get_token_features``): token and residue indices (residues from 1), one chain (asym,
  entity and sym id 0), ``restype`` one-hot over the 32 classes (float), no token bonds;
- reference conformers (``get_reference_features``): each residue's heavy atoms in the package's
  ``RES_ATOMS_DICT`` order (OXT only on the last residue, as a chain's leaving atoms are removed),
  elements one-hot over 128 (atomic number - 1), atom-name characters (4 x 64, ``ord(c) - 32``), zero
  charges, one conformer id per residue, random positions centred per residue standing in for the
  CCD/RDKit conformer; frames (N, CA, C) per residue;
- atom masks (``get_extra_features``, ``get_mask_features``, chain permutation features): protein
  flags, representative atoms (CA for pAE, CB or CA for the distogram), no bonds, resolution -1;
- MSA (``InferenceMSAFeaturizer``): row 0 the query, the other rows with 25% random substitutions
  and gaps, a few deletions (``2/pi * atan(d/3)``), the profile and deletion mean;
- templates (``TemplateFeatureAssemblyLine.assemble(...).as_protenix_dict()`` with no hit): slot 0 a
  gap sequence, the other slots zero-padded, every mask, distogram and unit vector zero.

Values are seeded (``seed``). Needs torch and the package's constant tables only (no CCD file, no
RDKit conformers, no MSA search).
"""
from __future__ import annotations

import math

import torch

#: Atomic numbers of the elements of standard amino acids' heavy atoms (first letter of the name).
_ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "S": 16}


def synthetic_features(n_tokens: int, msa_rows: int, n_templates: int, seed: int = 0) -> dict:
    """The ``input_feature_dict`` Protenix's forward takes, on the CPU."""
    from protenix.data.constants import PRO_STD_RESIDUES, RES_ATOMS_DICT, STD_RESIDUES_WITH_GAP

    g = torch.Generator().manual_seed(seed)
    N, M, T = n_tokens, msa_rows, n_templates
    n_classes = 32
    gap = STD_RESIDUES_WITH_GAP["-"]  # 31
    amino_acids = [r for r in PRO_STD_RESIDUES if r != "UNK"]
    res_idx = torch.randint(0, len(amino_acids), (N,), generator=g)
    res_names = [amino_acids[int(i)] for i in res_idx]
    codes = torch.tensor([PRO_STD_RESIDUES[r] for r in res_names])
    one_hot = torch.nn.functional.one_hot
    i64, f32 = torch.long, torch.float32

    # ---- atoms: each residue's heavy atoms; OXT only on the C-terminal residue ----
    atom_names = [[a for a in RES_ATOMS_DICT[r] if a != "OXT" or i == N - 1] for i, r in enumerate(res_names)]
    per_token = torch.tensor([len(a) for a in atom_names])
    A = int(per_token.sum())
    start = torch.cumsum(per_token, 0) - per_token
    names = [name for atoms in atom_names for name in atoms]
    atom_to_token = torch.repeat_interleave(torch.arange(N), per_token)
    tokatom = torch.tensor([RES_ATOMS_DICT[r][a] for r, atoms in zip(res_names, atom_names) for a in atoms])
    element = torch.tensor([_ATOMIC_NUMBER[n[0]] - 1 for n in names])
    chars = torch.tensor([[min(max(ord(c) - 32, 0), 63) for c in n.ljust(4)[:4]] for n in names])
    pos = torch.randn(A, 3, generator=g) * 1.5
    centre = torch.zeros(N, 3).index_add_(0, atom_to_token, pos) / per_token[:, None]
    pos = pos - centre[atom_to_token]
    is_ca = torch.tensor([n == "CA" for n in names])
    has_cb = {int(t) for t, n in zip(atom_to_token, names) if n == "CB"}
    disto_rep = torch.tensor([(n == "CB") or (n == "CA" and int(t) not in has_cb)
                              for t, n in zip(atom_to_token, names)])
    frame = torch.stack([start, start + 1, start + 2], dim=-1)  # N, CA, C lead every residue's atom list

    f = {
        # ---- tokens ----
        "token_index": torch.arange(N, dtype=i64),
        "residue_index": torch.arange(1, N + 1, dtype=i64),
        "asym_id": torch.zeros(N, dtype=i64),
        "entity_id": torch.zeros(N, dtype=i64),
        "sym_id": torch.zeros(N, dtype=i64),
        "restype": one_hot(codes, n_classes).to(f32),
        "token_bonds": torch.zeros(N, N, dtype=f32),
        # ---- reference conformers and frames ----
        "ref_pos": pos,
        "ref_mask": torch.ones(A, dtype=i64),
        "ref_element": one_hot(element, 128).to(i64),
        "ref_charge": torch.zeros(A, dtype=i64),
        "ref_atom_name_chars": one_hot(chars, 64).to(i64),
        "ref_space_uid": atom_to_token.clone(),
        "has_frame": torch.ones(N, dtype=i64),
        "frame_atom_index": frame.to(i64),
        # ---- extra, masks, chain permutation ----
        "atom_to_token_idx": atom_to_token.clone(),
        "atom_to_tokatom_idx": tokatom.to(i64),
        "is_protein": torch.ones(A, dtype=i64),
        "is_ligand": torch.zeros(A, dtype=i64),
        "is_dna": torch.zeros(A, dtype=i64),
        "is_rna": torch.zeros(A, dtype=i64),
        "resolution": torch.tensor([-1.0]),
        "entity_mol_id": torch.zeros(A, dtype=i64),
        "mol_id": torch.zeros(A, dtype=i64),
        "mol_atom_index": torch.arange(A, dtype=i64),
        "pae_rep_atom_mask": is_ca.to(i64),
        "plddt_m_rep_atom_mask": torch.ones(A, dtype=i64),
        "distogram_rep_atom_mask": disto_rep.to(i64),
        "modified_res_mask": torch.zeros(A, dtype=i64),
        "bond_mask": torch.zeros(A, A, dtype=i64),
    }
    # ---- MSA: row 0 the query ----
    msa = codes[None].repeat(M, 1)
    deletions = torch.zeros(M, N)
    if M > 1:
        substitute = torch.rand(M - 1, N, generator=g) < 0.25
        other = torch.randint(0, 21, (M - 1, N), generator=g)  # 20 amino acids, or a gap
        other[other == 20] = gap
        msa[1:] = torch.where(substitute, other, msa[1:])
        deletions[1:] = (torch.rand(M - 1, N, generator=g) < 0.05).float() * torch.randint(
            1, 10, (M - 1, N), generator=g)
    f["msa"] = msa.to(i64)
    f["has_deletion"] = (deletions != 0).to(f32)
    f["deletion_value"] = (torch.atan(deletions / 3.0) * (2.0 / math.pi)).to(f32)
    f["deletion_mean"] = deletions.mean(0).to(f32)
    f["profile"] = one_hot(msa, n_classes).to(f32).mean(0)
    for key in ("prot_pair_num_alignments", "prot_unpair_num_alignments", "rna_pair_num_alignments",
                "rna_unpair_num_alignments"):
        f[key] = torch.tensor(M if key == "prot_unpair_num_alignments" else 0, dtype=torch.int32)
    # ---- templates: no hit; slot 0 a gap sequence, the rest zero padding ----
    aatype = torch.zeros(T, N, dtype=i64)
    aatype[0] = gap
    f["template_aatype"] = aatype
    f["template_atom_positions"] = torch.zeros(T, N, 24, 3, dtype=f32)
    f["template_atom_mask"] = torch.zeros(T, N, 24, dtype=torch.bool)
    f["template_pseudo_beta_mask"] = torch.zeros(T, N, N, dtype=f32)
    f["template_backbone_frame_mask"] = torch.zeros(T, N, N, dtype=f32)
    f["template_distogram"] = torch.zeros(T, N, N, 39, dtype=f32)
    f["template_unit_vector"] = torch.zeros(T, N, N, 3, dtype=f32)
    return f
