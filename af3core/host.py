"""Runs one planned case in a fresh worker subprocess and turns everything it says (or fails to
say) into result rows. Faults never escape: a crash, hang, bad frame or OOM becomes a failed case."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from af3core import gpu, protocol
from af3core.plan import PlannedCase

#: How often the host samples the worker's GPU memory (NVML) and RSS (psutil).
SAMPLE_INTERVAL_S = 0.1
#: After the worker closes its channel, how long to wait for it to exit before killing it.
EXIT_GRACE_S = 10.0


@dataclass
class CaseResult:
    planned: PlannedCase
    status: str = "pending"  # ok | failed | oom | timeout | crashed | protocol | interrupted | user
    error: str = ""
    phase: str = "starting"  # importing | setup | compile | pass | done
    pass_index: int | None = None
    hello: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # what setup() returned
    compile_info: dict[str, Any] = field(default_factory=dict)  # what compile() returned
    setup_ms: float | None = None
    compile_ms: float | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)  # the rows written
    memory: dict[str, Any] = field(default_factory=dict)  # the worker's own figures
    nvml_peak_bytes: int | None = None  # host-sampled GPU memory of the worker's processes
    rss_peak_bytes: int | None = None  # host-sampled RSS of the worker's processes
    exit_code: int | None = None
    log_path: Path | None = None
    traceback: str = ""

    @property
    def ok_times(self) -> list[float]:
        """Elapsed times of the successful timed passes (warm-up passes excluded)."""
        return [p["elapsed_ms"] for p in self.passes
                if p.get("ok") and not p.get("warmup") and p.get("elapsed_ms") is not None]

    @property
    def failed(self) -> bool:
        return self.status != "ok"


class _MemorySampler:
    def __init__(self, result: CaseResult, pid: int):
        self.result = result
        try:
            self.proc = psutil.Process(pid)
        except psutil.Error:
            self.proc = None
        self.next_at = 0.0

    def sample(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.proc is None or (not force and now < self.next_at):
            return
        self.next_at = now + SAMPLE_INTERVAL_S
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in procs)
        except psutil.Error:
            return
        r = self.result
        r.rss_peak_bytes = max(r.rss_peak_bytes or 0, rss)
        used = gpu.process_memory_bytes(p.pid for p in procs)
        if used is not None:
            r.nvml_peak_bytes = max(r.nvml_peak_bytes or 0, used)


def _reader(stream, out: "queue.Queue[tuple[str, Any]]") -> None:
    try:
        while True:
            message = protocol.read_frame(stream)
            if message is None:
                out.put(("eof", None))
                return
            out.put(("message", message))
    except protocol.ProtocolError as exc:
        out.put(("protocol_error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - the reader must always report back
        out.put(("protocol_error", f"{type(exc).__name__}: {exc}"))


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the worker and anything it started (it leads its own session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)
    except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def _log_tail(path: Path, lines: int = 5) -> str:
    """The log's last lines, led by the fatal-error line of a crash dump when there is one."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    tail = text[-lines:]
    fatal = [line for line in text if line.startswith("Fatal Python error")]
    if fatal and fatal[-1] not in tail:
        tail = [fatal[-1], "...", *tail]
    return " | ".join(tail)[-2000:]


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def worker_command(planned: PlannedCase, fd: int) -> list[str]:
    plugin = planned.plugin
    python = (os.environ.get(f"AF3_PYTHON_{plugin.name.upper()}") or plugin.python or sys.executable)
    return [python, "-m", "af3core.worker", "--fd", str(fd), "--runner", plugin.runner,
            "--case", json.dumps(planned.case.to_dict())]


def run_case(planned: PlannedCase, log_dir: Path, timeout_s: float | None,
             on_row: Callable[[CaseResult, dict[str, Any]], None],
             on_update: Callable[[CaseResult], None]) -> CaseResult:
    """Run one case. ``on_row`` receives each pass (success or failure) as it arrives; ``on_update``
    any change of phase or memory. Ctrl-C stops the worker and returns with status "interrupted"."""
    result = CaseResult(planned)
    log_dir.mkdir(parents=True, exist_ok=True)
    result.log_path = log_dir / f"{planned.case_id}.log"
    read_fd, write_fd = os.pipe()
    env = dict(planned.env)
    if planned.plugin.python or os.environ.get(f"AF3_PYTHON_{planned.plugin.name.upper()}"):
        # A foreign interpreter must still find af3core.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with open(result.log_path, "wb") as log:
        try:
            proc = subprocess.Popen(worker_command(planned, write_fd), pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            result.status, result.error = "crashed", f"could not start worker: {exc}"
            _fail_row(result, on_row)
            return result
    os.close(write_fd)
    messages: queue.Queue[tuple[str, Any]] = queue.Queue()
    stream = os.fdopen(read_fd, "rb", buffering=0)
    threading.Thread(target=_reader, args=(stream, messages), daemon=True).start()
    sampler = _MemorySampler(result, proc.pid)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    error: dict[str, Any] | None = None
    try:
        while True:
            # Checked on every message too: a worker that streams frames without end still times out.
            if deadline is not None and time.monotonic() > deadline:
                _kill_group(proc)
                result.status = "timeout"
                result.error = f"timed out after {timeout_s:g} s in phase {result.phase}"
                break
            try:
                kind, payload = messages.get(timeout=SAMPLE_INTERVAL_S)
            except queue.Empty:
                sampler.sample()
                on_update(result)
                continue
            if kind == "message":
                sampler.sample()  # at most every SAMPLE_INTERVAL_S: a psutil/NVML sweep costs tens of us
                error = _handle(result, payload, on_row, error)
                on_update(result)
                if error is not None and error.get("error_kind") == "protocol":
                    _kill_group(proc)  # a worker speaking another protocol version cannot be read further
                    result.status, result.error = "protocol", error["error"]
                    break
                continue
            if kind == "protocol_error":
                _kill_group(proc)
                result.status, result.error = "protocol", f"bad frame from worker: {payload}"
                break
            # eof: the worker closed its channel; it should be exiting
            try:
                proc.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
            break
    except KeyboardInterrupt:
        _kill_group(proc)
        result.status, result.error = "interrupted", "interrupted by the user"
    finally:
        stream.close()
    _finish(result, proc, error, on_row)
    return result


def _handle(result: CaseResult, message: dict[str, Any], on_row, error):
    kind = message["type"]
    if kind == "hello":
        if message.get("protocol") != protocol.PROTOCOL_VERSION:
            text = f"worker speaks protocol {message.get('protocol')}, host {protocol.PROTOCOL_VERSION}"
            return {"error": text, "error_kind": "protocol", "phase": "hello"}
        result.hello = message
    elif kind == "phase":
        result.phase = message.get("phase", result.phase)
        result.pass_index = message.get("pass_index")
    elif kind == "setup":
        result.setup_ms = message.get("setup_ms")
        result.info = message.get("info") or {}
    elif kind == "compile":
        result.compile_ms = message.get("compile_ms")
        result.compile_info = message.get("extra") or {}
    elif kind == "pass":
        row = {k: message.get(k) for k in ("pass_index", "start_ts", "elapsed_ms", "wall_ms", "ok", "error",
                                           "error_kind")}
        row["warmup"] = bool(message.get("warmup"))
        row["extra"] = message.get("extra") or {}
        result.passes.append(row)
        on_row(result, row)
        if not row["ok"]:
            error = {"error": row["error"], "error_kind": row["error_kind"], "phase": "pass"}
    elif kind == "memory":
        result.memory = {k: v for k, v in message.items() if k != "type"}
    elif kind == "error":
        error = message
    elif kind == "done":
        result.phase = "done"
    return error


def _finish(result: CaseResult, proc: subprocess.Popen, error, on_row) -> None:
    result.exit_code = proc.poll()
    if result.status in ("pending",):
        expected = result.planned.case.passes
        if error is not None and error.get("error_kind") == "oom":
            result.status = "oom"
        elif error is not None and error.get("error_kind") == "user":
            result.status = "user"
        elif error is not None:
            result.status = "failed"
        elif result.exit_code not in (0, None) and result.phase != "done":
            result.status = "crashed"
        elif result.phase != "done" or sum(not p["warmup"] for p in result.passes) < expected:
            result.status = "crashed"
        elif any(not p["ok"] for p in result.passes):
            result.status = "failed"
        else:
            result.status = "ok"
        if result.status == "crashed":
            reason = _exit_reason(result.exit_code) if result.exit_code is not None else "stopped answering"
            tail = _log_tail(result.log_path) if result.log_path else ""
            result.error = f"worker {reason} in phase {result.phase}" + (f"; log: {tail}" if tail else "")
        elif error is not None and not result.error:
            result.error = error.get("error", "")
            result.traceback = error.get("traceback") or ""
    # A case that failed outside a pass (import, setup, compile, crash, timeout) still leaves a row.
    if result.status != "ok" and not any(not p["ok"] for p in result.passes):
        _fail_row(result, on_row, phase=(error or {}).get("phase") or result.phase)


def _fail_row(result: CaseResult, on_row, phase: str = "starting") -> None:
    row = {"pass_index": result.pass_index if phase in ("pass", "warmup") else None, "warmup": phase == "warmup",
           "start_ts": time.time(),
           "elapsed_ms": None, "wall_ms": None, "ok": False, "error": result.error, "error_kind": result.status,
           "extra": {"failed_phase": phase}}
    result.passes.append(row)
    on_row(result, row)
