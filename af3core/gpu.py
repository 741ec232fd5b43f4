"""NVML access: GPU presence, names, driver, and per-process GPU memory. Every call degrades to
"nothing known" on machines without NVML or a GPU."""
from __future__ import annotations

import functools
from typing import Iterable

try:
    import pynvml
except ImportError:  # nvidia-ml-py not installed
    pynvml = None


@functools.lru_cache(maxsize=1)
def _init() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
        return True
    except Exception:
        return False


def device_count() -> int:
    if not _init():
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def device_name(index: int = 0) -> str | None:
    if index >= device_count():
        return None
    try:
        return _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index)))
    except Exception:
        return None


def driver_version() -> str | None:
    if not _init():
        return None
    try:
        return _text(pynvml.nvmlSystemGetDriverVersion())
    except Exception:
        return None


def process_memory_bytes(pids: Iterable[int]) -> int | None:
    """GPU memory used by these processes on all GPUs, as NVML's per-process list reports it.

    None when NVML is unavailable; 0 when the processes hold no GPU memory (yet).
    """
    count = device_count()
    if not count:
        return None
    wanted = set(pids)
    total = 0
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:
            continue
        for proc in procs:
            if proc.pid in wanted and proc.usedGpuMemory:
                total += int(proc.usedGpuMemory)
    return total
