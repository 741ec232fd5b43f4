"""PNG plots of a run: median time and peak memory against sequence length, one line per plugin
and setting. Reads only summary.csv, so any finished (or interrupted) run can be plotted."""
from __future__ import annotations

import csv
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


def _label(row: dict[str, str]) -> str:
    preset = f" {row['preset']}" if row.get("preset") else ""
    settings = row.get("settings") or ""
    return f"{row['plugin']} {row['mode']}{preset} {settings}"[:120]


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

    series: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        series[_label(row)].append(row)
    written = []

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, points in series.items():
        xy = sorted((int(float(p["seq_len"])), _number(p["median_ms"])) for p in points if _number(p.get("median_ms")))
        if xy:
            ax.plot(*zip(*xy), marker="o", label=label)
    ax.set(xlabel="sequence length (tokens; R for kernels)", ylabel="median time per pass (ms)",
           title="Median pass time", yscale="log")
    _finish(fig, ax, out_dir / TIME_PLOT, written)

    column, description = next(((c, d) for c, d in MEMORY_SOURCES if any(_number(r.get(c)) for r in rows)),
                               MEMORY_SOURCES[-1])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, points in series.items():
        xy = sorted((int(float(p["seq_len"])), _number(p.get(column)) / 2**30) for p in points if _number(p.get(column)))
        if xy:
            ax.plot(*zip(*xy), marker="o", label=label)
    ax.set(xlabel="sequence length (tokens; R for kernels)", ylabel=f"{description} (GiB)", title="Peak memory")
    _finish(fig, ax, out_dir / MEMORY_PLOT, written)
    return written


def _finish(fig, ax, path: Path, written: list[Path]) -> None:
    import matplotlib.pyplot as plt

    if ax.lines:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        written.append(path)
    plt.close(fig)
