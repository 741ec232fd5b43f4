"""Physical floors: the least time an operation can take on a GPU, from the bytes it must move and
the arithmetic it must do, each at its unit's rate; the slowest unit bounds it. Kernel-agnostic:
each kernel's case.py counts its own bytes, flops and exps and calls :func:`floor`.

Rates are per GPU model (``RATES``), picked by the torch device name; a GPU outside the table gets
its HBM rate measured at setup (a large device-to-device copy) and the H100 SXM's compute rates,
and says so (``Rates.source``). Every row records the rates used. No torch import.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Rates:
    """Achievable rates of one GPU model (measured or from measured anchors, not datasheet peaks)."""

    gpu: str  # the model these rates describe
    hbm_bytes_per_s: float  # DRAM bytes (read + written) per second
    bf16_tensor_flops: float  # bf16/fp16 tensor cores, dense
    fp32_fma_flops: float  # plain fp32 FMA on the CUDA cores
    exp_per_s: float  # exp2 on the special-function units
    source: str = ""

    @property
    def tf32_tensor_flops(self) -> float:
        return self.bf16_tensor_flops / 2  # tf32 runs at half the bf16 rate

    def to_dict(self) -> dict:
        return asdict(self)


H100_SXM = Rates("H100 SXM", hbm_bytes_per_s=3.0e12, bf16_tensor_flops=790e12, fp32_fma_flops=55e12,
                 exp_per_s=3.9e12, source="table: achievable HBM3 bandwidth and dense bf16 rate, measured")
H200 = Rates("H200", hbm_bytes_per_s=4.3e12, bf16_tensor_flops=790e12, fp32_fma_flops=67e12, exp_per_s=3.9e12,
             source="table: HBM3e from a measured device copy (spec 4.8e12), bf16 from a measured "
                    "8192^3 matmul (spec 989e12)")

#: GPU model -> rates; see rates_for_gpu for how a device name is matched
RATES = {r.gpu: r for r in (H100_SXM, H200)}


def rates_for_gpu(device_name: str) -> Rates | None:
    """The table's rates for a torch device name ("NVIDIA H100 80GB HBM3", "NVIDIA H200"), or None
    for a model outside it (H100 PCIe and NVL, GH200, H200 NVL: other clocks and memory)."""
    name = device_name.upper()
    if re.search(r"\b(PCIE|NVL)\b", name):
        return None
    if re.search(r"\bH200\b", name):
        return H200
    if re.search(r"\bH100\b", name):
        return H100_SXM
    return None


def measured_rates(device_name: str, hbm_bytes_per_s: float) -> Rates:
    """Rates for a GPU outside the table: its measured copy bandwidth, the H100 SXM's compute rates."""
    return replace(H100_SXM, gpu=device_name, hbm_bytes_per_s=hbm_bytes_per_s,
                   source="HBM: device-to-device copy measured at setup; compute: the H100 SXM's rates "
                          "(this GPU is not in the table)")


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


def math_rate(dtype: str, precision: str, rates: Rates) -> tuple[float, str, float]:
    """(flops per second, unit name, flops multiplier) for the dots of this dtype and fp32 precision."""
    if dtype in ("bf16", "fp16"):
        return rates.bf16_tensor_flops, "tensor", 1.0
    if precision == "tf32":
        return rates.tf32_tensor_flops, "tensor", 1.0
    if precision == "tf32x3":  # three tf32 products per fp32 product
        return rates.tf32_tensor_flops, "tensor", 3.0
    if precision in ("bf16x6", "bf16x3"):  # each fp32 operand split into bf16 parts: 6 or 3 products
        return rates.bf16_tensor_flops, "tensor", float(precision[-1])
    return rates.fp32_fma_flops, "fma", 1.0


def floor(nbytes: float, flops: float, exps: float, dtype: str, precision: str, rates: Rates) -> Floor:
    """The floor of an operation moving ``nbytes`` through DRAM, doing ``flops`` in dots of
    ``dtype`` (at fp32 ``precision``) and ``exps`` exponentials, at ``rates``."""
    rate, unit, mult = math_rate(dtype, precision, rates)
    candidates = {
        "memory": nbytes / rates.hbm_bytes_per_s,
        unit: flops * mult / rate,
        "exp": exps / rates.exp_per_s,
    }
    bound = max(candidates, key=candidates.get)
    return Floor(candidates[bound], bound, nbytes, flops, exps)
