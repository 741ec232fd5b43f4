"""The fused kernel's implementation choices, as one immutable object (no torch import).

``evo_attention(..., options=EvoAttnOptions(...))`` hands them to the launch code. Tests and tuning
pass their own object instead of changing module state, so calls with different options can run
side by side.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class EvoAttnOptions:
    #: fill every buffer the kernels are meant to overwrite with NaN first, so an element the
    #: kernels forget to write fails a comparison instead of passing by luck (tests)
    poison_outputs: bool = False
    #: per-kernel launch-configuration overrides, merged over the defaults of launch.config:
    #: {"fwd": {"BLOCK_M": 128, "BLOCK_N": 64, "ROWS": 2, "num_warps": 8, "num_stages": 2}, "dkdv": ...,
    #: "dq": ..., "prep": {"BLOCK_M": ..., "num_warps": ...}}
    config_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: forward, 16-bit inputs: of each program's ROWS rows, this many compute their exponentials as a
    #: degree-3 polynomial on the FMA units instead of the MUFU (special-function) unit, whose
    #: throughput bounds the forward at small head dims (FlashAttention-4's trick). 0: all on MUFU.
    #: Relative error of the polynomial ~1e-4 (below bf16/fp16 rounding of P); never used for fp32.
    poly_exp_rows: int = 0
    #: shrink the forward's BLOCK_M (down to 64) while it launches fewer programs than this times
    #: the GPU's SM count (small problems: the single variant, B*H*R small)
    min_waves: float = 1.0

    def with_overrides(self, **configs: Mapping[str, Any]) -> "EvoAttnOptions":
        """A copy with ``configs`` (kernel name -> partial configuration) added to the overrides."""
        return replace(self, config_overrides={**self.config_overrides, **configs})


DEFAULT_OPTIONS = EvoAttnOptions()
