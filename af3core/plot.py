"""PNG plots of a run: median time and peak memory against sequence length, one line per plugin
and setting. Reads only summary.csv, so any finished (or interrupted) run can be plotted."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from af3core.writers import SUMMARY_FILE, read_summary
from af3core.errors import UsageError

TIME_PLOT = "time_vs_seq_len.png"
MEMORY_PLOT = "memory_vs_seq_len.png"

# Memory sources, most direct first; the axis label says which one was plotted.
MEMORY_SOURCES = (("nvml_peak_gpu_bytes", "GPU memory (NVML, per process)"),
                  ("framework_peak_bytes", "framework peak (torch/JAX allocator)"),
                  ("worker_peak_rss_bytes", "worker peak RSS (VmHWM)"))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _settings(row: dict[str, str]) -> dict:
    try:
        value = json.loads(row.get("settings") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def labeller(rows: list[dict[str, str]]):
    """A function row -> legend label naming only what tells the lines apart: the plugin, mode and
    preset where they differ, and the settings whose values differ between the rows."""
    keys = {k for r in rows for k in _settings(r)}
    varying = sorted(k for k in keys if len({json.dumps(_settings(r).get(k), default=str) for r in rows}) > 1)
    fields = [f for f in ("plugin", "mode", "preset") if len({r.get(f) for r in rows}) > 1]

    def label(row: dict[str, str]) -> str:
        settings = _settings(row)
        parts = [str(row.get(f) or "") for f in fields] + [f"{k}={settings.get(k)}" for k in varying if k in settings]
        return " ".join(p for p in parts if p) or f"{row['plugin']} {row['mode']}"

    return label


def _title(rows: list[dict[str, str]], what: str) -> str:
    """What, on which device, from which commit and date (the run id is the folder's timestamp)."""
    first = rows[0]
    device = first.get("gpu_name") or first.get("cpu_model") or first.get("device") or ""
    commit = first.get("af3bench_commit") or ""
    return f"{what}: {device} (af3-bench {commit}, run {first.get('run_id', '')})"


def _errorbars(points, column_mid: str) -> tuple[list, list, list, list]:
    """x, median, and the distances down to min and up to max (the passes' spread)."""
    xs, ys, lo, hi = [], [], [], []
    for p in sorted(points, key=lambda p: float(p["seq_len"])):
        mid = _number(p.get(column_mid))
        if mid is None:
            continue
        xs.append(int(float(p["seq_len"])))
        ys.append(mid)
        lo.append(max(0.0, mid - (_number(p.get("min_ms")) or mid)))
        hi.append(max(0.0, (_number(p.get("max_ms")) or mid) - mid))
    return xs, ys, lo, hi


def plot_run(out_dir: Path) -> list[Path]:
    """Write the plots of the successful cases of the run in ``out_dir``; returns the files written
    (none when no case succeeded). UsageError when ``out_dir`` is not a results folder."""
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir}: not a folder (give the results folder of an af3 bench run)")
    try:
        rows = [r for r in read_summary(out_dir) if r.get("status") == "ok" and _number(r.get("seq_len"))]
    except FileNotFoundError:
        raise UsageError(f"{out_dir}: no {SUMMARY_FILE} here (is this an af3 bench output folder?)") from None
    except (OSError, UnicodeError, csv.Error) as exc:
        raise UsageError(f"{out_dir / SUMMARY_FILE}: cannot be read ({exc})") from None
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = labeller(rows)
    series: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        series[label(row)].append(row)
    written = []

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, points in series.items():
        xs, ys, lo, hi = _errorbars(points, "median_ms")
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=name)
    ax.set(xlabel="sequence length (tokens; R for kernels)", ylabel="median time per pass (ms); bars: min to max",
           title=_title(rows, "Median pass time"), yscale="log")
    _finish(fig, ax, out_dir / TIME_PLOT, written)

    column, description = next(((c, d) for c, d in MEMORY_SOURCES if any(_number(r.get(c)) for r in rows)),
                               MEMORY_SOURCES[-1])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, points in series.items():
        xy = sorted((int(float(p["seq_len"])), _number(p.get(column)) / 2**30) for p in points if _number(p.get(column)))
        if xy:
            ax.plot(*zip(*xy), marker="o", label=name)
    ax.set(xlabel="sequence length (tokens; R for kernels)", ylabel=f"{description} (GiB)",
           title=_title(rows, "Peak memory"))
    ax.set_ylim(bottom=0)
    _finish(fig, ax, out_dir / MEMORY_PLOT, written)
    return written


def _finish(fig, ax, path: Path, written: list[Path]) -> None:
    import matplotlib.pyplot as plt

    if ax.lines or ax.containers:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        ax.title.set_fontsize(9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        written.append(path)
    plt.close(fig)
