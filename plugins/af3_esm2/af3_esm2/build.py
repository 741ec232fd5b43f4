"""From resolved settings to a ready model and tokens on the device: the runner's ``setup``.

Errors a user can fix are :class:`BuildError`; the runner turns them into CaseError. torch, esm
and torchao are imported inside :func:`prepare` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from af3_esm2.plugin import DISTRIBUTION, installed
from af3_esm2.settings import TORCHAO_FIX


class BuildError(Exception):
    """A setting this machine cannot honour (the runner reports it as a CaseError)."""


@dataclass
class Built:
    model: Any
    tokens: Any
    repr_layer: int
    facts: dict[str, Any]


def quantize_int8(model) -> str:
    """torchao's weight-only int8 on every nn.Linear (the LM head's tied projection is a plain
    parameter, not a Linear, and stays). Returns torchao's version."""
    try:
        import torchao
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise BuildError(f"weights=int8 needs torchao ({exc}): {TORCHAO_FIX}") from None
    quantize_(model, Int8WeightOnlyConfig())
    return torchao.__version__


def prepare(settings: Mapping[str, Any], mode: str, n_residues: int, device: str) -> Built:
    import torch

    from af3_esm2 import batch as batch_mod
    from af3_esm2 import model as model_mod

    size = settings["size"]
    spec = model_mod.SIZES[size]
    layers = 1 if mode == "toy" else spec.layers
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[settings["dtype"]]
    if dtype is torch.float16 and device != "cuda":
        raise BuildError("dtype=fp16 needs a CUDA device; use fp32 or bf16 here")
    model, alphabet = model_mod.build_model(size, layers=layers, seed=int(settings["seed"]), device=device)
    n = model_mod.n_params(model)
    model = model.to(device=device, dtype=dtype)
    torchao_version = None
    if settings["weights"] == "int8":
        torchao_version = quantize_int8(model)
    seqs, toks = batch_mod.tokens(alphabet, int(settings["batch"]), n_residues, seed=int(settings["seed"]))
    facts = {
        "engine_source_version": f"{DISTRIBUTION} {installed() or '?'}",
        "size": size,
        "checkpoint_architecture": spec.checkpoint,
        "layers": layers,
        "embed_dim": spec.embed_dim,
        "attention_heads": spec.heads,
        "n_params": n,
        "batch": int(settings["batch"]),
        "residues_per_sequence": n_residues,
        "tokens_per_sequence": int(toks.shape[1]),
        "dtype": settings["dtype"],
        "weights": settings["weights"],
        "torchao_version": torchao_version,
        "torch_version": torch.__version__,
    }
    return Built(model, toks.to(device), layers, facts)
