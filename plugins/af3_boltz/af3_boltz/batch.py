"""The synthetic batch: one protein chain of N tokens with an MSA of M rows, with the keys,
shapes and dtypes of Boltz-2's own featuriser (``Boltz2Featurizer`` after ``collate``; checked key
by key against it when the exploration for this plugin was made: 78 keys, of which the model reads
45 in a full pass). Heavy atoms per residue as Boltz's reference atoms; the atom count padded to a
multiple of 32 (the atom attention's query windows), as the featuriser pads; an empty template
(masked), as ``boltz predict`` uses without templates; empty steering-constraint features.
Needs torch and ``boltz.data.const`` only (no rdkit, no CCD download).
"""
from __future__ import annotations

import math

import numpy as np
import torch

AA1 = "ACDEFGHIKLMNPQRSTVWY"


def random_sequence(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(AA1), n))


_ELEM = {"C": 6, "N": 7, "O": 8, "S": 16}


def synthetic_batch(n_tokens: int, msa_depth: int, seed: int = 0) -> dict:
    """Hand-made batch: same keys / shapes / dtypes as featurizer_batch (batch size 1)."""
    from boltz.data import const

    g = torch.Generator().manual_seed(seed)
    seq = random_sequence(n_tokens, seed)
    N, M, T = n_tokens, msa_depth, 1
    res3 = [const.prot_letter_to_token[c] for c in seq]
    res_ids = torch.tensor([const.token_ids[r] for r in res3])

    # ---- atoms (heavy atoms of each residue, const.ref_atoms order) ----
    names, a2t, bb, rep, center, frames = [], [], [], [], [], []
    for t, r in enumerate(res3):
        start = len(names)
        atoms = const.ref_atoms[r]
        names += atoms
        a2t += [t] * len(atoms)
        bb += [1 + const.protein_backbone_atom_index[a] if a in const.protein_backbone_atom_index
               else 0 for a in atoms]
        rep.append(start + atoms.index("CB" if "CB" in atoms else "CA"))  # disto/rep atom
        center.append(start + atoms.index("CA"))
        frames.append([start + atoms.index("N"), start + atoms.index("CA"), start + atoms.index("C")])
    A_real = len(names)
    W = 32  # atoms_per_window_queries: atom count is padded to a multiple of 32
    A = ((A_real - 1) // W + 1) * W
    pad = A - A_real

    def padA(x, dim=0, value=0):
        if pad == 0:
            return x
        shape = list(x.shape)
        shape[dim] = pad
        return torch.cat([x, torch.full(shape, value, dtype=x.dtype)], dim=dim)

    elem = torch.tensor([_ELEM[a[0]] for a in names])
    chars = torch.tensor([[ord(c) - 32 for c in a.ljust(4)[:4]] for a in names])
    chars[chars == 0] = 0  # space -> 0
    f = torch.nn.functional.one_hot
    a2t_t = torch.tensor(a2t)

    feats = {}
    # ---- token features ----
    feats["token_index"] = torch.arange(N)
    feats["residue_index"] = torch.arange(N)
    feats["asym_id"] = torch.zeros(N, dtype=torch.long)
    feats["entity_id"] = torch.zeros(N, dtype=torch.long)
    feats["sym_id"] = torch.zeros(N, dtype=torch.long)
    feats["mol_type"] = torch.zeros(N, dtype=torch.long)  # 0 = protein
    feats["res_type"] = f(res_ids, const.num_tokens)  # (N,33) long one-hot
    feats["disto_center"] = torch.zeros(N, 3)
    feats["token_bonds"] = torch.zeros(N, N, 1)
    feats["type_bonds"] = torch.zeros(N, N, dtype=torch.long)
    feats["token_pad_mask"] = torch.ones(N)
    feats["token_resolved_mask"] = torch.ones(N)
    feats["token_disto_mask"] = torch.ones(N)
    feats["contact_conditioning"] = f(torch.zeros(N, N, dtype=torch.long), 5)  # UNSPECIFIED
    feats["contact_threshold"] = torch.zeros(N, N)
    feats["method_feature"] = torch.full((N,), const.method_types_ids["x-ray diffraction"])
    feats["modified"] = torch.zeros(N, dtype=torch.long)
    feats["cyclic_period"] = torch.zeros(N)
    feats["affinity_token_mask"] = torch.zeros(N)
    # ---- atom features ----
    feats["ref_pos"] = padA(torch.randn(A_real, 3, generator=g) * 1.5)
    feats["atom_resolved_mask"] = padA(torch.ones(A_real, dtype=torch.bool))
    feats["ref_atom_name_chars"] = padA(f(chars, 64))  # (A,4,64) long
    feats["ref_element"] = padA(f(elem, const.num_elements))  # (A,128) long
    feats["ref_charge"] = torch.zeros(A)
    feats["ref_chirality"] = torch.zeros(A, dtype=torch.long)
    feats["atom_backbone_feat"] = padA(f(torch.tensor(bb), 17))  # (A,17) long
    feats["ref_space_uid"] = padA(a2t_t.clone())
    feats["coords"] = torch.zeros(1, A, 3)
    feats["atom_pad_mask"] = padA(torch.ones(A_real))
    feats["atom_to_token"] = padA(f(a2t_t, N))  # (A,N) long
    feats["token_to_rep_atom"] = f(torch.tensor(rep), A)  # (N,A) long
    feats["r_set_to_rep_atom"] = f(torch.tensor(center), A)
    feats["token_to_center_atom"] = f(torch.tensor(center), A)
    feats["disto_target"] = f(torch.zeros(N, N, 1, dtype=torch.long), 64).float()
    feats["disto_coords_ensemble"] = torch.zeros(1, N, 3)
    feats["bfactor"] = torch.zeros(A)
    feats["plddt"] = padA(torch.ones(A_real))
    feats["frames_idx"] = torch.tensor(frames)[None]  # (1,N,3) long
    feats["frame_resolved_mask"] = torch.zeros(1, N, dtype=torch.bool)
    # ---- MSA features (row 0 = query) ----
    msa = res_ids[None].repeat(M, 1)
    if M > 1:
        mut = torch.rand(M - 1, N, generator=g) < 0.25
        rnd = torch.randint(1, 22, (M - 1, N), generator=g)  # 1 = gap, 2..21 = amino acids
        msa[1:] = torch.where(mut, rnd, msa[1:])
    dels = torch.zeros(M, N)
    if M > 1:
        dels[1:] = (torch.rand(M - 1, N, generator=g) < 0.05).float() * 2
    feats["msa"] = msa
    feats["msa_paired"] = torch.zeros(M, N)
    feats["msa_paired"][0] = 1.0
    feats["deletion_value"] = (math.pi / 2) * torch.arctan(dels / 3)
    feats["has_deletion"] = dels > 0
    feats["deletion_mean"] = feats["deletion_value"].mean(0)
    feats["profile"] = f(msa, const.num_tokens).float().mean(0)
    feats["msa_mask"] = torch.ones(M, N, dtype=torch.long)
    # ---- dummy template (T=1, all masked), as load_dummy_templates_features ----
    feats["template_restype"] = f(torch.zeros(T, N, dtype=torch.long), const.num_tokens)
    feats["template_frame_rot"] = torch.zeros(T, N, 3, 3)
    feats["template_frame_t"] = torch.zeros(T, N, 3)
    feats["template_cb"] = torch.zeros(T, N, 3)
    feats["template_ca"] = torch.zeros(T, N, 3)
    feats["template_mask_cb"] = torch.zeros(T, N)
    feats["template_mask_frame"] = torch.zeros(T, N)
    feats["template_mask"] = torch.zeros(T, N)
    feats["query_to_template"] = torch.zeros(T, N, dtype=torch.long)
    feats["visibility_ids"] = torch.zeros(T, N)
    feats["ensemble_ref_idxs"] = torch.zeros(1, dtype=torch.long)
    # ---- (empty) constraint features used by the steering potentials ----
    L, B, F = torch.long, torch.bool, torch.float
    for k, shape, dt in [
        ("rdkit_bounds_index", (2, 0), L), ("rdkit_bounds_bond_mask", (0,), B),
        ("rdkit_bounds_angle_mask", (0,), B), ("rdkit_upper_bounds", (0,), F),
        ("rdkit_lower_bounds", (0,), F), ("chiral_atom_index", (4, 0), L),
        ("chiral_reference_mask", (0,), B), ("chiral_atom_orientations", (0,), B),
        ("stereo_bond_index", (4, 0), L), ("stereo_reference_mask", (0,), B),
        ("stereo_bond_orientations", (0,), B), ("planar_bond_index", (6, 0), L),
        ("planar_ring_5_index", (5, 0), L), ("planar_ring_6_index", (6, 0), L),
        ("connected_chain_index", (2, 0), L), ("connected_atom_index", (2, 0), L),
        ("symmetric_chain_index", (2, 0), L), ("contact_pair_index", (2, 0), L),
        ("contact_union_index", (0,), L), ("contact_negation_mask", (0,), B),
        ("contact_thresholds", (0,), F),
    ]:
        feats[k] = torch.zeros(shape, dtype=dt)
    return {k: v[None] for k, v in feats.items()}  # batch dim 1
