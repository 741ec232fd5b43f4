"""Where cases run at the same time: ``--jobs N`` workers on the selected device, or ``--gpus LIST``
with one worker per listed GPU, each pinned to it.

A slot is one worker at a time. A GPU slot's worker sees only its GPU (``CUDA_VISIBLE_DEVICES`` set
to the GPU's NVML index, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA counts as NVML does),
and its rows name that GPU (index, name, UUID). An index listed twice gives two slots on one GPU:
their cases share it (the mechanics, not a timing to quote), as do ``--jobs N`` slots on one device.
Cases that need several GPUs are out of scope.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from af3core import devices
from af3core.errors import UsageError


@dataclass(frozen=True)
class Slot:
    label: str  # "cuda:1", or "1" for the n-th of --jobs on the selected device
    gpu_index: int | None = None  # the NVML index a GPU slot pins, else None (the plan's own pin)


def parse_gpus(text: str) -> list[int]:
    """``all``, or comma-separated NVML indices (repeats allowed): the GPU of each slot."""
    count = devices.gpu_count()
    if not count:
        raise UsageError("--gpus: no CUDA GPU is visible on this machine (NVML found none)")
    if text.strip().lower() == "all":
        return list(range(count))
    indices = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"--gpus {text!r}: expected all or GPU indices such as 0,1,2,3")
        if int(part) >= count:
            raise UsageError(f"--gpus {text!r}: GPU {part} does not exist (NVML sees {count}: 0..{count - 1})")
        indices.append(int(part))
    return indices


def make_slots(gpus: str | None, jobs: int | None) -> list[Slot]:
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if gpus is not None:
        if jobs is not None:
            raise UsageError("--gpus gives one slot per listed GPU: leave out --jobs (list a GPU twice to share it)")
        return [Slot(f"cuda:{i}", i) for i in parse_gpus(gpus)]
    return [Slot(str(n)) for n in range(jobs or 1)]


def pin(planned, slot: Slot):
    """``planned`` as it runs in ``slot``: for a GPU slot, the worker's environment pinned to the GPU
    and the GPU's NVML facts in the row."""
    if slot.gpu_index is None:
        return planned
    env = {**planned.env, "CUDA_VISIBLE_DEVICES": str(slot.gpu_index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    gpu = {"gpu_name": devices.gpu_name(slot.gpu_index), "gpu_index": slot.gpu_index,
           "gpu_uuid": devices.gpu_uuid(slot.gpu_index)}
    case = replace(planned.case, device="cuda")
    return replace(planned, env=env, gpu=gpu, case=case)
