"""One benchmark run: each planned case in its own worker (or in-process), every row written the
moment it exists, then the summary and the metadata, also when the run is stopped.

Ctrl-C, SIGTERM (``timeout``, Slurm, systemd) and SIGHUP all stop a run the same way: the worker
of the current case is killed with its process group, the rows written so far stay, the summary
covers what finished, and the exit status says which signal it was (130, 143, 129).
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from af3core import inprocess, provenance, supervisor
from af3core.errors import Interrupted, ResultsWriteError
from af3core.outdir import OutputFolder
from af3core.plan import Plan
from af3core.record import SUMMARY_COLUMNS, CaseRecord, RunContext
from af3core.writers import JsonlWriter, write_meta, write_summary

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RunOutcome:
    records: list[CaseRecord] = field(default_factory=list)
    stopped_by: int | None = None  # the signal that stopped the run
    write_error: str = ""  # the results folder stopped taking writes
    largest_fit: dict[str, int | None] = field(default_factory=dict)  # --until-oom: group -> largest seq_len

    @property
    def failed(self) -> list[CaseRecord]:
        # In an --until-oom sweep, the OOM that ends a group is the expected answer, not a failure.
        return [r for r in self.records
                if r.failed and not (r.status == "oom" and r.planned.group in self.largest_fit)]


class StopSignals:
    """Turns the stop signals into a request the run loop sees (``reason``). In-process runs also
    raise Interrupted at once, since no worker can be killed for them. Later signals are ignored
    while the run stops (it stops within a fraction of a second)."""

    def __init__(self, raise_now: bool):
        self.raise_now = raise_now
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        print(f"\naf3: {signal.Signals(signum).name}: stopping; the summary covers what finished",
              file=sys.stderr, flush=True)
        if self.raise_now:
            raise Interrupted(signum)

    def reason(self) -> str | None:
        return None if self.signum is None else Interrupted(self.signum).reason

    def __enter__(self) -> "StopSignals":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_plan(plan: Plan, folder: OutputFolder, timeout_s: float | None, view, command_line: list[str],
             in_process: bool = False) -> RunOutcome:
    out_dir = folder.path
    context = RunContext(out_dir.name, provenance.host_facts(), plan.source_versions)
    libraries = sorted({lib for c in plan.cases for lib in c.plugin.libraries})
    meta: dict[str, Any] = {
        "run_id": context.run_id,
        "command_line": command_line,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": plan.device.label,
        "in_process": in_process,
        "plugins": {c.plugin.name: {"distribution": c.plugin.distribution, "version": c.plugin.version,
                                    "kind": c.plugin.kind, "libraries": list(c.plugin.libraries),
                                    "engine_source_version": plan.source_versions.get(c.plugin.name)}
                    for c in plan.cases},
        "skipped": [{"plugin": n, "reason": r} for n, r in plan.skipped],
        **provenance.full_meta(libraries),
    }
    outcome = RunOutcome()
    writer = JsonlWriter(out_dir, on_new_file=folder.track)

    def on_row(record: CaseRecord, row: dict[str, Any]) -> None:
        writer.write(record.planned.case.plugin, row)
        view.row(record, row)

    stopped_groups: set[str] = set()
    fits: dict[str, int | None] = {}
    with StopSignals(raise_now=in_process) as signals:
        try:
            folder.track(out_dir / "meta.json")
            write_meta(out_dir, meta)  # written first: a crashed run still says what it was
            for name, reason in plan.skipped:
                view.skipped(name, reason)
            view.start()
            for planned in plan.cases:
                if signals.signum is not None:
                    break
                if plan.until_oom and planned.group in stopped_groups:
                    continue  # this setting already failed (out of memory, or otherwise) at a smaller size
                record = CaseRecord(planned, context)
                outcome.records.append(record)
                if in_process:
                    inprocess.run_case(record, on_row, view.update)
                else:
                    log_path = folder.logs / f"{planned.case_id}.log"
                    try:
                        folder.logs.mkdir(exist_ok=True)
                    except OSError as exc:
                        raise ResultsWriteError(f"cannot write {folder.logs}: {exc.strerror or exc}") from None
                    folder.track(log_path)
                    supervisor.run_case(record, log_path, timeout_s, on_row, view.update, signals.reason)
                view.done(record)
                if plan.until_oom:
                    if record.status == "ok":
                        fits[planned.group] = planned.case.seq_len
                    elif record.status != "interrupted":  # larger sizes would fail too
                        stopped_groups.add(planned.group)
                        if record.status == "oom":  # only an OOM answers "largest that fits"
                            outcome.largest_fit[planned.group] = fits.get(planned.group)
        except Interrupted:
            pass  # in-process: the case's rows are written; the summary follows
        except ResultsWriteError as exc:
            outcome.write_error = str(exc)
        finally:
            outcome.stopped_by = signals.signum
            view.stop()
            writer.close()
            _write_summary_and_meta(folder, outcome, meta, fits, plan.until_oom)
    return outcome


def _summary_row(record: CaseRecord) -> dict[str, Any]:
    try:
        return record.summary_row()
    except Exception as exc:  # noqa: BLE001 - one odd record must not cost the run its summary
        return {"run_id": record.context.run_id, "case_id": record.planned.case_id,
                "plugin": record.planned.case.plugin, "status": record.status,
                "error": f"{record.error} (summary row incomplete: {type(exc).__name__}: {exc})"}


def _write_summary_and_meta(folder: OutputFolder, outcome: RunOutcome, meta: dict[str, Any],
                            fits: dict[str, int | None], until_oom: bool) -> None:
    out_dir = folder.path
    try:
        folder.track(out_dir / "summary.csv")
        write_summary(out_dir, [_summary_row(r) for r in outcome.records], SUMMARY_COLUMNS)
        meta.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "interrupted": outcome.stopped_by is not None,
                     "stopped_by": None if outcome.stopped_by is None else signal.Signals(outcome.stopped_by).name,
                     "write_error": outcome.write_error or None,
                     "n_cases": len(outcome.records), "n_failed": len(outcome.failed),
                     "largest_fit": [{"group": g, "largest_seq_len": v} for g, v in outcome.largest_fit.items()]})
        if until_oom:  # sweeps that never hit OOM report the largest size they ran
            meta["largest_fit"] += [{"group": g, "largest_seq_len": v, "no_oom": True}
                                    for g, v in fits.items() if g not in outcome.largest_fit]
        write_meta(out_dir, meta)
    except ResultsWriteError as exc:
        outcome.write_error = outcome.write_error or str(exc)
