"""The worker: runs one case of one plugin and reports everything as messages.

    python -m af3core.worker --channel W --control R --parent PID

The case arrives as one message on the control pipe (descriptor R), never on the command line,
so notes of any length and any characters travel safely. Everything the host learns goes out as
frames on the channel (descriptor W); stdout and stderr belong to the frameworks and go to the
case's log. :func:`execute` is the part that ``af3 bench --in-process`` runs in the host itself.

A worker never outlives its host: on Linux the kernel sends it SIGTERM when the host dies
(``PR_SET_PDEATHSIG``), and a lifeline thread watches the control pipe (end of file) and the
parent's PID on every system; either way the worker kills its whole process group, so helpers
it forked die with it.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

from af3core import memory, protocol, stopping
from af3core.runner import Case, CaseError, NonFiniteOutput, is_oom

#: The channel's file descriptor, set in main(). Exposed so fault-injection tests can misbehave on it.
CHANNEL_FD: int | None = None
#: Libraries whose versions every hello reports; a plugin adds its own (Plugin.libraries).
CORE_LIBRARIES = ("torch", "jax", "jaxlib", "triton", "numpy")
LIFELINE_POLL_S = 0.5

Send = Callable[[dict[str, Any]], None]


def library_versions(names) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for dist in dict.fromkeys(names):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _failure(phase: str, exc: BaseException) -> dict[str, Any]:
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
    return {"phase": phase, "error": text[:4000], "error_kind": kind, "traceback": tb[-8000:]}


def _load_runner(path: str):
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _as_result(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _time_of(extra: dict[str, Any], wall_ms: float) -> tuple[Any, str]:
    """The pass's time (a runner may report its own as ``elapsed_ms``) and why it is unusable."""
    if "elapsed_ms" not in extra:
        return wall_ms, ""
    value = extra.pop("elapsed_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        value = protocol._fallback(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value), ""
    return None, f"the runner reported elapsed_ms={value!r}, not a finite non-negative time"


def _count_or_none(value: Any) -> int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def _memory_message(runner, case: Case) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if runner is not None:
        try:
            figures = _as_result(runner.peak_memory())
        except Exception as exc:  # noqa: BLE001 - memory figures must not fail the case
            figures = {"framework_peak_error": f"{type(exc).__name__}: {exc}"}
    framework = figures.pop("framework", None)
    return {"type": "memory", "framework": framework if isinstance(framework, str) else None,
            "framework_peak_bytes": _count_or_none(figures.pop("framework_peak_bytes", None)),
            "worker_peak_rss_bytes": memory.peak_rss_bytes(), "extra": figures}


def execute(runner_path: str, case: Case, send: Send, log_tracebacks: bool = True) -> int:
    """Run ``case`` with the runner at ``runner_path``, reporting through ``send``. Returns the exit
    code (0: every pass ran). A KeyboardInterrupt is reported, then raised again."""

    def report(failure: dict[str, Any]) -> None:
        if log_tracebacks and failure["traceback"]:
            print(failure["traceback"], file=sys.stderr, flush=True)  # the case's log keeps it too

    send({"type": "phase", "phase": "importing", "pass_index": None})
    phase = "importing"
    runner = None
    try:
        runner = _load_runner(runner_path)(case)
        phase = "setup"
        send({"type": "phase", "phase": phase, "pass_index": None})
        t0 = time.perf_counter()
        info = _as_result(runner.setup())
        send({"type": "setup", "setup_ms": (time.perf_counter() - t0) * 1e3, "info": info})

        phase = "compile"
        send({"type": "phase", "phase": phase, "pass_index": None})
        t0 = time.perf_counter()
        compile_info = _as_result(runner.compile())
        compile_info.pop("elapsed_ms", None)
        send({"type": "compile", "compile_ms": (time.perf_counter() - t0) * 1e3, "compile_info": compile_info})
    except BaseException as exc:  # noqa: BLE001 - everything becomes a failed case, reported to the host
        failure = _failure(phase, exc)
        report(failure)
        send({"type": "error", **failure})
        send(_memory_message(runner, case))
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1

    failed = 0
    # Warm-up passes run after compile and before the timed ones; their rows say warmup=true and
    # the statistics leave them out (first executions can pay one-time costs compile() did not).
    # The timed passes go on as af3core.stopping says (a fixed count unless --min-time/--max-noise).
    timed_ms: list[float] = []
    spent_s = 0.0
    stopped_by = "passes"

    def schedule():
        nonlocal stopped_by
        yield from ((True, i) for i in range(case.warmup))
        index = 0
        while True:
            go_on, stopped_by = stopping.next_step(case, index, timed_ms, spent_s)
            if not go_on:
                return
            yield False, index
            index += 1

    for warmup, index in schedule():
        phase = "warmup" if warmup else "pass"
        send({"type": "phase", "phase": phase, "pass_index": index})
        start_ts = time.time()
        t0 = time.perf_counter()
        interrupted = None
        try:
            extra = _as_result(runner.step())
            wall_ms = (time.perf_counter() - t0) * 1e3
            elapsed_ms, problem = _time_of(extra, wall_ms)
            failure = {"error": problem, "error_kind": "nonfinite" if problem else "", "traceback": ""}
        except BaseException as exc:  # noqa: BLE001
            wall_ms = (time.perf_counter() - t0) * 1e3
            elapsed_ms, extra = None, {}
            failure = _failure(phase, exc)
            failure.pop("phase")
            report(failure)
            interrupted = exc if isinstance(exc, KeyboardInterrupt) else None
        ok = not failure["error"]
        failed += not ok
        send({"type": "pass", "pass_index": index, "warmup": warmup, "start_ts": start_ts,
              "elapsed_ms": elapsed_ms if ok else None, "wall_ms": wall_ms, "ok": ok, "extra": extra, **failure})
        if interrupted is not None:
            send({"type": "stopped", "stopped_by": "interrupted"})
            send(_memory_message(runner, case))
            raise interrupted
        if not warmup:
            spent_s += wall_ms / 1e3
            if ok:
                timed_ms.append(elapsed_ms)
        if failure["error_kind"] in ("oom", "user") or (not ok and stopping.adaptive(case)):
            stopped_by = "failure"
            break  # the next pass would fail the same way, or cannot make the case succeed
    send({"type": "stopped", "stopped_by": stopped_by})
    send(_memory_message(runner, case))
    try:
        if runner is not None:
            runner.teardown()
    except Exception:  # noqa: BLE001 - the measurements are in; a teardown problem changes nothing
        pass
    return 1 if failed else 0


# ---------------------------------------------------------------- the worker process

def _die(*_):
    """Kill this worker's whole process group (itself and every helper it started)."""
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the lifeline thread still watches


def _lifeline(control_fd: int, parent: int) -> None:
    """End of file on the control pipe, or a new parent, means the host is gone."""
    import select

    while True:
        try:
            ready, _, _ = select.select([control_fd], [], [], LIFELINE_POLL_S)
            if ready and not os.read(control_fd, 4096):
                _die()
        except OSError:
            _die()
        if os.getppid() != parent:
            _die()


def main(argv: list[str] | None = None) -> int:
    global CHANNEL_FD
    parser = argparse.ArgumentParser(prog="af3core.worker")
    parser.add_argument("--channel", type=int, required=True, help="descriptor the frames go out on")
    parser.add_argument("--control", type=int, required=True, help="descriptor the case comes in on")
    parser.add_argument("--parent", type=int, required=True, help="the host's PID")
    args = parser.parse_args(argv)
    # Before anything slow: a host that died before this line leaves a new parent behind.
    signal.signal(signal.SIGTERM, _die)
    _set_parent_death_signal()
    if os.getppid() != args.parent:
        _die()
    CHANNEL_FD = args.channel
    faulthandler.enable()  # a segfault's Python stack lands in the case's log, quoted in the failed row
    message = protocol.read_message(args.control)
    if message is None:
        _die()
    protocol.check(message)
    threading.Thread(target=_lifeline, args=(args.control, args.parent), daemon=True, name="af3-lifeline").start()
    case = Case.from_dict(message["case"])

    def send(msg: dict[str, Any]) -> None:
        protocol.write_frame(CHANNEL_FD, msg)

    send({"type": "hello", "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
          "python": sys.version.split()[0], "executable": sys.executable,
          "versions": library_versions([*CORE_LIBRARIES, *message["libraries"]])})
    code = execute(message["runner"], case, send)
    sys.stdout.flush()
    sys.stderr.flush()
    send({"type": "done", "exit_code": code})
    return code


if __name__ == "__main__":
    # Run through the importable module so runners see CHANNEL_FD via `from af3core import worker`.
    from af3core import worker as _worker

    sys.exit(_worker.main())
