"""PNG plots of a run, or of several side by side (one engine per run, say): median time and peak
memory against sequence length, one line per plugin and setting. Reads only summary.csv, so any
finished (or interrupted) run can be plotted."""
from __future__ import annotations

import csv
import json
import statistics
import textwrap
from collections import defaultdict
from pathlib import Path

from af3core.writers import SUMMARY_FILE, read_summary
from af3core.errors import UsageError

TIME_PLOT = "time_vs_seq_len.png"
MEMORY_PLOT = "memory_vs_seq_len.png"
#: Characters per title line: what fits the 9-inch figure at the title's 9-point font
TITLE_WIDTH = 110

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
    """A function row -> legend label naming only what tells the lines apart: the plugin, mode,
    preset and GPU where they differ, and the settings whose values differ between the rows of one plugin
    (engines name their settings differently: one that only some plugins have is no difference)."""
    by_plugin: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_plugin[r.get("plugin") or ""].append(_settings(r))
    varying = {plugin: sorted(k for k in {k for s in sets for k in s}
                              if len({json.dumps(s.get(k), default=str) for s in sets}) > 1)
               for plugin, sets in by_plugin.items()}
    # gpu_name: one setting on two GPU models is two lines, not one line through both; kernels: one
    # setting that ran other kernels (an "auto" resolved otherwise) likewise
    fields = [f for f in ("plugin", "mode", "preset", "gpu_name") if len({r.get(f) for r in rows}) > 1]
    kernels = len({r.get("kernels") or "" for r in rows}) > 1

    def label(row: dict[str, str]) -> str:
        settings = _settings(row)
        parts = [str(row.get(f) or "") for f in fields] + [
            f"{k}={settings.get(k)}" for k in varying[row.get("plugin") or ""] if k in settings]
        if kernels:
            parts.append(f"kernels: {row.get('kernels') or '?'}")
        return " ".join(p for p in parts if p) or f"{row['plugin']} {row['mode']}"

    return label


#: The key under which plot_run notes each row's results folder (not a summary.csv column)
_FOLDER = "_results_folder"


def _title(rows: list[dict[str, str]], what: str) -> str:
    """What, on which device(s), from which commit(s) and run(s)."""
    def joined(*fields: str) -> str:
        seen = dict.fromkeys(next((r.get(f) for f in fields if r.get(f)), "") for r in rows)
        return ", ".join(v for v in seen if v)

    # counted by results folder: two folders may share a run id (the same --out name on two machines)
    runs = {r.get(_FOLDER) or r.get("run_id", "") for r in rows}
    run = f"run {rows[0].get('run_id', '')}" if len(runs) == 1 else f"{len(runs)} runs"
    title = f"{what}: {joined('gpu_name', 'cpu_model', 'device')} (af3-bench {joined('af3bench_commit')}, {run})"
    # runs from several machines and commits make a title wider than the figure: wrap it, not clip it
    return "\n".join(textwrap.wrap(title, TITLE_WIDTH))


def _by_length(points) -> dict[int, list[dict[str, str]]]:
    """The rows of one line, grouped by length, shortest first: repeated runs of one setting (a retry
    after a stopped call, say) are one point, not a vertical zigzag through each row."""
    groups: dict[int, list[dict[str, str]]] = defaultdict(list)
    for p in points:
        groups[int(float(p["seq_len"]))].append(p)
    return dict(sorted(groups.items()))


def _errorbars(points, column_mid: str) -> tuple[list, list, list, list]:
    """x, median, and the distances down to min and up to max (the passes' spread). Several rows at
    one length: the median of their medians, the bar from the lowest min to the highest max."""
    xs, ys, lo, hi = [], [], [], []
    for x, rows in _by_length(points).items():
        measured = [(p, m) for p, m in ((p, _number(p.get(column_mid))) for p in rows) if m is not None]
        if not measured:
            continue
        mid = statistics.median(m for _, m in measured)
        low = min(min(_number(p.get("min_ms")) or m, m) for p, m in measured)
        high = max(max(_number(p.get("max_ms")) or m, m) for p, m in measured)
        xs.append(x)
        ys.append(mid)
        lo.append(max(0.0, mid - low))
        hi.append(max(0.0, high - mid))
    return xs, ys, lo, hi


def _peaks(points, column: str) -> list[tuple[int, float]]:
    """(length, GiB) per length: the highest peak where several rows measured one length."""
    xy = []
    for x, rows in _by_length(points).items():
        values = [v for v in (_number(p.get(column)) for p in rows) if v]
        if values:
            xy.append((x, max(values) / 2**30))
    return xy


def _ok_rows(run_dir: Path) -> list[dict[str, str]]:
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a folder (give the results folder of an af3 bench run)")
    try:
        return [r for r in read_summary(run_dir) if r.get("status") == "ok" and _number(r.get("seq_len"))]
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: no {SUMMARY_FILE} here (is this an af3 bench output folder?)") from None
    except (OSError, UnicodeError, csv.Error) as exc:
        raise UsageError(f"{run_dir / SUMMARY_FILE}: cannot be read ({exc})") from None


def plotted_rows(runs: list[Path]) -> list[dict[str, str]]:
    """The successful rows of the runs, each noting its results folder."""
    return [{**r, _FOLDER: str(run_dir)} for run_dir in runs for r in _ok_rows(run_dir)]


def plot_run(out_dir: Path, runs: list[Path] | None = None) -> list[Path]:
    """Write the plots of the successful cases of the run in ``out_dir`` (or of ``runs`` together,
    into ``out_dir``); returns the files written (none when no case succeeded). UsageError when a
    run is not a results folder."""
    rows = plotted_rows(runs or [out_dir])
    if not rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")

    # engines' tokens and kernels' R are not one axis: a run of both gets a pair of plots per kind
    kinds: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        kinds[row.get("plugin_kind") or ""].append(row)
    written = []
    for kind, kind_rows in kinds.items():
        suffix = f"_{kind}" if len(kinds) > 1 and kind else ""
        _plot_kind(kind_rows, _AXES.get(kind, _AXES[""]), out_dir, suffix, written)
    return written


#: The x axis per plugin kind ("" when a summary has no kind: older runs)
_AXES = {"engine": "sequence length (tokens; residues for protein-only engines)",
         "kernel": "R (the kernel's --seq-len)", "": "sequence length (tokens; R for kernels)"}


def _plot_kind(rows: list[dict[str, str]], xlabel: str, out_dir: Path, suffix: str, written: list[Path]) -> None:
    import matplotlib.pyplot as plt

    label = labeller(rows)
    series: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        series[label(row)].append(row)

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, points in series.items():
        xs, ys, lo, hi = _errorbars(points, "median_ms")
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=name)
    ax.set(xlabel=xlabel, ylabel="median time per pass (ms); bars: min to max",
           title=_title(rows, "Median pass time"), yscale="log")
    _finish(fig, ax, out_dir / TIME_PLOT.replace(".png", f"{suffix}.png"), written)

    column, description = next(((c, d) for c, d in MEMORY_SOURCES if any(_number(r.get(c)) for r in rows)),
                               MEMORY_SOURCES[-1])
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, points in series.items():
        xy = _peaks(points, column)
        if xy:
            ax.plot(*zip(*xy), marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=f"{description} (GiB)", title=_title(rows, "Peak memory"))
    ax.set_ylim(bottom=0)
    _finish(fig, ax, out_dir / MEMORY_PLOT.replace(".png", f"{suffix}.png"), written)


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
