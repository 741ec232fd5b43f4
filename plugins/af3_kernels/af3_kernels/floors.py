"""Physical floors: the least time a kernel can take on an H100, from the bytes it must move and
the arithmetic it must do at each unit's rate (docs/ANCHORS: measured-rate figures, not datasheet).

No torch import: the plugin, the runner and the benchmark script share these numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

HBM_BYTES_PER_S = 3.0e12  # H100 SXM HBM3, achievable
BF16_TENSOR_FLOPS = 790e12  # bf16/fp16 tensor cores, dense, achievable
TF32_TENSOR_FLOPS = BF16_TENSOR_FLOPS / 2  # tf32 runs at half the bf16 rate
FP32_FMA_FLOPS = 55e12  # plain fp32 FMA on the CUDA cores
EXP_PER_S = 3.9e12  # exp2 on the special-function units

#: the device these rates describe; a row's fraction_of_floor is only meaningful there
FLOOR_DEVICE = "H100 SXM (docs: ANCHORS.md rates)"

_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class Floor:
    seconds: float
    bound: str  # "memory", "tensor", "fma" or "exp"
    bytes: float
    flops: float
    exps: float

    @property
    def ms(self) -> float:
        return self.seconds * 1e3


def _math_rate(dtype: str, precision: str) -> tuple[float, str, float]:
    """(flops per second, unit name, flops multiplier) for the dots of this dtype/precision."""
    if dtype in ("bf16", "fp16"):
        return BF16_TENSOR_FLOPS, "tensor", 1.0
    if precision == "tf32":
        return TF32_TENSOR_FLOPS, "tensor", 1.0
    if precision == "tf32x3":  # three tf32 products per fp32 product
        return TF32_TENSOR_FLOPS, "tensor", 3.0
    if precision in ("bf16x6", "bf16x3"):  # each fp32 operand split into bf16 parts: 6 or 3 products
        return BF16_TENSOR_FLOPS, "tensor", float(precision[-1])
    return FP32_FMA_FLOPS, "fma", 1.0


def msa_pwa_floor(direction: str, B: int, S: int, R: int, H: int, C: int, dtype: str,
                  precision: str = "ieee", mask: bool = False) -> Floor:
    """Floor of MSA pair-weighted averaging for ``direction`` in fwd, bwd, fwdbwd.

    fwd reads v, g, bias and writes out: e*(3*S*R*H*C + R*R*H); 2*S*R*R*H*C flops; R*R*H exps.
    bwd reads dout, out, g, v, bias and writes dv, dg, dbias: e*(6*S*R*H*C + 2*R*R*H); twice the
    flops (dV = P^T dY' and dP = dY' V^T).
    fwdbwd as one unit needs out written once and nothing read twice: e*(6*S*R*H*C + 2*R*R*H),
    6*S*R*R*H*C flops. The softmax's exps are counted once per pass that needs P.
    """
    e = _ELEMENT_BYTES[dtype]
    srhc, rrh = B * S * R * H * C, B * R * R * H
    gemm = 2.0 * S * R * R * H * C * B
    mask_bytes = B * R * R if mask else 0
    if direction == "fwd":
        nbytes, flops, exps = e * (3 * srhc + rrh) + mask_bytes, gemm, rrh
    elif direction == "bwd":
        nbytes, flops, exps = e * (6 * srhc + 2 * rrh) + mask_bytes, 2 * gemm, rrh
    elif direction == "fwdbwd":
        nbytes, flops, exps = e * (6 * srhc + 2 * rrh) + mask_bytes, 3 * gemm, 2 * rrh
    else:
        raise ValueError(f"direction must be fwd, bwd or fwdbwd, not {direction!r}")
    rate, unit, mult = _math_rate(dtype, precision)
    candidates = {
        "memory": nbytes / HBM_BYTES_PER_S,
        unit: flops * mult / rate,
        "exp": exps / EXP_PER_S,
    }
    bound = max(candidates, key=candidates.get)
    return Floor(candidates[bound], bound, nbytes, flops, exps)
