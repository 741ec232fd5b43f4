"""``af3 show RUN`` (the run as one side-by-side table; ``--by-length``: a line per setting, a column
per sequence length) and ``af3 report RUN`` (one document with the
environment, that table, the plots and the warnings, to attach to a pull request or a paper).

Both read only the results folder (summary.csv, meta.json, the plots), so any finished or
interrupted run can be shown. Rows are the cases; the settings whose values differ between cases
become columns, the ones all cases share are listed once (the report's environment).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from af3core.errors import UsageError
from af3core.live import _fmt_bytes, _fmt_ms
from af3core.plot import MEMORY_PLOT, MEMORY_SOURCES, TIME_PLOT, _number, _settings
from af3core.writers import SUMMARY_FILE, read_summary

#: A 1-minute load average above this many per CPU makes CPU timings suspect (they vary 2-10x).
LOADED_PER_CPU = 0.5


def load_run(folder: Path) -> tuple[list[dict[str, str]], dict]:
    """summary.csv's rows and meta.json (empty when absent). UsageError for a folder that is not a run."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (give the results folder of an af3 bench run)")
    if not (folder / SUMMARY_FILE).is_file():
        raise UsageError(f"{folder}: no {SUMMARY_FILE} here (is this an af3 bench output folder?)")
    try:
        rows = read_summary(folder)
    except OSError as exc:
        raise UsageError(f"{folder / SUMMARY_FILE}: cannot be read ({exc})") from None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        meta = {}
    return rows, meta if isinstance(meta, dict) else {}


def _varying(rows: list[dict[str, str]]) -> tuple[list[str], list[str], dict]:
    """(case fields that differ, setting keys that differ, the settings every case shares). A key
    differs when two cases of one plugin give it different values, or when every case has it and
    not all alike (dtype across engines); a key only some plugins have, constant in each, is no
    column (each plugin has its own settings)."""
    # gpu_name: runs of one setting on two GPU models are two results, never one line or cell
    # kernels: what the engine ran (a setting's "auto" resolved), told apart like a setting
    fields = [f for f in ("run", "plugin", "mode", "preset", "device", "gpu_name", "kernels")
              if len({r.get(f) or "" for r in rows}) > 1]
    settings = [_settings(r) for r in rows]
    keys = sorted({k for s in settings for k in s})
    values: dict[tuple[str, str], set[str]] = {}
    for row, s in zip(rows, settings):
        for k, v in s.items():
            values.setdefault((row.get("plugin") or "", k), set()).add(json.dumps(v, default=str))
    everywhere = [k for k in keys if all(k in s for s in settings)]
    differ = [k for k in keys if any(len(v) > 1 for (_, key), v in values.items() if key == k)
              or (k in everywhere and len({json.dumps(s[k], default=str) for s in settings}) > 1)]
    shared = {k: settings[0][k] for k in keys if k not in differ and all(k in s for s in settings)
              and len({json.dumps(s[k], default=str) for s in settings}) == 1} if settings else {}
    return fields, differ, shared


#: the short name of each memory source in a column header
_MEMORY_NAMES = {"nvml_peak_gpu_bytes": "GPU, NVML", "framework_peak_bytes": "allocator",
                 "worker_peak_rss_bytes": "RSS"}


def _memory(row: dict[str, str]) -> tuple[str, str | None]:
    """(the row's peak memory, from its most direct source; that source's column)."""
    for column, _ in MEMORY_SOURCES:
        value = _number(row.get(column))
        if value:
            return _fmt_bytes(int(value)), column
    return "-", None


def _spread(row: dict[str, str]) -> str:
    rel, noise = _number(row.get("rel_stdev")), _number(row.get("median_noise"))
    if rel is None:
        return "-"
    text = f"±{100 * rel:.1f}%"
    if noise is not None:
        text += f" (median ±{100 * noise:.1f}%)"
    return text + (" noisy" if row.get("noisy") == "True" else "")


def runner_figures(rows: list[dict[str, str]]) -> list[str]:
    """The numeric columns a runner added (medians of its per-pass figures: ms_tri_attn,
    ms_per_100_residues, floor_ms...), in the summary's order."""
    from af3core.record import SUMMARY_COLUMNS

    known = set(SUMMARY_COLUMNS)
    columns = [c for c in rows[0] if c not in known] if rows else []
    return [c for c in columns if any(_number(r.get(c)) is not None for r in rows)]


def table(rows: list[dict[str, str]], figures: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, cells): one line per case; with ``figures``, the runner's own figures as more columns."""
    fields, differ, _ = _varying(rows)
    sources = {_memory(r)[1] for r in rows} - {None}
    memory = f"peak memory ({_MEMORY_NAMES[sources.pop()]})" if len(sources) == 1 else "peak memory"
    header = [*fields, "seq_len", *differ, "status", "median", "min", "max", "spread", "passes", "compile", memory]
    adaptive = any(r.get("stopped_by") not in (None, "", "passes") for r in rows)
    if adaptive:
        header.append("stopped by")
    cells = []
    for r in rows:
        settings = _settings(r)
        line = [r.get(f) or "" for f in fields] + [r.get("seq_len") or ""]
        line += [str(settings.get(k, "")) for k in differ]
        line += [r.get("status") or "", *(_fmt_ms(_number(r.get(c))) for c in ("median_ms", "min_ms", "max_ms")),
                 _spread(r), r.get("n_ok") or "0", _fmt_ms(_number(r.get("compile_ms"))), _memory(r)[0]]
        if adaptive:
            line.append(r.get("stopped_by") or "")
        cells.append(line)
    if figures:
        extra = runner_figures(rows)
        header += extra
        for line, r in zip(cells, rows):
            line += [f"{value:.4g}" if (value := _number(r.get(c))) is not None else "-" for c in extra]
    return header, cells


def length_table(rows: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    """(header, cells): one line per setting (plugin, mode, preset and the settings that differ), one
    column per sequence length, each cell the median and peak memory, or the status of a case that
    did not finish. Runs are not told apart: the same setting measured in runs of its own (an engine
    a run, a size a run) lands on one line, which is how engines are read side by side."""
    fields, differ, _ = _varying(rows)
    fields = [f for f in fields if f != "run"]
    lengths = sorted({int(r["seq_len"]) for r in rows if str(r.get("seq_len") or "").isdigit()})
    # Each cell's memory comes from its row's most direct source; where the rows' sources differ
    # (a GPU run beside a CPU run), each cell names its own rather than mixing them silently.
    mixed = len({_memory(r)[1] for r in rows if r.get("status") == "ok"} - {None}) > 1
    lines: dict[tuple[str, ...], dict[int, list[dict[str, str]]]] = {}
    for r in rows:
        if str(r.get("seq_len") or "").isdigit():
            settings = _settings(r)
            key = tuple(r.get(f) or "" for f in fields) + tuple(str(settings.get(k, "")) for k in differ)
            lines.setdefault(key, {}).setdefault(int(r["seq_len"]), []).append(r)

    def entry(r: dict[str, str]) -> str:
        if r.get("status") != "ok":
            return r.get("status") or "?"
        memory, source = _memory(r)
        label = f" {_MEMORY_NAMES[source]}" if mixed and source else ""
        return f"{_fmt_ms(_number(r.get('median_ms')))} ({memory}{label})"

    def cell(cases: list[dict[str, str]]) -> str:
        # an interrupted attempt beside a measurement is superseded (a case stopped by a deadline and
        # run again later); other statuses stay beside it (an OOM next to a fit is news)
        if any(r.get("status") == "ok" for r in cases):
            cases = [r for r in cases if r.get("status") != "interrupted"]
        return "; ".join(map(entry, cases))

    header = [*fields, *differ, *(str(n) for n in lengths)]
    cells = [[*key, *(cell(by_length.get(n, [])) for n in lengths)] for key, by_length in lines.items()]
    return header, cells


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, line)) + " |" for line in cells]
    return "\n".join(lines)


def warnings(rows: list[dict[str, str]]) -> list[str]:
    """What a reader must know before trusting the numbers: failures, noise, an unmet noise bound,
    GPU clocks that moved, a loaded CPU."""
    out = []
    for r in rows:
        name = r.get("case_id") or "?"
        if r.get("status") != "ok":
            out.append(f"{name}: {r.get('status')}: {r.get('error') or 'no reason recorded'}")
            continue
        if r.get("noisy") == "True":
            out.append(f"{name}: noisy: the passes' relative standard deviation is "
                       f"{100 * (_number(r.get('rel_stdev')) or 0):.1f}% (over 5%)")
        if r.get("stopped_by") == "max_time":
            out.append(f"{name}: --max-noise was not reached before --max-time "
                       f"(median ±{100 * (_number(r.get('median_noise')) or 0):.1f}%)")
        if r.get("clocks_changed") == "True":
            out.append(f"{name}: the GPU's SM clock moved during the timed passes ({r.get('sm_clock_min_mhz')}-"
                       f"{r.get('sm_clock_max_mhz')} MHz, up to {r.get('gpu_temp_max_c')} C, "
                       f"{r.get('gpu_power_max_w')} W; reasons: {r.get('throttle_reasons') or 'none given'})")
        load, cpus = _number(r.get("load_avg_1m_at_start")), _number(r.get("cpu_count"))
        if r.get("device") == "cpu" and load is not None and cpus and load > LOADED_PER_CPU * cpus:
            out.append(f"{name}: the CPU was loaded when it started (1-minute load {load:g} on {cpus:g} CPUs): "
                       "CPU timings can be several times slower than on an idle machine")
    return out


def environment(rows: list[dict[str, str]], meta: dict) -> list[tuple[str, str]]:
    first = rows[0] if rows else {}
    _, _, shared = _varying(rows) if rows else ([], [], {})
    items = [
        ("run", str(meta.get("run_id") or first.get("run_id") or "")),
        ("started", str(meta.get("started") or "")),
        ("command", " ".join(meta.get("command_line") or [])),
        ("device", first.get("gpu_name") or first.get("device") or ""),
        ("driver", first.get("driver") or ""),
        ("CPU", f"{first.get('cpu_model') or ''} ({first.get('cpu_count') or '?'} CPUs)"),
        ("host", first.get("host") or ""),
        ("python / torch / jax / triton", " / ".join(first.get(k) or "-" for k in
                                                      ("python", "torch_version", "jax_version", "triton_version"))),
        ("af3-bench", f"{first.get('af3bench_version') or ''} {first.get('af3bench_commit') or ''}".strip()),
        ("engine sources", ", ".join(sorted({f"{r.get('plugin')}: {r.get('engine_source_version')}" for r in rows
                                             if r.get("engine_source_version")}))),
        ("settings all cases share", ", ".join(f"{k}={v}" for k, v in shared.items())),
    ]
    return [(k, v) for k, v in items if v.strip()]


def load_runs(folders: list[Path]) -> list[dict[str, str]]:
    """The rows of one run, or of several one after the other, each then named by its folder in a
    ``run`` column (engines measured in runs of their own, shown side by side)."""
    rows = []
    for folder in folders:
        for row in load_run(folder)[0]:
            rows.append({"run": folder.name, **row} if len(folders) > 1 else row)
    return rows


def print_show(folders: Path | list[Path], markdown: bool, figures: bool = False, by_length: bool = False) -> int:
    folders = [folders] if isinstance(folders, Path) else list(folders)
    if figures and by_length:
        raise UsageError("--figures adds columns to a line per case; --by-length has a line per setting: "
                         "use one of them")
    rows = load_runs(folders)
    folder = folders[0] if len(folders) == 1 else Path(f"{len(folders)} runs")
    if not rows:
        print(f"{folder}: the run has no cases", flush=True)
        return 0
    header, cells = length_table(rows) if by_length else table(rows, figures)
    if markdown:
        print(markdown_table(header, cells))
        return 0
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"{folder} ({rows[0].get('gpu_name') or rows[0].get('device')})")
    for name in header:
        out.add_column(name, overflow="fold")
    if by_length:  # a cell per case: median (peak memory), or its status
        for line in cells:
            out.add_row(*line)
    else:
        for line, row in zip(cells, rows):
            out.add_row(*line, style=None if row.get("status") == "ok" else "red")
    console = Console(width=max(160, Console().width))  # a pipe's 80 columns would fold every name
    console.print(out)
    for text in warnings(rows):
        console.print(f"[yellow]warning[/yellow] {text}", highlight=False)
    return 0


def write_report(folder: Path, as_html: bool) -> Path:
    """report.md (plots linked) or report.html (plots embedded: one self-contained file)."""
    rows, meta = load_run(folder)
    header, cells = table(rows, figures=True) if rows else ([], [])
    env = environment(rows, meta)
    warn = warnings(rows)
    # one pair, or a pair per plugin kind (time_vs_seq_len_engine.png...) in a run of engines and kernels
    plots = [p for name in (TIME_PLOT, MEMORY_PLOT) for p in sorted(folder.glob(name.replace(".png", "*.png")))]
    path = folder / ("report.html" if as_html else "report.md")
    if as_html:
        esc = html.escape
        parts = [f"<!doctype html><meta charset='utf-8'><title>af3-bench {esc(folder.name)}</title>",
                 "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}.w{color:#a60}</style>",
                 f"<h1>af3-bench run {esc(folder.name)}</h1><h2>Environment</h2><table>"]
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in env]
        parts.append("</table><h2>Results</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in line) + "</tr>" for line in cells]
        parts.append("</table><h2>Warnings</h2>")
        parts.append("<ul>" + "".join(f"<li class='w'>{esc(w)}</li>" for w in warn) + "</ul>" if warn else "<p>none</p>")
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f"<h2>{esc(plot.stem)}</h2><img alt='{esc(plot.name)}' src='data:image/png;base64,{data}'>")
        text = "\n".join(parts) + "\n"
    else:
        lines = [f"# af3-bench run {folder.name}", "", "## Environment", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in env]
        lines += ["", "## Results", "", markdown_table(header, cells) if rows else "no cases", "", "## Warnings", ""]
        lines += [f"- {w}" for w in warn] or ["none"]
        for plot in plots:
            lines += ["", f"![{plot.stem}]({plot.name})"]
        text = "\n".join(lines) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be written ({exc})") from None
    return path
