"""The worker subprocess: runs one case of one plugin and streams results to the host.

    python -m af3core.worker --fd N --runner pkg.module:Class --case JSON

Everything the host learns arrives as frames on file descriptor N; stdout and stderr belong to the
frameworks and go to the case's log file.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

from af3core import protocol
from af3core.runner import Case, CaseError, NonFiniteOutput, is_oom

#: The channel's file descriptor, set in main(). Exposed so fault-injection tests can misbehave on it.
CHANNEL_FD: int | None = None


def _send(message: dict[str, Any]) -> None:
    protocol.write_frame(CHANNEL_FD, message)


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in ("torch", "jax", "jaxlib", "triton", "numpy", "dm-haiku", "tokamax"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _vmhwm_bytes() -> int | None:
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
    except Exception:
        return None


def _error_message(phase: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CaseError):
        kind, tb = "user", ""
    elif is_oom(exc):
        kind, tb = "oom", traceback.format_exc(limit=8)
    elif isinstance(exc, NonFiniteOutput):
        kind, tb = "nonfinite", ""
    else:
        kind, tb = "exception", traceback.format_exc(limit=20)
    text = f"{type(exc).__name__}: {exc}" if kind != "user" else str(exc)
    # Device errors can be enormous (XLA dumps whole allocator states); keep the frame bounded.
    return {"error": text[:4000], "error_kind": kind, "traceback": tb[-8000:], "phase": phase}


def _load_runner(path: str):
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _as_result(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def run_case(runner_path: str, case: Case) -> int:
    _send({"type": "phase", "phase": "importing"})
    phase = "importing"
    runner = None
    try:
        runner = _load_runner(runner_path)(case)
        phase = "setup"
        _send({"type": "phase", "phase": phase})
        t0 = time.perf_counter()
        info = _as_result(runner.setup())
        _send({"type": "setup", "setup_ms": (time.perf_counter() - t0) * 1e3, "info": info})

        phase = "compile"
        _send({"type": "phase", "phase": phase})
        t0 = time.perf_counter()
        extra = _as_result(runner.compile())
        _send({"type": "compile", "compile_ms": (time.perf_counter() - t0) * 1e3, "extra": extra})
    except BaseException as exc:  # noqa: BLE001 - everything becomes a failed case, reported to the host
        _send({"type": "error", **_error_message(phase, exc)})
        _send_memory(runner, case)
        return 1

    phase = "pass"
    failed = 0
    # Warm-up passes run after compile and before the timed ones; their rows say warmup=true and
    # the statistics leave them out (first executions can pay one-time costs compile() did not).
    schedule = [(True, i) for i in range(case.warmup)] + [(False, i) for i in range(case.passes)]
    for warmup, index in schedule:
        _send({"type": "phase", "phase": "warmup" if warmup else "pass", "pass_index": index})
        start_ts = time.time()
        t0 = time.perf_counter()
        try:
            extra = _as_result(runner.step())
            wall_ms = (time.perf_counter() - t0) * 1e3
        except BaseException as exc:  # noqa: BLE001
            wall_ms = (time.perf_counter() - t0) * 1e3
            failed += 1
            err = _error_message(phase, exc)
            _send({"type": "pass", "pass_index": index, "warmup": warmup, "start_ts": start_ts,
                   "elapsed_ms": None, "wall_ms": wall_ms, "ok": False, "extra": {}, **err})
            if err["error_kind"] in ("oom", "user") or isinstance(exc, KeyboardInterrupt):
                break  # the next pass would fail the same way
            continue
        elapsed_ms = extra.pop("elapsed_ms", wall_ms)
        _send({"type": "pass", "pass_index": index, "warmup": warmup, "start_ts": start_ts, "elapsed_ms": elapsed_ms,
               "wall_ms": wall_ms, "ok": True, "error": "", "error_kind": "", "extra": extra})
    _send_memory(runner, case)
    try:
        if runner is not None:
            runner.teardown()
    except Exception:
        pass
    return 1 if failed else 0


def _send_memory(runner, case: Case) -> None:
    memory: dict[str, Any] = {}
    if runner is not None:
        try:
            memory = _as_result(runner.peak_memory())
        except Exception as exc:  # noqa: BLE001 - memory figures must not fail the case
            memory = {"framework_peak_error": str(exc)}
    _send({"type": "memory", **memory, "worker_vmhwm_bytes": _vmhwm_bytes()})


def main(argv: list[str] | None = None) -> int:
    global CHANNEL_FD
    parser = argparse.ArgumentParser(prog="af3core.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--runner", required=True)
    parser.add_argument("--case", required=True, help="the case as JSON")
    args = parser.parse_args(argv)
    CHANNEL_FD = args.fd
    faulthandler.enable()  # a segfault's Python stack lands in the case's log, quoted in the failed row
    case = Case.from_dict(json.loads(args.case))
    _send({"type": "hello", "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
           "python": sys.version.split()[0], "executable": sys.executable, "versions": _library_versions()})
    code = run_case(args.runner, case)
    _send({"type": "done", "exit_code": code})
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    # Run through the importable module so runners see CHANNEL_FD via `from af3core import worker`.
    from af3core import worker as _worker

    sys.exit(_worker.main())
