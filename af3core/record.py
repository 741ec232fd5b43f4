"""The record of one case, and the rows made from it: one JSONL row per pass, one summary row per case.

A :class:`CaseRecord` takes the worker's checked messages (:meth:`CaseRecord.apply`) and the
host's own observations (memory samples, exit, timeout), and is the only place a figure gets its
name: the name a figure has here is its JSONL field and its summary.csv column.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from af3core import gpustate, stats
from af3core.plan import PlannedCase
from af3core.provenance import recorded_env

#: Statuses of a finished case; "pending" while it runs.
STATUSES = ("ok", "failed", "oom", "timeout", "crashed", "protocol", "interrupted", "user")

# Leading columns of summary.csv, in order; the numeric figures a runner reports follow.
SUMMARY_COLUMNS = [
    "run_id", "case_id", "plugin", "plugin_kind", "mode", "preset", "seq_len", "device", "settings", "kernels", "status",
    "n_ok", "n_failed", "n_warmup", *stats.TIME_COLUMNS, "stopped_by", "compile_ms", "setup_ms",
    "nvml_peak_gpu_bytes", "framework", "framework_peak_bytes", "worker_peak_rss_bytes", "sampled_peak_rss_bytes",
    "error", "notes", "plugin_version", "engine_source_version", "host", "gpu_name", "gpu_index", "gpu_uuid",
    "driver", "python", "torch_version", "jax_version", "triton_version", "af3bench_version", "af3bench_commit",
    "cpu_model", "cpu_count", "load_avg_1m_at_start", *gpustate.COLUMNS, "exit_note", "env",
]


def _load_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every system
        return None


@dataclass(frozen=True)
class RunContext:
    """What every row of a run shares."""

    run_id: str
    host: dict[str, Any]
    source_versions: dict[str, str | None]


@dataclass
class CaseRecord:
    planned: PlannedCase
    context: RunContext
    status: str = "pending"
    error: str = ""
    traceback: str = ""
    phase: str = "starting"  # importing | setup | compile | warmup | pass | done
    pass_index: int | None = None
    worker: dict[str, Any] = field(default_factory=dict)  # the hello: pid, python, executable, versions
    info: dict[str, Any] = field(default_factory=dict)  # what setup() returned
    compile_info: dict[str, Any] = field(default_factory=dict)  # what compile() returned
    setup_ms: float | None = None
    compile_ms: float | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)  # every row written, in order
    framework: str | None = None
    framework_peak_bytes: int | None = None
    worker_peak_rss_bytes: int | None = None
    memory_extra: dict[str, Any] = field(default_factory=dict)  # other figures of runner.peak_memory()
    nvml_peak_gpu_bytes: int | None = None
    sampled_peak_rss_bytes: int | None = None
    gpu_state: gpustate.GpuState = field(default_factory=gpustate.GpuState)  # sampled during the timed passes
    stopped_by: str | None = None  # why the timed passes stopped (af3core.stopping), as the worker said
    failure: dict[str, Any] | None = None  # the worker's first error: phase, error, error_kind, traceback
    done: bool = False
    exit_code: int | None = None
    exit_note: str = ""  # how the worker ended when that is worth a word (killed after done...)
    log_path: Path | None = None
    log_dropped_bytes: int = 0
    # the host's 1-minute load average when the case was planned to start: a loaded CPU changes CPU
    # timings several-fold, and nothing else in a row would say so
    load_avg_1m_at_start: float | None = field(default_factory=lambda: _load_1m())
    _shared: dict[str, Any] | None = field(default=None, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    # -- what the worker says

    def apply(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one checked message; returns the pass rows it produced (to be written)."""
        kind = message["type"]
        if kind == "hello":
            self.worker = {k: message[k] for k in ("pid", "python", "executable", "versions")}
        elif kind == "phase":
            self.phase, self.pass_index = message["phase"], message["pass_index"]
        elif kind == "setup":
            self.setup_ms, self.info = message["setup_ms"], message["info"]
        elif kind == "compile":
            self.compile_ms, self.compile_info = message["compile_ms"], message["compile_info"]
        elif kind == "pass":
            return [self._add_pass(message)]
        elif kind == "memory":
            self.framework = message["framework"]
            self.framework_peak_bytes = message["framework_peak_bytes"]
            self.worker_peak_rss_bytes = message["worker_peak_rss_bytes"]
            self.memory_extra = message["extra"]
        elif kind == "error":
            self.failure = self.failure or {k: message[k] for k in ("phase", "error", "error_kind", "traceback")}
        elif kind == "stopped":
            self.stopped_by = message["stopped_by"]
        elif kind == "done":
            self.done, self.phase = True, "done"
        return []

    def _add_pass(self, message: dict[str, Any]) -> dict[str, Any]:
        ok, elapsed = message["ok"], message["elapsed_ms"]
        error, kind = message["error"], message["error_kind"]
        if ok and (elapsed is None or not math.isfinite(elapsed) or elapsed < 0):
            ok, error, kind = False, f"the worker reported elapsed_ms={elapsed!r}, not a finite non-negative time", \
                "nonfinite"
        if not ok:
            elapsed = None
            self.failure = self.failure or {"phase": "warmup" if message["warmup"] else "pass", "error": error,
                                            "error_kind": kind, "traceback": message["traceback"]}
        row = self._row(message["pass_index"], message["warmup"], message["start_ts"], elapsed, message["wall_ms"],
                        ok, error, kind, message["traceback"], message["extra"])
        self.passes.append(row)
        return row

    # -- how it ended

    def stop(self, status: str, error: str) -> None:
        """The host ended the case (timeout, protocol violation, interruption)."""
        if self.status == "pending":
            self.status, self.error = status, error

    def finish(self, exit_reason: str | None, log_tail: str) -> dict[str, Any] | None:
        """Settle the status once the worker is gone; returns the failure row to write, if the
        failure left none (a case that failed outside a pass still leaves one row)."""
        failure = self.failure or {}
        timed = sum(1 for p in self.passes if p["ok"] and not p["warmup"])
        if self.status == "pending":
            kind = failure.get("error_kind")
            if kind in ("oom", "user"):
                self.status = kind
            elif failure:
                self.status = "failed"
            elif not self.done or timed < self.planned.case.passes:
                self.status = "crashed"
                reason = exit_reason or "stopped answering"
                self.error = f"worker {reason} in phase {self.phase}" + (f"; log: {log_tail}" if log_tail else "")
            else:
                self.status = "ok"
            if failure and not self.error:
                self.error, self.traceback = failure["error"], failure["traceback"]
        if self.status != "ok" and not any(not p["ok"] for p in self.passes):
            phase = failure.get("phase") or self.phase
            row = self._row(self.pass_index if phase in ("pass", "warmup") else None, phase == "warmup",
                            time.time(), None, None, False, self.error, self.status, self.traceback,
                            {"failed_phase": phase})
            self.passes.append(row)
            return row
        return None

    @property
    def ok_times(self) -> list[float]:
        """Elapsed times of the successful timed passes (warm-ups left out)."""
        return [p["elapsed_ms"] for p in self.passes if p["ok"] and not p["warmup"]]

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    # -- rows

    def _case_fields(self) -> dict[str, Any]:
        """The fields every row of this case shares, built once (a pass row is built per pass)."""
        if self._shared is None:
            planned, case = self.planned, self.planned.case
            self._shared = {
                "run_id": self.context.run_id,
                "case_id": planned.case_id,
                "plugin": case.plugin,
                "plugin_kind": planned.plugin.kind,
                "plugin_version": planned.plugin.version,
                "mode": case.mode,
                "preset": case.preset,
                "seq_len": case.seq_len,
                "device": case.device,
                **planned.gpu,
                "settings": case.settings,
                "notes": case.notes,
            }
            self._env = recorded_env(planned.env)
        return self._shared

    def _row(self, pass_index, warmup, start_ts, elapsed_ms, wall_ms, ok, error, error_kind, traceback,
             extra) -> dict[str, Any]:
        row = {
            **self._case_fields(),
            "pass_index": pass_index,
            "warmup": warmup,
            "start_ts": start_ts,
            "elapsed_ms": elapsed_ms,
            "wall_ms": wall_ms,
            "compile_ms": self.compile_ms,
            "setup_ms": self.setup_ms,
            "ok": ok,
            "error": error or "",
            "error_kind": error_kind or "",
            "engine_source_version": self.engine_source_version,
            "nvml_peak_gpu_bytes": self.nvml_peak_gpu_bytes,
            "sampled_peak_rss_bytes": self.sampled_peak_rss_bytes,
            "worker_pid": self.worker.get("pid"),
            "worker_python": self.worker.get("executable"),
            "worker_versions": self.worker.get("versions"),
            "env": self._env,
            "info": self.info,
            "compile_info": self.compile_info,
        }
        if traceback:
            row["traceback"] = traceback
        for key, value in extra.items():
            row.setdefault(key, value)  # a runner's figures never overwrite the harness's own fields
        return row

    @property
    def engine_source_version(self) -> str | None:
        return self.info.get("engine_source_version") or self.context.source_versions.get(self.planned.case.plugin)

    def summary_row(self) -> dict[str, Any]:
        planned, case, host = self.planned, self.planned.case, self.context.host
        row = {
            "run_id": self.context.run_id,
            "case_id": planned.case_id,
            "plugin": case.plugin,
            "plugin_kind": planned.plugin.kind,
            "mode": case.mode,
            "preset": case.preset,
            "seq_len": case.seq_len,
            "device": case.device,
            "settings": json.dumps(case.settings, sort_keys=True, default=str),
            # what a setting such as "auto" resolved to in the worker: the settings say what was asked
            "kernels": str(self.info.get("kernels") or ""),
            "status": self.status,
            "n_ok": len(self.ok_times),
            "n_failed": sum(1 for p in self.passes if not p["ok"]),
            "n_warmup": sum(1 for p in self.passes if p["warmup"]),
            **stats.time_summary(self.ok_times),
            "stopped_by": self.stopped_by,
            "compile_ms": self.compile_ms,
            "setup_ms": self.setup_ms,
            "nvml_peak_gpu_bytes": self.nvml_peak_gpu_bytes,
            "framework": self.framework,
            "framework_peak_bytes": self.framework_peak_bytes,
            "worker_peak_rss_bytes": self.worker_peak_rss_bytes,
            "sampled_peak_rss_bytes": self.sampled_peak_rss_bytes,
            "error": self.error,
            "notes": case.notes,
            "plugin_version": planned.plugin.version,
            "engine_source_version": self.engine_source_version,
            **{k: host.get(k) for k in ("host", "driver", "python", "torch_version", "jax_version",
                                        "triton_version", "af3bench_version", "af3bench_commit",
                                        "cpu_model", "cpu_count")},
            "load_avg_1m_at_start": self.load_avg_1m_at_start,
            **self.gpu_state.columns(),
            **planned.gpu,
            "exit_note": self.exit_note,
            "env": json.dumps(recorded_env(planned.env), sort_keys=True),
        }
        if self.log_dropped_bytes:
            row["log_dropped_bytes"] = self.log_dropped_bytes
        row.update(self._runner_figures(row))
        return row

    def _runner_figures(self, taken: dict[str, Any]) -> dict[str, float]:
        """Numeric figures a runner reported: the median of each figure it added to its timed
        passes (floor_ms, fraction_of_floor...), then what compile() returned."""
        values: dict[str, list] = {}
        for p in self.passes:
            if p["ok"] and not p["warmup"]:
                for key in p.keys() - _PASS_FIELDS:
                    values.setdefault(key, []).append(p[key])
        figures = {}
        for key, vs in values.items():
            numbers = stats.finite(vs)
            if key not in taken and len(numbers) == len(vs):
                figures[key] = stats.median(numbers)
        for key, value in self.compile_info.items():
            if key not in taken and key not in figures and stats.finite([value]):
                figures[key] = value
        return figures


#: Fields of a pass row that the harness itself fills (the rest came from the runner).
_PASS_FIELDS = frozenset({
    "run_id", "case_id", "plugin", "plugin_kind", "plugin_version", "mode", "preset", "seq_len", "device",
    "gpu_name", "gpu_index", "gpu_uuid", "settings", "notes", "pass_index", "warmup", "start_ts", "elapsed_ms",
    "wall_ms", "compile_ms", "setup_ms", "ok", "error", "error_kind", "engine_source_version",
    "nvml_peak_gpu_bytes", "sampled_peak_rss_bytes", "worker_pid", "worker_python", "worker_versions", "env",
    "info", "compile_info", "traceback",
})
