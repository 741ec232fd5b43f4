"""One benchmark run: each planned case in its own worker (or in-process), every row written the
moment it exists, then the summary and the metadata, also when the run is stopped.

Ctrl-C, SIGTERM (``timeout``, Slurm, systemd) and SIGHUP all stop a run the same way: the worker
of the current case is killed with its process group, the rows written so far stay, the summary
covers what finished, and the exit status says which signal it was (130, 143, 129).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from af3core import inprocess, provenance, slots, supervisor
from af3core.errors import Interrupted, ResultsWriteError
from af3core.outdir import OutputFolder
from af3core.plan import Plan, PlannedCase
from af3core.record import SUMMARY_COLUMNS, CaseRecord, RunContext
from af3core.slots import Slot
from af3core.writers import JsonlWriter, reorder_jsonl, write_meta, write_summary

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RunOutcome:
    records: list[CaseRecord] = field(default_factory=list)
    stopped_by: int | None = None  # the signal that stopped the run
    write_error: str = ""  # the results folder stopped taking writes
    largest_fit: dict[str, int | None] = field(default_factory=dict)  # --until-oom: group -> largest seq_len
    # --until-oom groups that ended without an OOM (stopped, out of sizes, or another failure): the
    # largest size that ran is only a lower bound
    fitted_no_oom: dict[str, int] = field(default_factory=dict)

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
             in_process: bool = False, executor=None) -> RunOutcome:
    """``executor``: None runs each case's worker here (af3core.supervisor); else an object with
    ``slots``, ``run_case(record, log_path, timeout_s, on_row, on_update, stop_reason)`` and
    ``cancel_all()`` (af3core.rayexec.RayExecutor)."""
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
    if executor is not None:
        plan.slots = [Slot(f"ray-{n}") for n in range(executor.slots)]
        meta["executor"] = {"name": "ray", "slots": executor.slots}
    if len(plan.slots) > 1:
        meta["slots"] = [slot.label for slot in plan.slots]
    outcome = RunOutcome()
    writer = JsonlWriter(out_dir, on_new_file=folder.track)
    # Slots run cases in threads of this process; the host stays the only writer, one call at a time.
    lock = threading.RLock()

    def on_row(record: CaseRecord, row: dict[str, Any]) -> None:
        with lock:
            writer.write(record.planned.case.plugin, row)
            view.row(record, row)

    def on_update(record: CaseRecord) -> None:
        with lock:
            view.update(record)

    def run_one(planned: PlannedCase, slot: Slot, stop_reason) -> CaseRecord:
        record = CaseRecord(slots.pin(planned, slot), context)
        with lock:
            outcome.records.append(record)
        if in_process:
            inprocess.run_case(record, on_row, on_update)
        else:
            log_path = folder.logs / f"{planned.case_id}.log"
            with lock:
                try:
                    folder.logs.mkdir(exist_ok=True)
                except OSError as exc:
                    raise ResultsWriteError(f"cannot write {folder.logs}: {exc.strerror or exc}") from None
                folder.track(log_path)
            run = executor.run_case if executor is not None else supervisor.run_case
            run(record, log_path, timeout_s, on_row, on_update, stop_reason)
        with lock:
            view.done(record)
        return record

    fits: dict[str, int | None] = {}
    with StopSignals(raise_now=in_process) as signals:
        try:
            folder.track(out_dir / "meta.json")
            write_meta(out_dir, meta)  # written first: a crashed run still says what it was
            for name, reason in plan.skipped:
                view.skipped(name, reason)
            view.start()
            if len(plan.slots) > 1 or executor is not None:
                _run_in_slots(plan, run_one, signals, executor)
            else:
                _run_in_order(plan, run_one, signals, outcome, fits)
        except Interrupted:
            pass  # in-process: the case's rows are written; the summary follows
        except ResultsWriteError as exc:
            outcome.write_error = str(exc)
        finally:
            outcome.stopped_by = signals.signum
            view.stop()
            writer.close()
            if len(plan.slots) > 1 or executor is not None:
                _in_plan_order(plan, outcome, writer)
            if plan.until_oom:
                outcome.fitted_no_oom = {g: v for g, v in fits.items() if g not in outcome.largest_fit}
            _write_summary_and_meta(folder, outcome, meta)
    return outcome


def _run_in_order(plan: Plan, run_one, signals: StopSignals, outcome: RunOutcome, fits: dict) -> None:
    """One case after another; an --until-oom sweep stops a setting at its first failure."""
    stopped_groups: set[str] = set()
    for planned in plan.cases:
        if signals.signum is not None:
            break
        if plan.until_oom and planned.group in stopped_groups:
            continue  # this setting already failed (out of memory, or otherwise) at a smaller size
        record = run_one(planned, plan.slots[0], signals.reason)
        if plan.until_oom:
            if record.status == "ok":
                fits[planned.group] = planned.case.seq_len
            elif record.status != "interrupted":  # larger sizes would fail too
                stopped_groups.add(planned.group)
                if record.status == "oom":  # only an OOM answers "largest that fits"
                    outcome.largest_fit[planned.group] = fits.get(planned.group)


def _run_in_slots(plan: Plan, run_one, signals: StopSignals, executor=None) -> None:
    """Each slot takes the next case in plan order until none is left or the run stops. The main
    thread waits in short joins so that it keeps taking signals; a stop reaches every slot's
    supervisor through ``signals.reason``, which kills its worker."""
    cases = iter(plan.cases)
    take = threading.Lock()
    errors: list[BaseException] = []

    def work(slot: Slot) -> None:
        try:
            while signals.signum is None and not errors:
                with take:
                    planned = next(cases, None)
                if planned is None:
                    return
                run_one(planned, slot, lambda: signals.reason() or ("stopped: another slot failed" if errors else None))
        except BaseException as exc:  # noqa: BLE001 - the main thread re-raises the first one
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,), name=f"af3-slot-{slot.label}", daemon=True)
               for slot in plan.slots]
    for thread in threads:
        thread.start()
    cancelled = False
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
            if executor is not None and signals.signum is not None and not cancelled:
                executor.cancel_all()  # remote cases cannot see this process's stop request
                cancelled = True
    if errors:
        raise errors[0]


def _in_plan_order(plan: Plan, outcome: RunOutcome, writer: JsonlWriter) -> None:
    """After a run in slots: records, and each plugin's JSONL rows, in plan order (a case's rows
    contiguous), as a run one case at a time leaves them. The rows were written as they came, so a
    host that dies before this keeps them all, interleaved."""
    order = {planned.case_id: index for index, planned in enumerate(plan.cases)}
    outcome.records.sort(key=lambda record: order.get(record.planned.case_id, len(order)))
    for path in writer.paths():
        try:
            reorder_jsonl(path, order)
        except ResultsWriteError as exc:
            outcome.write_error = outcome.write_error or str(exc)


def _summary_row(record: CaseRecord) -> dict[str, Any]:
    try:
        return record.summary_row()
    except Exception as exc:  # noqa: BLE001 - one odd record must not cost the run its summary
        return {"run_id": record.context.run_id, "case_id": record.planned.case_id,
                "plugin": record.planned.case.plugin, "status": record.status,
                "error": f"{record.error} (summary row incomplete: {type(exc).__name__}: {exc})"}


def _write_summary_and_meta(folder: OutputFolder, outcome: RunOutcome, meta: dict[str, Any]) -> None:
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
        # sweeps that never hit OOM report the largest size they ran
        meta["largest_fit"] += [{"group": g, "largest_seq_len": v, "no_oom": True}
                                for g, v in outcome.fitted_no_oom.items()]
        write_meta(out_dir, meta)
    except ResultsWriteError as exc:
        outcome.write_error = outcome.write_error or str(exc)
