"""``af3 bench --in-process``: the same runner, in the host process, without worker or pipe.

For cross-checks of the harness against a bare loop (same runner, same passes, same rows), not
for sweeps: there is no timeout, no crash isolation, and framework memory peaks and environment
variables read at import carry over from one case to the next (JAX's peak cannot be reset).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from af3core import memory, protocol, worker
from af3core.record import CaseRecord


def run_case(record: CaseRecord, on_row: Callable[[CaseRecord, dict[str, Any]], None],
             on_update: Callable[[CaseRecord], None]) -> None:
    planned = record.planned
    os.environ.update(planned.env)  # the plugin's variables and the device pin, as a worker would get them
    sampler = memory.ProcessSampler(os.getpid())

    def send(message: dict[str, Any]) -> None:
        # Through the codec, so values are what a worker's frames would carry (numpy scalars -> numbers).
        decoded = next(protocol.FrameDecoder().feed(protocol.encode(message)))
        for row in record.apply(protocol.check(decoded)):
            on_row(record, row)
        if sampler.sample():
            record.nvml_peak_gpu_bytes = sampler.nvml_peak_gpu_bytes
            record.sampled_peak_rss_bytes = sampler.sampled_peak_rss_bytes
        on_update(record)

    send({"type": "hello", "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
          "python": sys.version.split()[0], "executable": sys.executable,
          "versions": worker.library_versions([*worker.CORE_LIBRARIES, *planned.plugin.libraries])})
    try:
        code = worker.execute(planned.plugin.runner, planned.case, send, log_tracebacks=False)
        send({"type": "done", "exit_code": code})
    except KeyboardInterrupt as exc:
        record.stop("interrupted", getattr(exc, "reason", "interrupted by the user (Ctrl-C)"))
        _finish(record, on_row)
        raise
    _finish(record, on_row)


def _finish(record: CaseRecord, on_row) -> None:
    row = record.finish(None, "")
    if row is not None:
        on_row(record, row)
