"""Progress while a run goes: a rich live table on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from af3core.record import CaseRecord
from af3core import stats, stopping
from af3core.plan import Plan


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1e3:.2f} s" if ms >= 1e4 else f"{ms:.3f} ms" if ms < 1 else f"{ms:.1f} ms"


def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def params_text(result: CaseRecord) -> str:
    case = result.planned.case
    preset = f" {case.preset}" if case.preset else ""
    return f"{case.mode}{preset} L={case.seq_len}"


def status_text(result: CaseRecord) -> str:
    if result.status not in ("pending",):
        return "done" if result.status == "ok" else result.status
    phase = result.phase
    if phase == "pass" and result.pass_index is not None:
        return f"pass {result.pass_index + 1}/{passes_text(result.planned.case)}"
    if phase == "warmup" and result.pass_index is not None:
        return f"warm-up {result.pass_index + 1}/{result.planned.case.warmup}"
    return {"starting": "starting", "importing": "importing", "setup": "setup", "compile": "compiling",
            "done": "finishing"}.get(phase, phase)


def passes_text(case) -> str:
    """How many timed passes: "3", or ">=3" when --min-time/--max-noise may ask for more."""
    return f">={case.passes}" if stopping.adaptive(case) else str(case.passes)


def _stop_text(result: CaseRecord) -> str:
    """", 41 passes, stopped by noise (median +-0.8%)" for an adaptive case; "" otherwise."""
    if not stopping.adaptive(result.planned.case):
        return ""
    noise = stats.median_noise(result.ok_times)
    known = f" (median ±{100 * noise:.1f}%)" if noise is not None else ""
    return f", {len(result.ok_times)} passes, stopped by {result.stopped_by}{known}"


def _clock_text(result: CaseRecord) -> str:
    """", GPU clocks changed (1755-1980 MHz; sw_power_cap)" when af3core.gpustate flagged the case."""
    cols = result.gpu_state.columns()
    if not cols["clocks_changed"]:
        return ""
    reasons = f"; {cols['throttle_reasons']}" if cols["throttle_reasons"] else ""
    return f", GPU clocks changed ({cols['sm_clock_min_mhz']}-{cols['sm_clock_max_mhz']} MHz{reasons})"


def _last_median(result: CaseRecord) -> tuple[float | None, float | None]:
    times = result.ok_times
    return (times[-1] if times else None, stats.median(times))


def spread_text(result: CaseRecord) -> str:
    """The passes' relative standard deviation ("±1.2%"), with "noisy" past stats.NOISY_REL_STDEV."""
    summary = stats.time_summary(result.ok_times)
    if summary["rel_stdev"] is None or len(result.ok_times) < 2:
        return ""
    return f"±{100 * summary['rel_stdev']:.1f}%" + (" noisy" if summary["noisy"] else "")


class LiveTable:
    """A rich table, one line per case, redrawn a few times a second."""

    def __init__(self, plan: Plan, console: Console | None = None):
        self.console = console or Console()
        self.results: dict[str, CaseRecord | None] = {c.case_id: None for c in plan.cases}
        self.plan = plan
        self.started = time.monotonic()
        self.live = Live(get_renderable=self._table, console=self.console, refresh_per_second=4, transient=False)

    def _table(self) -> Table:
        table = Table(title="af3 bench", expand=False)
        done = sum(1 for r in self.results.values() if r is not None and r.status != "pending")
        running = sum(1 for r in self.results.values() if r is not None and r.status == "pending")
        where = f"case {min(done + 1, len(self.results))} of {len(self.results)}" if running <= 1 else \
            f"{done} of {len(self.results)} done, {running} running"
        table.caption = f"{where}, {time.monotonic() - self.started:.0f} s elapsed"
        for col in ("case", "plugin", "parameters", "status", "last", "median", "spread", "compile", "peak GPU",
                    "peak RSS"):
            table.add_column(col, justify="right" if col in ("last", "median", "spread", "compile", "peak GPU",
                                                             "peak RSS") else "left")
        for planned in self.plan.cases:
            r = self.results.get(planned.case_id)
            if r is None:
                case = planned.case
                table.add_row(planned.case_id[:3], case.plugin, f"{case.mode} {case.preset or ''} L={case.seq_len}",
                              "[dim]queued[/dim]", "", "", "", "", "", "")
                continue
            last, median = _last_median(r)
            status = status_text(r)
            style = "green" if r.status == "ok" else "red" if r.status != "pending" else "yellow"
            table.add_row(planned.case_id[:3], planned.case.plugin, params_text(r), f"[{style}]{status}[/{style}]",
                          _fmt_ms(last), _fmt_ms(median), spread_text(r), _fmt_ms(r.compile_ms),
                          _fmt_bytes(r.nvml_peak_gpu_bytes),
                          _fmt_bytes(r.sampled_peak_rss_bytes))
        return table

    def start(self) -> None:
        self.live.start()

    def update(self, result: CaseRecord) -> None:
        self.results[result.planned.case_id] = result

    def row(self, result: CaseRecord, row: dict[str, Any]) -> None:
        self.update(result)

    def skipped(self, name: str, reason: str) -> None:
        self.console.print(f"[yellow]skipped[/yellow] {name}: {reason}")

    def done(self, result: CaseRecord) -> None:
        self.update(result)
        if result.status != "ok":
            self.live.console.print(f"[red]{result.planned.case_id} {result.status}[/red]: {result.error}")

    def stop(self) -> None:
        self.live.refresh()
        self.live.stop()


class PlainProgress:
    """One line per event, for logs and pipes."""

    def __init__(self, plan: Plan, stream=None):
        self.stream = stream or sys.stdout
        self._phase: dict[str, str] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self) -> None:
        pass

    def update(self, result: CaseRecord) -> None:
        status = status_text(result)
        if status.startswith(("pass", "warm-up")) or self._phase.get(result.planned.case_id) == status:
            return
        self._phase[result.planned.case_id] = status
        self._print(f"[{result.planned.case_id}] {status}")

    def row(self, result: CaseRecord, row: dict[str, Any]) -> None:
        if row["ok"]:
            what = "warm-up" if row.get("warmup") else "pass"
            total = result.planned.case.warmup if row.get("warmup") else passes_text(result.planned.case)
            self._print(f"[{result.planned.case_id}] {what} {row['pass_index'] + 1}/{total} {_fmt_ms(row['elapsed_ms'])}")

    def skipped(self, name: str, reason: str) -> None:
        self._print(f"skipped {name}: {reason}")

    def done(self, result: CaseRecord) -> None:
        _, median = _last_median(result)
        if result.status == "ok":
            spread = spread_text(result)
            self._print(f"[{result.planned.case_id}] done: median {_fmt_ms(median)}"
                        f"{' ' + spread if spread else ''}, compile "
                        f"{_fmt_ms(result.compile_ms)}, peak GPU {_fmt_bytes(result.nvml_peak_gpu_bytes)}, "
                        f"peak RSS {_fmt_bytes(result.sampled_peak_rss_bytes)}{_stop_text(result)}"
                        f"{_clock_text(result)}{_kernels_text(result)}")
        else:
            self._print(f"[{result.planned.case_id}] {result.status}: {result.error}")

    def stop(self) -> None:
        pass


def _kernels_text(result: CaseRecord) -> str:
    """The kernels the engine ran, where it says (an "auto" setting resolved in the worker)."""
    kernels = result.info.get("kernels")
    return f", kernels: {kernels}" if kernels else ""


def make_view(plan: Plan, force_plain: bool = False):
    if not force_plain and sys.stdout.isatty():
        return LiveTable(plan)
    return PlainProgress(plan)
