"""Supervising one worker subprocess: start it, feed it its case, turn everything it says (or fails
to say) into the case's record, and leave nothing of it behind.

One thread, one ``select`` loop over three pipes: the frame channel (worker -> host), the control
pipe (host -> worker: the case, then the lifeline) and the worker's stdout/stderr (relayed to the
case log, capped). The case is over when the worker has sent ``done`` and exited, or a short
grace after ``done``, or at the timeout, a bad frame, a closed channel or a stop request. At the
end the worker's whole process group is killed, also when the worker itself has already exited,
so forked helpers and grandchildren holding a pipe never outlive their case.
"""
from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from af3core import envs, gpustate, memory, protocol
from af3core.errors import ResultsWriteError
from af3core.record import CaseRecord

#: After ``done``, how long a worker may take to exit before it is killed (its results stand).
DONE_GRACE_S = 3.0
#: After the worker exits, how long to collect frames still in the pipe.
DRAIN_S = 2.0
#: A worker that closed its channel but runs on is stopped after this long.
CLOSED_CHANNEL_GRACE_S = 5.0
#: A case log keeps its first AF3_LOG_MAX_BYTES (default 64 MiB) and its last TAIL_BYTES.
LOG_MAX_BYTES = 64 * 2**20
TAIL_BYTES = 256 * 2**10
READ_BYTES = 1 << 16


class CaseLog:
    """The worker's stdout and stderr as they arrive: written to the case log up to a cap; the end
    is also kept in memory, for the reason of a crash and for the end of a capped log."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        try:
            self.file = open(path, "wb")
        except OSError as exc:
            raise ResultsWriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.written = 0
        self.dropped = 0
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0

    def write(self, data: bytes) -> None:
        room = self.max_bytes - self.written
        if room > 0:
            try:
                self.file.write(data[:room])
            except OSError as exc:
                raise ResultsWriteError(f"cannot write {self.path}: {exc.strerror or exc}") from None
            self.written += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))
        self.tail.append(data)
        self.tail_bytes += len(data)
        while self.tail_bytes - len(self.tail[0]) >= TAIL_BYTES:
            self.tail_bytes -= len(self.tail.popleft())

    def close(self) -> None:
        if self.dropped:
            end = b"".join(self.tail)[-TAIL_BYTES:]
            self.file.write(f"\n[af3: log capped at {self.max_bytes} bytes; {self.dropped} bytes dropped; "
                            f"its last {len(end)} bytes follow]\n".encode())
            self.file.write(end)
        self.file.close()

    def last_lines(self, n: int = 5) -> str:
        """The last lines, led by the fatal-error line of a crash dump when there is one."""
        lines = b"".join(self.tail).decode("utf-8", "replace").strip().splitlines()
        tail = lines[-n:]
        fatal = [line for line in lines if line.startswith("Fatal Python error")]
        if fatal and fatal[-1] not in tail:
            tail = [fatal[-1], "...", *tail]
        return " | ".join(tail)[-2000:]


def _log_cap() -> int:
    try:
        return max(4096, int(os.environ.get("AF3_LOG_MAX_BYTES", LOG_MAX_BYTES)))
    except ValueError:
        return LOG_MAX_BYTES


def kill_group(pgid: int) -> None:
    """SIGKILL to the worker's process group: the worker and everything it started."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_reason(code: int | None) -> str | None:
    if code is None:
        return None
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def worker_launch(record: CaseRecord, channel_fd: int, control_fd: int) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and environment, under the plugin's interpreter (af3core.envs)."""
    python, source = envs.interpreter(record.planned.plugin)
    env = dict(record.planned.env)
    if source != envs.HOST:
        env = envs.foreign_env(env)  # another interpreter must still find af3core
    return ([python, "-m", "af3core.worker", "--channel", str(channel_fd), "--control", str(control_fd),
             "--parent", str(os.getpid())], env)


def run_case(record: CaseRecord, log_path: Path, timeout_s: float | None,
             on_row: Callable[[CaseRecord, dict[str, Any]], None],
             on_update: Callable[[CaseRecord], None],
             stop_requested: Callable[[], str | None]) -> None:
    """Run one case in a worker; ``on_row`` gets each row as it is made, ``on_update`` each change
    of phase or memory. ``stop_requested`` returns a reason when the run must stop (a signal)."""
    planned = record.planned
    record.log_path = log_path
    log = CaseLog(log_path, _log_cap())
    channel_r, channel_w = os.pipe()
    control_r, control_w = os.pipe()
    output_r, output_w = os.pipe()
    try:
        command, env = worker_launch(record, channel_w, control_r)
        proc = subprocess.Popen(command, pass_fds=(channel_w, control_r),
                                stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w,
                                env=env, start_new_session=True)
    except OSError as exc:
        for fd in (channel_r, channel_w, control_r, control_w, output_r, output_w):
            os.close(fd)
        log.close()
        record.stop("crashed", f"could not start worker: {exc}")
        row = record.finish(None, "")
        if row is not None:
            on_row(record, row)
        return
    for fd in (channel_w, control_r, output_w):
        os.close(fd)
    case_frame = protocol.encode({"type": "case", "runner": planned.plugin.runner, "case": planned.case.to_dict(),
                                  "libraries": list(planned.plugin.libraries)})
    write_error = None
    try:
        _supervise(record, proc, channel_r, control_w, output_r, case_frame, log, timeout_s, on_row, on_update,
                   stop_requested)
    except ResultsWriteError as exc:  # the rows cannot go anywhere: stop this case, then the run
        record.stop("failed", str(exc))
        write_error = exc
    finally:
        kill_group(proc.pid)  # also when the worker already exited: its helpers may not have
        for fd in (channel_r, control_w):
            try:
                os.close(fd)
            except OSError:
                pass
        _drain_output(output_r, log)
        try:
            log.close()
        except OSError:
            pass
        record.log_dropped_bytes = log.dropped
        record.exit_code = proc.wait()
    row = record.finish(exit_reason(record.exit_code), log.last_lines())
    if write_error is not None:
        raise write_error
    if row is not None:
        on_row(record, row)


def _drain_output(fd: int, log: CaseLog) -> None:
    """What the (now dead) process group left in its output pipe, without blocking."""
    os.set_blocking(fd, False)
    try:
        while True:
            data = os.read(fd, READ_BYTES)
            if not data:
                break
            log.write(data)
    except OSError:
        pass
    finally:
        os.close(fd)


def _supervise(record, proc, channel_r, control_w, output_r, case_frame, log, timeout_s, on_row, on_update,
               stop_requested) -> None:
    sampler = memory.ProcessSampler(proc.pid)
    gpu = gpustate.GpuSampler(record.planned.gpu.get("gpu_index"), memory.SAMPLE_INTERVAL_S)
    record.gpu_state = gpu.state
    decoder = protocol.FrameDecoder()
    selector = selectors.DefaultSelector()
    selector.register(channel_r, selectors.EVENT_READ, "channel")
    selector.register(output_r, selectors.EVENT_READ, "output")
    os.set_blocking(control_w, False)
    pending = memoryview(case_frame)
    selector.register(control_w, selectors.EVENT_WRITE, "control")
    started = time.monotonic()
    deadline = started + timeout_s if timeout_s else None
    done_at = exited_at = closed_at = None
    channel_open = True
    seen_hello = False
    try:
        while True:
            now = time.monotonic()
            reason = stop_requested()
            if reason:
                record.stop("interrupted", reason)
                return
            if deadline is not None and now > deadline:
                record.stop("timeout", f"timed out after {timeout_s:g} s in phase {record.phase}")
                return
            if exited_at is None and proc.poll() is not None:
                exited_at = now
                kill_group(proc.pid)  # helpers holding the channel would keep it open
            if record.done and exited_at is not None:
                return
            if done_at is not None and now - done_at > DONE_GRACE_S:
                record.exit_note = f"still running {DONE_GRACE_S:g} s after it sent done: killed"
                return
            if exited_at is not None and (not channel_open or now - exited_at > DRAIN_S):
                return  # exited without done: crashed (record.finish says how)
            if not channel_open and exited_at is None and not record.done:
                closed_at = closed_at or now
                if now - closed_at > CLOSED_CHANNEL_GRACE_S:
                    record.stop("protocol", f"the worker closed its result channel in phase {record.phase} and "
                                            "kept running: killed")
                    return
            for key, _ in selector.select(timeout=memory.SAMPLE_INTERVAL_S):
                if key.data == "control":
                    try:
                        pending = pending[os.write(control_w, pending):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the worker is gone before reading its case
                        pending = pending[len(pending):]
                    if not pending:
                        selector.unregister(control_w)  # kept open: it is the worker's lifeline
                elif key.data == "output":
                    data = os.read(output_r, READ_BYTES)
                    if data:
                        log.write(data)
                    else:
                        selector.unregister(output_r)
                else:
                    data = os.read(channel_r, READ_BYTES)
                    if not data:
                        channel_open = False
                        selector.unregister(channel_r)
                        if decoder.partial:
                            raise protocol.ProtocolError(f"the channel ended inside a frame "
                                                         f"({decoder.partial} bytes)")
                        continue
                    for message in decoder.feed(data):
                        protocol.check(message)
                        if not seen_hello:
                            if message["type"] != "hello":
                                raise protocol.ProtocolError(f"first message is {message['type']!r}, not hello")
                            if message["protocol"] != protocol.PROTOCOL_VERSION:
                                raise protocol.ProtocolError(f"worker speaks protocol {message['protocol']}, "
                                                             f"host {protocol.PROTOCOL_VERSION}")
                            seen_hello = True
                        for row in record.apply(message):
                            on_row(record, row)
                        if message["type"] == "done":
                            done_at = time.monotonic()
            if sampler.sample():
                record.nvml_peak_gpu_bytes = sampler.nvml_peak_gpu_bytes
                record.sampled_peak_rss_bytes = sampler.sampled_peak_rss_bytes
            if record.phase == "pass":
                gpu.sample()
            on_update(record)
    except protocol.ProtocolError as exc:
        record.stop("protocol", f"bad frame from worker: {exc}")
    except OSError as exc:
        if exc.errno not in (errno.EBADF, errno.EPIPE):
            raise
        record.stop("crashed", f"lost the worker's pipes: {exc}")
    finally:
        selector.close()
