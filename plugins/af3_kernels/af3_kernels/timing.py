"""Timing of one kernel call: CUDA events around each call, or replays of one call captured in a
CUDA graph; L2 flushed between repetitions; median over many repetitions. Shared by the runner and
the kernels' tuning scripts. Also the device-copy bandwidth the floors use on a GPU outside their
table."""
from __future__ import annotations

import statistics
import time
from typing import Callable


class L2Flusher:
    """Overwrites a buffer twice the size of the L2 cache, so no repetition starts with warm data."""

    def __init__(self, device):
        import torch

        size = 2 * getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
        self.buffer = torch.empty(int(size), dtype=torch.uint8, device=device)

    def __call__(self):
        self.buffer.zero_()


def time_cuda(fn: Callable[[], object], reps: int, before: Callable[[], object] | None = None,
              flush: L2Flusher | None = None) -> list[float]:
    """Milliseconds of each of ``reps`` calls of ``fn``; ``before`` and ``flush`` run untimed."""
    import torch

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for k in range(reps):
        if before is not None:
            before()
        if flush is not None:
            flush()
        starts[k].record()
        fn()
        ends[k].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def time_cuda_graph(fn: Callable[[], object], reps: int, before: Callable[[], object] | None = None,
                    flush: L2Flusher | None = None, warmup: int = 3) -> list[float]:
    """Milliseconds of each of ``reps`` replays of one call of ``fn`` captured in a CUDA graph.

    As triton.testing.do_bench_cudagraph: the replays carry no Python launch cost, so this is the
    GPU time of the kernels alone. ``fn`` is warmed up (compiled) on a side stream first, then
    captured once; ``before`` and ``flush`` run outside the graph, untimed, before each replay.
    ``fn`` must work on fixed tensors (the graph replays on the captured addresses)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            if before is not None:
                before()
            fn()
    torch.cuda.current_stream().wait_stream(side)
    if before is not None:
        before()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    try:
        return time_cuda(graph.replay, reps, before=before, flush=flush)
    finally:
        del graph  # frees the graph's private memory pool before the next case


def time_cpu(fn: Callable[[], object], reps: int, before: Callable[[], object] | None = None) -> list[float]:
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def median(times: list[float]) -> float:
    return statistics.median(times)


def copy_bandwidth(device, nbytes: int = 2**29, reps: int = 10) -> float:
    """Bytes per second of a device-to-device copy of ``nbytes`` (bytes read plus bytes written),
    median of ``reps`` copies: the achievable DRAM rate (the buffers are far larger than L2)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch
    try:
        ms = median(time_cuda(lambda: dst.copy_(src), reps))
    finally:
        del src, dst
        torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3)
