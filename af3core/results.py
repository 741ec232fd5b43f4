"""Result files: ``<plugin>.jsonl`` (one row per pass, flushed as it arrives), ``summary.csv`` (one
row per case) and ``meta.json`` (the environment and the command line)."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any, IO

from af3core.environment import recorded_env
from af3core.host import CaseResult

SUMMARY_FILE = "summary.csv"
META_FILE = "meta.json"

# Leading columns of summary.csv, in order; extra numeric figures a runner reports follow.
SUMMARY_COLUMNS = [
    "run_id", "case_id", "plugin", "plugin_kind", "mode", "preset", "seq_len", "device", "settings", "status",
    "n_ok", "n_failed", "n_warmup", "min_ms", "median_ms", "p95_ms", "mean_ms", "stdev_ms", "compile_ms", "setup_ms",
    "nvml_peak_gpu_bytes", "framework", "framework_peak_bytes", "worker_peak_rss_bytes", "sampled_peak_rss_bytes",
    "error", "notes", "plugin_version", "engine_source_version", "host", "gpu_name", "driver", "python",
    "torch_version", "jax_version", "triton_version", "af3bench_version", "af3bench_commit", "env",
]


def _json_default(value: Any) -> Any:
    return str(value)


class ResultWriter:
    """Appends pass rows to ``<plugin>.jsonl`` and flushes each at once, so a crash loses nothing."""

    def __init__(self, out_dir: Path, run_id: str, host: dict[str, Any], source_versions: dict[str, str | None]):
        self.out_dir = out_dir
        self.run_id = run_id
        self.host = host
        self.source_versions = source_versions
        self._files: dict[str, IO[str]] = {}

    def pass_row(self, result: CaseResult, row: dict[str, Any]) -> dict[str, Any]:
        planned = result.planned
        case = planned.case
        info = result.info
        full = {
            "run_id": self.run_id,
            "case_id": planned.case_id,
            "plugin": case.plugin,
            "plugin_kind": planned.plugin.kind,
            "plugin_version": planned.plugin.version,
            "mode": case.mode,
            "preset": case.preset,
            "seq_len": case.seq_len,
            "device": case.device,
            "gpu_name": planned.gpu_name,
            "settings": case.settings,
            "notes": case.notes,
            "pass_index": row["pass_index"],
            "warmup": row.get("warmup", False),
            "start_ts": row["start_ts"],
            "elapsed_ms": row["elapsed_ms"],
            "wall_ms": row["wall_ms"],
            "compile_ms": result.compile_ms,
            "setup_ms": result.setup_ms,
            "ok": row["ok"],
            "error": row["error"] or "",
            "error_kind": row["error_kind"] or "",
            "engine_source_version": info.get("engine_source_version") or self.source_versions.get(case.plugin),
            "nvml_peak_gpu_bytes_so_far": result.nvml_peak_bytes,
            "sampled_peak_rss_bytes_so_far": result.rss_peak_bytes,
            "worker_pid": result.hello.get("pid"),
            "worker_python": result.hello.get("executable"),
            "worker_versions": result.hello.get("versions"),
            "env": recorded_env(planned.env),
            "info": info,
            "compile_info": result.compile_info,
        }
        for key, value in (row.get("extra") or {}).items():
            full.setdefault(key, value)  # a runner's figures never overwrite the harness's own fields
        return full

    def write(self, result: CaseResult, row: dict[str, Any]) -> dict[str, Any]:
        full = self.pass_row(result, row)
        plugin = result.planned.case.plugin
        f = self._files.get(plugin)
        if f is None:
            f = self._files[plugin] = open(self.out_dir / f"{plugin}.jsonl", "a", encoding="utf-8")
        f.write(json.dumps(full, default=_json_default) + "\n")
        f.flush()
        return full

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _stats(times: list[float]) -> dict[str, float | None]:
    if not times:
        return dict.fromkeys(("min_ms", "median_ms", "p95_ms", "mean_ms", "stdev_ms"))
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
    return {
        "min_ms": min(times),
        "median_ms": statistics.median(times),
        "p95_ms": p95,
        "mean_ms": statistics.fmean(times),
        "stdev_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
    }


def _extra_figures(result: CaseResult) -> dict[str, float]:
    """Numeric figures a runner reported: what compile() returned (errors, lowering time...) and the
    median of each figure it added to its passes (floor_ms, fraction_of_floor...)."""
    values: dict[str, list[float]] = {}
    for p in result.passes:
        if not p.get("ok") or p.get("warmup"):
            continue
        for key, value in (p.get("extra") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.setdefault(key, []).append(float(value))
    figures = {key: statistics.median(v) for key, v in values.items() if key not in SUMMARY_COLUMNS}
    for key, value in result.compile_info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in SUMMARY_COLUMNS:
            figures.setdefault(key, value)
    return figures


def summary_row(result: CaseResult, run_id: str, host: dict[str, Any], source_versions: dict) -> dict[str, Any]:
    case = result.planned.case
    n_ok = len(result.ok_times)
    n_failed = sum(1 for p in result.passes if not p.get("ok"))
    n_warmup = sum(1 for p in result.passes if p.get("warmup"))
    memory = result.memory
    return {
        "run_id": run_id,
        "case_id": result.planned.case_id,
        "plugin": case.plugin,
        "plugin_kind": result.planned.plugin.kind,
        "mode": case.mode,
        "preset": case.preset,
        "seq_len": case.seq_len,
        "device": case.device,
        "settings": json.dumps(case.settings, sort_keys=True, default=_json_default),
        "status": result.status,
        "n_ok": n_ok,
        "n_failed": n_failed,
        "n_warmup": n_warmup,
        **_stats(result.ok_times),
        "compile_ms": result.compile_ms,
        "setup_ms": result.setup_ms,
        "nvml_peak_gpu_bytes": result.nvml_peak_bytes,
        "framework": memory.get("framework"),
        "framework_peak_bytes": memory.get("framework_peak_bytes"),
        "worker_peak_rss_bytes": memory.get("worker_vmhwm_bytes"),
        "sampled_peak_rss_bytes": result.rss_peak_bytes,
        "error": result.error,
        "notes": case.notes,
        "plugin_version": result.planned.plugin.version,
        "engine_source_version": result.info.get("engine_source_version") or source_versions.get(case.plugin),
        **{k: host.get(k) for k in ("host", "driver", "python", "torch_version", "jax_version",
                                    "triton_version", "af3bench_version", "af3bench_commit")},
        "gpu_name": result.planned.gpu_name,
        "env": json.dumps(recorded_env(result.planned.env), sort_keys=True),
        **_extra_figures(result),
    }


def write_summary(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(SUMMARY_COLUMNS)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    path = out_dir / SUMMARY_FILE
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def write_meta(out_dir: Path, meta: dict[str, Any]) -> Path:
    path = out_dir / META_FILE
    path.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def read_summary(out_dir: Path) -> list[dict[str, str]]:
    with open(out_dir / SUMMARY_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
