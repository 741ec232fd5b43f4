"""The synthetic feature dict, shaped as DeepMind's eval pipeline hands it to the model.

``alphafold.model.features.np_example_to_features`` (TensorFlow) turns the data pipeline's raw
features into this dict: every feature gets a leading axis of ``num_recycle + 1`` (one MSA
sample per recycle, ``resample_msa_in_recycling``), the MSA is padded to ``max_msa_clusters``
rows, the extra MSA to ``max_extra_msa`` rows and the templates to ``max_templates`` slots
(``fixed_size``) whatever the real depth. Here the same keys, shapes and dtypes are built in numpy
from a random sequence and a random full alignment, so no database, no TensorFlow.
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: 20 amino acids + X (unknown) + gap, the MSA alphabet before the bert mask token.
MSA_TOKENS = 22


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    num_res: int
    recycles: int  # the leading axis is recycles + 1
    msa_rows: int  # clustered MSA rows (msa_feat), all filled
    extra_msa_rows: int  # extra MSA rows, all filled
    templates: int  # template slots, all empty (template_mask 0)
    seed: int = 0

    @property
    def ensemble(self) -> int:
        return self.recycles + 1


def _atom_tables():
    """Per-restype atom14/atom37 tables, as data_transforms.make_atom14_masks builds them."""
    from alphafold.common import residue_constants as rc

    to37, to14, mask14 = [], [], []
    for rt in rc.restypes:
        names = rc.restype_name_to_atom14_names[rc.restype_1to3[rt]]
        to37.append([rc.atom_order[n] if n else 0 for n in names])
        idx14 = {n: i for i, n in enumerate(names)}
        to14.append([idx14.get(n, 0) for n in rc.atom_types])
        mask14.append([1.0 if n else 0.0 for n in names])
    to37.append([0] * 14)
    to14.append([0] * 37)
    mask14.append([0.0] * 14)
    mask37 = np.zeros([21, 37], np.float32)
    for i, rt in enumerate(rc.restypes):
        for name in rc.residue_atoms[rc.restype_1to3[rt]]:
            mask37[i, rc.atom_order[name]] = 1
    return (np.array(to37, np.int32), np.array(to14, np.int32), np.array(mask14, np.float32), mask37)


def _deletion_value(d: np.ndarray) -> np.ndarray:
    return (np.arctan(d / 3.0) * (2.0 / np.pi)).astype(np.float32)


def make_features(spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The model's input: every feature with a leading axis of ``spec.ensemble``."""
    from alphafold.common import residue_constants as rc

    rng = np.random.default_rng(spec.seed)
    n, b, m, e, t = spec.num_res, spec.ensemble, spec.msa_rows, spec.extra_msa_rows, spec.templates
    aatype = rng.integers(0, 20, size=n).astype(np.int32)
    to37, to14, mask14, mask37 = _atom_tables()

    per_recycle = []
    for _ in range(b):  # the pipeline samples the MSA clusters afresh for every recycle
        msa = rng.integers(0, MSA_TOKENS, size=(m, n)).astype(np.int32)
        msa[0] = aatype
        deletions = rng.poisson(0.1, size=(m, n)).astype(np.float32)
        deletions[0] = 0
        profile = rng.random((m, n, 23), dtype=np.float32)
        profile[..., 22] = 0  # no bert-mask token in the cluster profile
        profile /= profile.sum(-1, keepdims=True)
        msa_feat = np.concatenate(
            [
                np.eye(23, dtype=np.float32)[msa],
                np.clip(deletions, 0.0, 1.0)[..., None],
                _deletion_value(deletions)[..., None],
                profile,
                _deletion_value(rng.random((m, n), dtype=np.float32))[..., None],
            ],
            axis=-1,
        )
        extra_msa = rng.integers(0, MSA_TOKENS, size=(e, n)).astype(np.int32)
        extra_del = rng.poisson(0.1, size=(e, n)).astype(np.float32)
        per_recycle.append(
            {
                "msa_feat": msa_feat,
                "true_msa": msa,
                "extra_msa": extra_msa,
                "extra_has_deletion": np.clip(extra_del, 0.0, 1.0),
                "extra_deletion_value": _deletion_value(extra_del),
            }
        )

    def stack(key):
        return np.stack([r[key] for r in per_recycle])

    def tile(x):
        return np.broadcast_to(x, (b,) + np.shape(x)).copy()

    target_feat = np.concatenate([np.zeros((n, 1), np.float32), np.eye(21, dtype=np.float32)[aatype]], -1)
    feats = {
        "aatype": tile(aatype),
        "residue_index": tile(np.arange(n, dtype=np.int32)),
        "seq_length": tile(np.array(n, np.int32)),
        "seq_mask": tile(np.ones(n, np.float32)),
        "target_feat": tile(target_feat),
        "msa_feat": stack("msa_feat"),
        "msa_mask": tile(np.ones((m, n), np.float32)),
        "msa_row_mask": tile(np.ones(m, np.float32)),
        "bert_mask": tile(np.zeros((m, n), np.float32)),  # no masking at inference
        "true_msa": stack("true_msa"),
        "extra_msa": stack("extra_msa"),
        "extra_msa_mask": tile(np.ones((e, n), np.float32)),
        "extra_msa_row_mask": tile(np.ones(e, np.float32)),
        "extra_has_deletion": stack("extra_has_deletion"),
        "extra_deletion_value": stack("extra_deletion_value"),
        "atom14_atom_exists": tile(mask14[aatype]),
        "residx_atom14_to_atom37": tile(to37[aatype]),
        "residx_atom37_to_atom14": tile(to14[aatype]),
        "atom37_atom_exists": tile(mask37[aatype]),
        "random_crop_to_size_seed": tile(np.zeros(2, np.int32)),
    }
    # Empty template slots, as the pipeline pads them when no template is found.
    feats.update(
        {
            "template_aatype": np.zeros((b, t, n), np.int32),
            "template_all_atom_masks": np.zeros((b, t, n, rc.atom_type_num), np.float32),
            "template_all_atom_positions": np.zeros((b, t, n, rc.atom_type_num, 3), np.float32),
            "template_mask": np.zeros((b, t), np.float32),
            "template_pseudo_beta": np.zeros((b, t, n, 3), np.float32),
            "template_pseudo_beta_mask": np.zeros((b, t, n), np.float32),
            "template_sum_probs": np.zeros((b, t, 1), np.float32),
        }
    )
    return feats
