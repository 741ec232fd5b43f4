"""A synthetic input batch for one protein chain, built with AF3's own feature helpers.

The real data pipeline (``alphafold3.model.pipeline``) goes through the chemical-components
database, RDKit conformers and the C++ MSA/mmCIF code. Only three of its feature groups truly need
those: the reference structure (conformers), the MSA (profile via C++) and templates (mmCIF
parsing). Those three are filled here by hand with arrays of the exact shapes and dtypes the
pipeline produces; every other group comes from ``features.<Group>.compute_features``, as in
``WholePdbPipeline.process_structure``. Padding follows the pipeline: MSA rows to ``msa_pad_rows``
(16384 in DeepMind's runs, whatever the real depth), ``templates`` slots, 24 atom slots per token,
flat atoms to ``tokens * 24`` rounded up to the 32-atom query block.
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: AF3 constants fixed by the network itself (template embedding asserts 24 atoms per token;
#: atom cross-attention uses 32-atom query and 128-atom key windows in DeepMind's pipeline).
ATOMS_PER_TOKEN = 24
QUERIES_SUBSET = 32
KEYS_SUBSET = 128


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    num_tokens: int
    msa_pad_rows: int  # PaddingShapes.msa_size: rows the MSA arrays are padded to
    msa_depth: int  # rows holding (random) alignments; the rest are padding
    templates: int  # template slots (empty templates, as when none are found)
    seed: int = 0

    @property
    def num_atoms(self) -> int:
        n = self.num_tokens * ATOMS_PER_TOKEN
        return -(-n // QUERIES_SUBSET) * QUERIES_SUBSET


def _layouts(sequence: list[str]):
    """``all_tokens`` (one CA per residue) and ``all_token_atoms_layout`` [tokens, 24] for chain A.

    Standard residues' heavy atoms in DeepMind's dense order, which is the CCD order the
    tokenizer uses (``atom_types.DENSE_ATOM``); hydrogens are absent as in a parsed input.
    """
    from alphafold3.constants import atom_types, mmcif_names
    from alphafold3.model.atom_layout import atom_layout

    n = len(sequence)
    names = np.full((n, ATOMS_PER_TOKEN), "", dtype=object)
    elements = np.full((n, ATOMS_PER_TOKEN), "", dtype=object)
    for i, res in enumerate(sequence):
        atoms = atom_types.DENSE_ATOM[res]
        names[i, : len(atoms)] = atoms
        elements[i, : len(atoms)] = [a[0] for a in atoms]  # N, C, O, S: first letter is the element
    res_id = np.broadcast_to(np.arange(1, n + 1)[:, None], (n, ATOMS_PER_TOKEN)).copy()
    res_name = np.broadcast_to(np.array(sequence, dtype=object)[:, None], (n, ATOMS_PER_TOKEN)).copy()
    token_atoms = atom_layout.AtomLayout(
        atom_name=names,
        atom_element=elements,
        res_name=res_name,
        res_id=res_id,
        chain_id=np.full((n, ATOMS_PER_TOKEN), "A", dtype=object),
        chain_type=np.full((n, ATOMS_PER_TOKEN), mmcif_names.PROTEIN_CHAIN, dtype=object),
    )
    ca = atom_types.DENSE_ATOM[sequence[0]].index("CA")  # CA is slot 1 for every amino acid
    all_tokens = token_atoms[np.arange(n), np.full(n, ca)]
    return all_tokens, token_atoms


def _ref_structure(token_atoms, spec: BatchSpec, rng: np.random.RandomState):
    """Reference conformer features, as ``RefStructure.compute_features`` lays them out."""
    from alphafold3.constants import periodic_table
    from alphafold3.model import features

    shape = (spec.num_tokens, ATOMS_PER_TOKEN)
    mask = token_atoms.atom_name.astype(bool)
    positions = np.zeros((*shape, 3), np.float32)
    element = np.zeros(shape, np.int32)
    chars = np.zeros((*shape, 4), np.int32)
    for i in range(spec.num_tokens):
        k = int(mask[i].sum())
        # A compact random conformer (about 1.5 A between atoms), centred and randomly rotated and
        # translated by AF3's own augmentation, as the pipeline does with RDKit conformers.
        conformer = rng.normal(scale=1.5, size=(k, 3))
        positions[i, :k] = features.random_augmentation(conformer, rng)
        for j in range(k):
            name = token_atoms.atom_name[i, j]
            element[i, j] = periodic_table.ATOMIC_NUMBER[token_atoms.atom_element[i, j]]
            chars[i, j, : len(name)] = [ord(c) - 32 for c in name]
    return features.RefStructure(
        positions=positions,
        mask=mask,
        element=element,
        charge=np.zeros(shape, np.float32),
        atom_name_chars=chars,
        ref_space_uid=np.broadcast_to(np.arange(spec.num_tokens, dtype=np.int32)[:, None], shape).copy(),
    )


def _msa(aatype: np.ndarray, spec: BatchSpec, rng: np.random.RandomState):
    """A random alignment of ``msa_depth`` rows (query first), padded to ``msa_pad_rows``."""
    from alphafold3.constants import residue_names
    from alphafold3.model import features

    num_types = residue_names.POLYMER_TYPES_NUM_WITH_UNKNOWN_AND_GAP
    gap = residue_names.POLYMER_TYPES_ORDER_WITH_UNKNOWN_AND_GAP[residue_names.GAP]
    depth, n = spec.msa_depth, spec.num_tokens
    rows = rng.randint(0, 20, size=(depth, n))
    rows[rng.random_sample((depth, n)) < 0.1] = gap
    rows[0] = aatype
    deletions = (rng.random_sample((depth, n)) < 0.05) * rng.randint(1, 5, size=(depth, n))
    deletions[0] = 0
    # Profile and deletion mean as data3.get_profile_features computes them (its C++ helper
    # is a per-column histogram).
    profile = np.zeros((n, num_types), np.float32)
    np.add.at(profile, (np.broadcast_to(np.arange(n), rows.shape), rows), 1.0)
    profile /= depth
    pad = ((0, spec.msa_pad_rows - depth), (0, 0))
    return features.MSA(
        rows=np.pad(rows.astype(np.int8), pad),
        mask=np.pad(np.ones((depth, n), bool), pad),
        deletion_matrix=np.pad(deletions.astype(np.int8), pad),
        profile=profile,
        deletion_mean=deletions.mean(axis=0).astype(np.float32),
        num_alignments=np.array(depth, np.int32),
    )


def _empty_templates(spec: BatchSpec):
    """Template slots with nothing found: what the pipeline pads to when a search is empty."""
    from alphafold3.model import features

    t, n = spec.templates, spec.num_tokens
    return features.Templates(
        aatype=np.zeros((t, n), np.int32),
        atom_positions=np.zeros((t, n, ATOMS_PER_TOKEN, 3), np.float32),
        atom_mask=np.zeros((t, n, ATOMS_PER_TOKEN), bool),
    )


def make_batch(spec: BatchSpec) -> dict[str, np.ndarray]:
    """The featurised example ``Model.__call__`` takes: a dict of numpy arrays (no object arrays)."""
    from alphafold3.constants import residue_names
    from alphafold3.model import feat_batch, features
    from alphafold3.model.components import utils

    if spec.msa_depth > spec.msa_pad_rows:
        raise ValueError(f"MSA depth {spec.msa_depth} exceeds the padded size {spec.msa_pad_rows}")
    rng = np.random.RandomState(spec.seed)
    sequence = [residue_names.PROTEIN_TYPES[i] for i in rng.randint(0, 20, size=spec.num_tokens)]
    all_tokens, token_atoms = _layouts(sequence)
    padding = features.PaddingShapes(
        num_tokens=spec.num_tokens,
        msa_size=spec.msa_pad_rows,
        num_chains=1000,  # WholePdbPipeline.Config.pad_num_chains
        num_templates=spec.templates,
        num_atoms=spec.num_atoms,
    )
    token_features = features.TokenFeatures.compute_features(all_tokens=all_tokens, padding_shapes=padding)
    ref_structure = _ref_structure(token_atoms, spec, rng)
    batch = feat_batch.Batch(
        msa=_msa(token_features.aatype, spec, rng),
        templates=_empty_templates(spec),
        token_features=token_features,
        ref_structure=ref_structure,
        predicted_structure_info=features.PredictedStructureInfo.compute_features(
            all_tokens=all_tokens, all_token_atoms_layout=token_atoms, padding_shapes=padding
        ),
        polymer_ligand_bond_info=features.PolymerLigandBondInfo.compute_features(
            all_tokens=all_tokens, all_token_atoms_layout=token_atoms, bond_layout=None, padding_shapes=padding
        ),
        ligand_ligand_bond_info=features.LigandLigandBondInfo.compute_features(all_tokens, None, padding),
        # No CCD needed for protein tokens (it is only read for nucleic residues).
        pseudo_beta_info=features.PseudoBetaInfo.compute_features(
            all_token_atoms_layout=token_atoms, ccd=None, padding_shapes=padding, logging_name="af3bench"
        ),
        atom_cross_att=features.AtomCrossAtt.compute_features(
            all_token_atoms_layout=token_atoms,
            queries_subset_size=QUERIES_SUBSET,
            keys_subset_size=KEYS_SUBSET,
            padding_shapes=padding,
        ),
        # Only used to turn outputs back into a Structure after inference; dropped below with the
        # other object-typed features, exactly as run_alphafold.py does before the jitted call.
        convert_model_output=features.ConvertModelOutput.compute_features(
            all_token_atoms_layout=token_atoms,
            padding_shapes=padding,
            flat_output_layout=None,
            empty_output_struc=None,
            polymer_ligand_bonds=None,
            ligand_ligand_bonds=None,
        ),
        frames=features.Frames.compute_features(
            all_tokens=all_tokens, all_token_atoms_layout=token_atoms, ref_structure=ref_structure,
            padding_shapes=padding,
        ),
    )
    return utils.remove_invalidly_typed_feats(batch.as_data_dict())
