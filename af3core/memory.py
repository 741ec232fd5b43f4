"""Memory figures, each under its one name from where it is measured to the summary column:

- ``nvml_peak_gpu_bytes``: NVML's per-process GPU memory of the worker and its children, sampled
  by the host (:class:`ProcessSampler`);
- ``sampled_peak_rss_bytes``: the resident set of the worker and its children, sampled by the host;
- ``framework_peak_bytes`` (with ``framework``): the framework's own allocator peak, asked inside
  the worker (:func:`framework_peak`);
- ``worker_peak_rss_bytes``: the worker's own peak resident set (Linux VmHWM), read by the worker
  at the end (:func:`peak_rss_bytes`).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable

from af3core import devices

#: How often the host samples a worker's memory: a psutil/NVML sweep costs tens of microseconds.
SAMPLE_INTERVAL_S = 0.1


def gpu_process_bytes(pids: Iterable[int]) -> int | None:
    """GPU memory these processes hold on all GPUs, as NVML's per-process list reports it.

    None when NVML is unavailable; 0 when the processes hold no GPU memory (yet).
    """
    count = devices.gpu_count()
    if not count:
        return None
    pynvml = devices.pynvml
    wanted = set(pids)
    total = 0
    for index in range(count):
        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(index))
        except Exception:  # noqa: BLE001
            continue
        for proc in procs:
            if proc.pid in wanted and proc.usedGpuMemory:
                total += int(proc.usedGpuMemory)
    return total


class ProcessSampler:
    """The host's view of one worker: running peaks of its process tree's RSS and GPU memory."""

    def __init__(self, pid: int):
        import psutil

        self._psutil = psutil
        try:
            self.proc = psutil.Process(pid)
        except psutil.Error:
            self.proc = None
        self.next_at = 0.0
        self.nvml_peak_gpu_bytes: int | None = None
        self.sampled_peak_rss_bytes: int | None = None

    def sample(self, force: bool = False) -> bool:
        """Take a sample if one is due; True when a peak grew."""
        now = time.monotonic()
        if self.proc is None or (not force and now < self.next_at):
            return False
        self.next_at = now + SAMPLE_INTERVAL_S
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in procs)
        except self._psutil.Error:
            return False
        grew = False
        if rss > (self.sampled_peak_rss_bytes or 0):
            self.sampled_peak_rss_bytes, grew = rss, True
        used = gpu_process_bytes(p.pid for p in procs)
        if used is not None and (self.nvml_peak_gpu_bytes is None or used > self.nvml_peak_gpu_bytes):
            self.nvml_peak_gpu_bytes, grew = used, True
        return grew


def framework_peak(framework: str, device: str) -> dict[str, Any]:
    """The framework's allocator peak, asked only of frameworks the runner already imported."""
    if framework == "torch" and "torch" in sys.modules:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            return {"framework": "torch", "framework_peak_bytes": int(torch.cuda.max_memory_allocated()),
                    "framework_peak_reserved_bytes": int(torch.cuda.max_memory_reserved())}
    if framework == "jax" and "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return {"framework": "jax", "framework_peak_bytes": int(stats["peak_bytes_in_use"])}
    return {"framework": framework or None, "framework_peak_bytes": None}


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process (Linux VmHWM), else getrusage's maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024
    except Exception:  # noqa: BLE001
        return None
