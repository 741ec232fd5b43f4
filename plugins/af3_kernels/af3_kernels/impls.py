"""The implementations a benchmark can compare, behind one call signature ``fn(v, b, g, mask)``.

fused    this package's Triton kernel (ops/msa_pwa.py)
torch    the eager reference (reference.py): softmax plus einsum
compile  torch.compile of that reference
seed     Ligo's own Triton kernel (src/models/components/msa_kernel.py), loaded by file path
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

IMPLS = ("fused", "torch", "compile", "seed")
#: the implementations that are this package's Triton kernels (CPU: Triton's interpreter)
TRITON_IMPLS = ("fused",)
LIGO_KERNEL = Path("src/models/components/msa_kernel.py")


def ligo_source() -> Path | None:
    """Ligo's checkout: $AF3_LIGO_SRC, else third_party/alphafold3_ligo in the repo or the cwd."""
    candidates = []
    if os.environ.get("AF3_LIGO_SRC"):
        candidates.append(Path(os.environ["AF3_LIGO_SRC"]))
    here = Path(__file__).resolve()
    candidates += [p / "third_party" / "alphafold3_ligo" for p in here.parents[:4]]
    candidates.append(Path.cwd() / "third_party" / "alphafold3_ligo")
    for c in candidates:
        if (c / LIGO_KERNEL).is_file():
            return c
    return None


def load_seed():
    """Ligo's ``MSAWeightedAveragingFused`` and facts about it, imported from its file alone.

    Only that file is executed (it imports torch, triton and math): Ligo's ``src/utils/__init__.py``
    pulls in hydra and lightning, which inference does not need. Triton >= 3.6 rejects the file's
    plain global ``INF`` unless TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1, so that is set here.
    """
    src = ligo_source()
    if src is None:
        raise FileNotFoundError(
            "Ligo's source was not found: set AF3_LIGO_SRC to a checkout of alphafold3 (Ligo) "
            "or place it at third_party/alphafold3_ligo")
    os.environ.setdefault("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS", "1")
    path = src / LIGO_KERNEL
    spec = importlib.util.spec_from_file_location("af3_kernels._ligo_msa_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    facts = {"seed_path": str(path), "seed_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
    return module.MSAWeightedAveragingFused, facts


def make(impl: str, *, precision: str = "ieee", p_mode: str = "auto"):
    """(fn, facts) for ``impl``; ``fn(v, b, g, mask) -> [B,S,R,H*C]``."""
    import torch

    from af3_kernels.reference import masked_logits, msa_pwa_reference

    if impl == "fused":
        from af3_kernels.ops.msa_pwa import msa_pair_weighted_averaging

        def fused(v, b, g, mask):
            return msa_pair_weighted_averaging(v, b, g, mask, precision=precision, p_mode=p_mode)

        return fused, {}
    if impl == "torch":
        return msa_pwa_reference, {}
    if impl == "compile":
        return torch.compile(msa_pwa_reference, dynamic=False), {}
    if impl == "seed":
        seed, facts = load_seed()

        def seed_fn(v, b, g, mask):
            # Ligo applies the pair mask to b before calling its kernel (msa_module.py).
            return seed(v, masked_logits(b, mask) if mask is not None else b, g)

        return seed_fn, facts
    raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
