"""One benchmark run: every planned case in its own worker, rows streamed to disk, a summary,
metadata and plots at the end (also after Ctrl-C, for what finished)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from af3core import environment, results
from af3core.host import CaseResult, run_case
from af3core.plan import Plan


@dataclass
class RunOutcome:
    results: list[CaseResult]
    interrupted: bool = False
    largest_fit: dict[str, int | None] = field(default_factory=dict)  # --until-oom: group -> largest seq_len

    @property
    def failed(self) -> list[CaseResult]:
        # In an --until-oom sweep, the OOM that ends a group is the expected answer, not a failure.
        return [r for r in self.results if r.failed and not (r.status == "oom" and r.planned.group in self.largest_fit)]


def run_plan(plan: Plan, out_dir: Path, timeout_s: float | None, view, command_line: list[str],
             source_versions: dict[str, str | None]) -> RunOutcome:
    run_id = out_dir.name
    host = environment.host_facts()
    meta: dict[str, Any] = {
        "run_id": run_id,
        "command_line": command_line,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": plan.device.label,
        "plugins": {c.plugin.name: {"distribution": c.plugin.distribution, "version": c.plugin.version,
                                    "kind": c.plugin.kind, "engine_source_version": source_versions.get(c.plugin.name)}
                    for c in plan.cases},
        "skipped": [{"plugin": n, "reason": r} for n, r in plan.skipped],
        **environment.full_meta(),
    }
    results.write_meta(out_dir, meta)  # written first: a crashed run still says what it was
    writer = results.ResultWriter(out_dir, run_id, host, source_versions)
    outcome = RunOutcome([])
    stopped_groups: set[str] = set()
    fits: dict[str, int | None] = {}
    for name, reason in plan.skipped:
        view.skipped(name, reason)
    view.start()
    try:
        for planned in plan.cases:
            if plan.until_oom and planned.group in stopped_groups:
                continue  # this setting already failed (out of memory, or otherwise) at a smaller size
            result = run_case(planned, out_dir / "logs", timeout_s, on_row=lambda r, row: (writer.write(r, row),
                                                                                             view.row(r, row)),
                              on_update=view.update)
            outcome.results.append(result)
            view.done(result)
            if result.status == "interrupted":
                raise KeyboardInterrupt
            if plan.until_oom:
                if result.status == "ok":
                    fits[planned.group] = planned.case.seq_len
                else:  # larger sizes would fail too; only an OOM answers "largest that fits"
                    stopped_groups.add(planned.group)
                    if result.status == "oom":
                        outcome.largest_fit[planned.group] = fits.get(planned.group)
    except KeyboardInterrupt:
        outcome.interrupted = True
        # a case cut short by Ctrl-C is already in outcome.results with its row written
    finally:
        view.stop()
        writer.close()
        rows = [results.summary_row(r, run_id, host, source_versions) for r in outcome.results]
        results.write_summary(out_dir, rows)
        meta.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "interrupted": outcome.interrupted,
                     "n_cases": len(outcome.results),
                     "n_failed": len(outcome.failed),
                     "largest_fit": [{"group": g, "largest_seq_len": v} for g, v in outcome.largest_fit.items()]})
        if plan.until_oom:  # sweeps that never hit OOM report the largest size they ran
            for group, largest in fits.items():
                if group not in outcome.largest_fit:
                    meta["largest_fit"].append({"group": group, "largest_seq_len": largest, "no_oom": True})
        results.write_meta(out_dir, meta)
    return outcome
