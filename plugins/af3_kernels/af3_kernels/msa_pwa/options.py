"""The fused kernel's implementation choices, as one immutable object (no torch import).

``msa_pair_weighted_averaging(..., options=MSAPWAOptions(...))`` hands them to the launch code;
the defaults are the measured best (figures: CHANGELOG.md and docs/BENCHMARKS.md). Tests and the tuning script pass
their own object instead of changing module state, so calls with different options can run side
by side (pytest-xdist, one process per worker, or several in one process).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping


#: every options object made, by key (equal options share one key)
_BY_KEY: dict[str, "MSAPWAOptions"] = {}


def by_key(key: str) -> "MSAPWAOptions":
    return _BY_KEY[key]


@dataclass(frozen=True)
class MSAPWAOptions:
    #: fill every buffer the kernels are meant to overwrite with NaN first, so an element the
    #: kernels forget to write fails a comparison instead of passing by luck (tests)
    poison_outputs: bool = False
    #: per-kernel launch-configuration overrides, a whole configuration each (the tuning sweep):
    #: {"fwd": {"BLOCK_I": 64, ...}, "fwd_tma": ..., "dv": ..., "dbias": ..., "elementwise": ...,
    #: "gluon_split": {...}}; "fwd" and "fwd_tma" may set "HEADS" (heads per program)
    config_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: P buffers up to this size are stored between the softmax and the GEMMs (p_mode="auto")
    stored_p_max_bytes: int = 256 * 2**20
    #: fp32 with precision="ieee" runs its dots on the FMA units: there dbias reads [B,H,S*C,R]
    #: copies of dY' and v, operands contiguous along i and j rather than along the reduction n
    #: (H100, fp32 fwd+bwd at S=128, R=384, C=8: 310 instead of 460 us)
    fma_dbias_nmajor: bool = True
    #: bf16/fp16 forward from a stored P: read P (and v's gemm copy) through TMA descriptors with the
    #: larger tiles of _fwd_tma_kernel (see launch.tma_ok); False keeps the pointer-load _fwd_kernel
    use_tma_forward: bool = True
    #: ... from this GEMM size R*S*C up. H100, bf16 (one run): (128, 384, 8), 0.4M, 36 us with
    #: pointer loads vs 40 with TMA; (128, 384, 32), 1.6M, 62 vs 59; (128, 768, 32) 161 vs 144;
    #: (512, 768, 8) 262 vs 231 (gemm layout). The smaller pointer-load tiles win only at the smallest.
    tma_forward_min_rn: int = 2**20
    #: layout="auto" also picks the gemm copy for short channel pieces at small S when a backward
    #: follows. Off: faster (H100 bf16 fwd+bwd (128, 384, 8): 135 vs 171 us) but the saved copy of v
    #: lifts the peak above eager's at R = 384 and 768; pass layout="gemm" for the speed.
    gemm_layout_for_backward: bool = False
    #: the forward's stored P is kept for the backward instead of being rebuilt there (H100 fp32
    #: fwd+bwd (128, 384, 8): 284 vs 289 us; the peak stays under eager's at R = 384 to 3072)
    keep_p_for_backward: bool = True
    #: fp32 forward at precision "bf16x6" from a stored P on Hopper in Gluon (gluon_split.py): the
    #: six products of a k-step as one batch of wgmma, 80 registers (H100 (128, 384, 8), same
    #: process: 62.0-62.9 us vs 66.2-66.7 for _fwd_kernel's tl.dot bf16x6)
    use_gluon_split_forward: bool = True
    #: launch order of the tiled kernels: all heads of a tile side by side (see launch.grid)
    heads_first: bool = True
    #: forward programs on tensor cores own two adjacent heads whose channel pieces are shorter than
    #: a 32-byte sector (bf16 C = 8), so v, g and out move in whole sectors (launch.group_heads)
    group_heads: bool = True
    #: programmatic dependent launch (Hopper+): the forward kernel is launched while the statistics
    #: kernel runs and waits for its results on the GPU (griddepcontrol), hiding the launch gap
    #: between the two (H100, same run: bf16 (128, 384, 8) 33.4 -> 32.9 us, fp32 75.0 -> 74.7)
    use_pdl: bool = True
    #: fp32 dbias at ieee and bf16x6: each n-block's dot into a fresh accumulator, added to the running
    #: sum with Kahan compensation (kernels._bwd_dbias_kernel). Off, the FMA path (ieee) sums all
    #: n = S*C products of dP in one running accumulator, whose error grows with S*C past the bar
    #: (3x eager fp32's against float64) at large C: a numpy emulation of that order at (B, S, R, H,
    #: C) = (1, 128, 64, 1, 128) gave 6.9e-4 against a bar of 1.5e-4 (CPU eager's error), compensated
    #: 1.1e-5; bf16x6 already adds each dot's sum in fp32 (Triton's split), uncompensated. Costs four
    #: fp32 adds per accumulator element per n-block (against BLOCK_N FMAs) and, on the FMA path at
    #: the default tile, 96 instead of 61 registers (ptxas, sm_90). H200, fp32 bf16x6 (128, 384, 8)
    #: fwd+bwd: 252 us against 251 without.
    compensated_dbias: bool = True
    #: bf16/fp16 forward+backward at short channel pieces (C of under 32 bytes) with layout="auto" and
    #: a forward that read v in place: the backward reads dY' and v from gemm-layout copies of its own
    #: (launch.use_gemm_layout_in_backward): the operands of layout="gemm"'s backward (H100 (128, 384,
    #: 8): 135 us fwd+bwd against 164-171 flat), without its copy of v kept from the forward, nor a
    #: higher backward peak. Same results bit for bit. H200, bf16 (128, 384, 8) fwd+bwd, CUDA graphs:
    #: 123 us against 155 flat (eager 129), same peak (docs/BENCHMARKS.md).
    gemm_layout_in_backward: bool = True

    def __post_init__(self):
        # The key custom ops find these options by (ops.py): computed here, outside any traced code,
        # so torch.compile reads a constant string instead of handling the object itself.
        key = repr(self)
        object.__setattr__(self, "_key", key)
        _BY_KEY.setdefault(key, self)

    @property
    def key(self) -> str:
        return self._key

    def with_overrides(self, **configs: Mapping[str, Any]) -> "MSAPWAOptions":
        """A copy with ``configs`` (kernel name -> configuration) added to ``config_overrides``."""
        return replace(self, config_overrides={**self.config_overrides, **configs})


DEFAULT_OPTIONS = MSAPWAOptions()


def parse_options(text: str, base: MSAPWAOptions = DEFAULT_OPTIONS) -> MSAPWAOptions:
    """``base`` with the fields named in ``text`` ("name=value,name=value"; booleans as 1/0,
    true/false, on/off; integers as written) replaced: how the benchmark case takes options from
    its environment (case.OPTIONS_ENV) for A/B runs. config_overrides cannot be set this way."""
    kinds = {f.name: f.type for f in fields(MSAPWAOptions)}
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (x.strip() for x in item.partition("="))
        kind = kinds.get(name)
        if not sep or kind not in ("bool", "int", bool, int):
            known = ", ".join(n for n, k in kinds.items() if k in ("bool", "int", bool, int))
            raise ValueError(f"{item!r}: expected name=value with name one of {known}")
        if kind in ("bool", bool):
            if value.lower() not in ("1", "0", "true", "false", "on", "off"):
                raise ValueError(f"{item!r}: {name} takes 1/0, true/false or on/off")
            changes[name] = value.lower() in ("1", "true", "on")
        else:
            try:
                changes[name] = int(value)
            except ValueError:
                raise ValueError(f"{item!r}: {name} takes an integer") from None
    return replace(base, **changes)
