"""The synthetic input: ``batch`` random sequences of the 20 standard amino acids, each
``n_residues`` long, tokenised by the alphabet's own batch converter (BOS prepended, EOS appended:
``[batch, n_residues + 2]`` tokens, no padding since the sequences are of one length)."""
from __future__ import annotations

import numpy as np

AA20 = "ACDEFGHIKLMNPQRSTVWY"


def random_sequences(batch: int, n_residues: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(AA20))
    return ["".join(rng.choice(letters, n_residues)) for _ in range(batch)]


def tokens(alphabet, batch: int, n_residues: int, seed: int = 0):
    """``(sequences, tokens)``: the converter's int64 token tensor on the CPU."""
    seqs = random_sequences(batch, n_residues, seed)
    _, _, toks = alphabet.get_batch_converter()([(f"seq{i}", s) for i, s in enumerate(seqs)])
    return seqs, toks
