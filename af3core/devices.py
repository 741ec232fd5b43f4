"""Devices: what ``--device`` means, and what NVML says about the GPUs (count, name, UUID, driver).

Every NVML call degrades to "nothing known" on machines without NVML or a GPU.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass

from af3core.errors import UsageError

try:
    import pynvml
except ImportError:  # nvidia-ml-py not installed
    pynvml = None


@functools.lru_cache(maxsize=1)
def nvml_ready() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
        return True
    except Exception:  # noqa: BLE001 - no driver, no GPU, no permission: all mean "none"
        return False


def gpu_count() -> int:
    if not nvml_ready():
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001
        return 0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _handle_query(index: int, query: str) -> str | None:
    if index >= gpu_count():
        return None
    try:
        return _text(getattr(pynvml, query)(pynvml.nvmlDeviceGetHandleByIndex(index)))
    except Exception:  # noqa: BLE001
        return None


def gpu_name(index: int = 0) -> str | None:
    return _handle_query(index, "nvmlDeviceGetName")


def gpu_uuid(index: int = 0) -> str | None:
    return _handle_query(index, "nvmlDeviceGetUUID")


def driver_version() -> str | None:
    if not nvml_ready():
        return None
    try:
        return _text(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        return None


@dataclass(frozen=True)
class Device:
    requested: str  # what the user asked for, e.g. "auto" or "cuda:1"
    name: str  # what the worker uses: "cpu", "cuda", "mps"
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES pin for cuda:N

    @property
    def type(self) -> str:
        return self.name.split(":")[0]

    @property
    def label(self) -> str:
        return self.name if self.visible_devices is None else f"cuda:{self.visible_devices}"

    @property
    def gpu_index(self) -> int | None:
        """NVML's index of the GPU the worker uses. NVML counts in PCI order; on hosts of mixed
        GPUs set CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA counts the same way."""
        if self.type != "cuda":
            return None
        pinned = self.visible_devices or (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
        return int(pinned) if pinned.isdigit() else 0

    @property
    def gpu_name(self) -> str | None:
        return None if self.gpu_index is None else gpu_name(self.gpu_index)

    @property
    def gpu_uuid(self) -> str | None:
        return None if self.gpu_index is None else gpu_uuid(self.gpu_index)


def _is_apple_silicon() -> bool:
    return sys.platform == "darwin" and os.uname().machine == "arm64"


def resolve_device(text: str) -> Device:
    text = text.strip().lower()
    count = gpu_count()
    if text == "auto":
        if count:
            return Device(text, "cuda")
        return Device(text, "mps" if _is_apple_silicon() else "cpu")
    if text == "cpu":
        return Device(text, "cpu")
    if text == "mps":
        if not _is_apple_silicon():
            raise UsageError("--device mps: Apple-silicon GPUs only (this machine is not one)")
        return Device(text, "mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise UsageError(f"--device {text!r}: expected auto, cpu, cuda, cuda:N or mps")
    if not count:
        raise UsageError(f"--device {text}: no CUDA GPU is visible on this machine (NVML found none)")
    if match.group(1) is None:
        return Device(text, "cuda")
    index = int(match.group(1))
    if index >= count:
        raise UsageError(f"--device {text}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    pinned = visible.split(",")[index].strip() if visible else str(index)
    return Device(text, "cuda", pinned)
