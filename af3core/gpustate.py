"""The GPU's state during a case's timed passes, sampled by the host through NVML: SM clock,
temperature, power and the reasons the driver gives for holding clocks down (nvbench's throttle
detection). A case whose SM clock moved by more than CLOCK_CHANGE, or that saw a thermal or power
slowdown, is flagged ``clocks_changed``: its passes did not all run on the same machine state.

Sampled at the memory sampler's rate (0.1 s), on the case's GPU only, and only while the worker is
in its timed passes. Without NVML or a GPU every column stays empty.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from af3core import devices

#: Columns of summary.csv, in order.
COLUMNS = ("sm_clock_min_mhz", "sm_clock_max_mhz", "gpu_temp_max_c", "gpu_power_max_w", "throttle_reasons",
           "clocks_changed")
#: A relative spread of the sampled SM clock above this flags the case.
CLOCK_CHANGE = 0.05
#: NVML's clock event ("throttle") reason bits worth naming; idle, application-clock and display
#: settings are states, not slowdowns, and leave the flag alone.
REASONS = {
    0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal", 0x40: "hw_thermal",
    0x80: "hw_power_brake",
}
SLOWDOWNS = {"sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"}


def reason_names(mask: int) -> set[str]:
    return {name for bit, name in REASONS.items() if mask & bit}


@dataclass
class GpuState:
    """Running extremes of the samples taken; :meth:`columns` is what the summary row gets."""

    clocks: list[int] = field(default_factory=list)
    temp_max: int | None = None
    power_max_w: float | None = None
    reasons: set[str] = field(default_factory=set)

    def add(self, sm_mhz: int | None, temp_c: int | None, power_mw: int | None, reasons_mask: int | None) -> None:
        if sm_mhz is not None:
            self.clocks.append(int(sm_mhz))
        if temp_c is not None:
            self.temp_max = max(self.temp_max or temp_c, temp_c)
        if power_mw is not None:
            self.power_max_w = max(self.power_max_w or 0.0, power_mw / 1e3)
        if reasons_mask:
            self.reasons |= reason_names(int(reasons_mask))

    def columns(self) -> dict:
        if not self.clocks and self.temp_max is None:
            return dict.fromkeys(COLUMNS)
        low, high = (min(self.clocks), max(self.clocks)) if self.clocks else (None, None)
        moved = bool(high and (high - low) / high > CLOCK_CHANGE)
        return {"sm_clock_min_mhz": low, "sm_clock_max_mhz": high, "gpu_temp_max_c": self.temp_max,
                "gpu_power_max_w": round(self.power_max_w, 1) if self.power_max_w is not None else None,
                "throttle_reasons": " ".join(sorted(self.reasons)),
                "clocks_changed": moved or bool(self.reasons & SLOWDOWNS)}


class GpuSampler:
    """Samples one GPU into a :class:`GpuState` when due (the supervisor's loop calls it)."""

    def __init__(self, index: int | None, interval_s: float):
        self.state = GpuState()
        self.interval_s = interval_s
        self.next_at = 0.0
        self.handle = None
        if index is not None and index < devices.gpu_count():
            try:
                self.handle = devices.pynvml.nvmlDeviceGetHandleByIndex(index)
            except Exception:  # noqa: BLE001 - no state, no columns
                self.handle = None

    def sample(self) -> None:
        now = time.monotonic()
        if self.handle is None or now < self.next_at:
            return
        self.next_at = now + self.interval_s
        nvml = devices.pynvml
        self.state.add(_ask(nvml.nvmlDeviceGetClockInfo, self.handle, nvml.NVML_CLOCK_SM),
                       _ask(nvml.nvmlDeviceGetTemperature, self.handle, nvml.NVML_TEMPERATURE_GPU),
                       _ask(nvml.nvmlDeviceGetPowerUsage, self.handle),
                       _ask(getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons, self.handle))


def _ask(query, *args):
    try:
        return query(*args)
    except Exception:  # noqa: BLE001 - a query this GPU or driver does not support
        return None
