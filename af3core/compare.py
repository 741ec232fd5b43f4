"""``af3 compare``: two runs, or two settings of one run, case by case, with a verdict.

    af3 compare RUN_A RUN_B [--threshold 5%]        cases present in both runs (same plugin, mode,
                                                     preset, size and settings)
    af3 compare RUN --by KEY[=BASE]                  in one run, cases that differ only in setting KEY,
                                                     each against the one with KEY=BASE (default:
                                                     the first value met)

For each pair: the ratio of medians (B / A: below 1 is faster), a 95% interval of that ratio from
the raw timed passes (scipy's bootstrap, resampling each side's passes), and a verdict: ``faster``
or ``slower`` when the interval lies wholly on one side of 1 and the ratio is beyond the threshold,
else ``no significant change``; ``too few passes`` when a side has fewer than 2. Exit status 1 when
any pair is ``slower`` (usable in CI), 0 otherwise, 2 for a usage error.

Reads only the folders' ``<plugin>.jsonl`` pass rows (ok, not warm-up), so any finished or
interrupted run can be compared.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from af3core.errors import UsageError

CONFIDENCE = 0.95
RESAMPLES = 2000
FASTER, SLOWER, SAME, FEW = "faster", "slower", "no significant change", "too few passes"


@dataclass
class Pair:
    label: str  # what the two sides share (plugin, mode, size, settings)
    side_a: str  # what tells the sides apart: a run folder, or KEY=value
    side_b: str
    times_a: list[float]
    times_b: list[float]
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    verdict: str = SAME


def parse_threshold(text: str) -> float:
    """"5%" or "0.05" -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--threshold {text!r}: expected a percentage such as 5% (or a fraction, 0.05)") from None
    if not 0 <= value < 1:
        raise UsageError(f"--threshold {text!r}: expected between 0% and 100%")
    return value


def load_passes(folder: Path) -> dict[tuple, dict]:
    """case identity -> {"settings": dict, "label": str, "times": [ms...]} of the timed passes in
    ``folder``'s JSONL files. UsageError when the folder holds no af3 results."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (give the results folder of an af3 bench run)")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise UsageError(f"{folder}: no <plugin>.jsonl here (is this an af3 bench output folder?)")
    cases: dict[tuple, dict] = {}
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise UsageError(f"{path}: cannot be read ({exc})") from None
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: the rest of the file still counts
            if not isinstance(row, dict) or not row.get("ok") or row.get("warmup"):
                continue
            settings = row.get("settings") or {}
            key = (row.get("plugin"), row.get("mode"), row.get("preset"), row.get("seq_len"),
                   json.dumps(settings, sort_keys=True, default=str))
            entry = cases.setdefault(key, {"settings": settings, "times": []})
            elapsed = row.get("elapsed_ms")
            if isinstance(elapsed, (int, float)) and np.isfinite(elapsed):
                entry["times"].append(float(elapsed))
    return cases


def _label(key: tuple, settings: dict, leave_out: str | None = None) -> str:
    plugin, mode, preset, seq_len, _ = key
    shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()) if k != leave_out)
    return f"{plugin} {mode} {preset or ''} L={seq_len} [{shown}]".replace("  ", " ")


def pairs_of_runs(a: Path, b: Path) -> list[Pair]:
    cases_a, cases_b = load_passes(a), load_passes(b)
    common = [k for k in cases_a if k in cases_b]
    if not common:
        raise UsageError(f"{a} and {b} have no case in common (same plugin, mode, preset, size and settings)")
    return [Pair(_label(k, cases_a[k]["settings"]), str(a), str(b), cases_a[k]["times"], cases_b[k]["times"])
            for k in common]


def pairs_by_setting(run: Path, by: str) -> list[Pair]:
    key_name, _, base = by.partition("=")
    key_name, base = key_name.strip(), base.strip() or None
    cases = load_passes(run)
    groups: dict[tuple, dict[str, tuple]] = {}
    for key, entry in cases.items():
        settings = entry["settings"]
        if key_name not in settings:
            continue
        rest = {k: v for k, v in settings.items() if k != key_name}
        group = (*key[:4], json.dumps(rest, sort_keys=True, default=str))
        groups.setdefault(group, {})[str(settings[key_name])] = (key, entry)
    if not groups:
        raise UsageError(f"--by {key_name}: no case of {run} has a setting {key_name!r}")
    pairs = []
    for members in groups.values():
        values = list(members)
        baseline = base if base is not None else values[0]
        if baseline not in members:
            continue
        ref_key, ref = members[baseline]
        for value in values:
            if value == baseline:
                continue
            key, entry = members[value]
            pairs.append(Pair(_label(key, entry["settings"], key_name), f"{key_name}={baseline}",
                              f"{key_name}={value}", ref["times"], entry["times"]))
    if not pairs:
        raise UsageError(f"--by {by}: no two cases of {run} differ only in {key_name}"
                         + (f" with one of them {key_name}={base}" if base else ""))
    return pairs


def judge(pair: Pair, threshold: float) -> Pair:
    """Fill in the ratio of medians (B / A), its interval and the verdict."""
    a, b = np.asarray(pair.times_a), np.asarray(pair.times_b)
    if len(a) == 0 or len(b) == 0:
        pair.verdict = FEW
        return pair
    pair.ratio = float(np.median(b) / np.median(a))
    if len(a) < 2 or len(b) < 2:
        pair.verdict = FEW
        return pair
    from scipy import stats

    result = stats.bootstrap((a, b), lambda x, y, axis=-1: np.median(y, axis=axis) / np.median(x, axis=axis),
                             n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
                             vectorized=True, paired=False, random_state=np.random.default_rng(0))
    pair.low, pair.high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if pair.high < 1 and pair.ratio < 1 - threshold:
        pair.verdict = FASTER
    elif pair.low > 1 and pair.ratio > 1 + threshold:
        pair.verdict = SLOWER
    else:
        pair.verdict = SAME
    return pair


HEADER = ("case", "A", "B", "median A (ms)", "median B (ms)", "B / A", "95% interval", "passes A/B", "verdict")


def table_rows(pairs: list[Pair]) -> list[tuple[str, ...]]:
    def ms(times):
        return f"{np.median(times):.4g}" if times else "-"

    rows = []
    for p in pairs:
        interval = f"{p.low:.3f}-{p.high:.3f}" if p.low is not None else "-"
        rows.append((p.label, p.side_a, p.side_b, ms(p.times_a), ms(p.times_b),
                     f"{p.ratio:.3f}" if p.ratio is not None else "-", interval,
                     f"{len(p.times_a)}/{len(p.times_b)}", p.verdict))
    return rows


def print_table(pairs: list[Pair], markdown: bool, threshold: float) -> None:
    rows = table_rows(pairs)
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for row in rows:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"af3 compare (threshold {threshold:.0%}; B / A below 1 is faster)")
    for name in HEADER:
        table.add_column(name, overflow="fold")
    styles = {FASTER: "green", SLOWER: "red"}
    for row, pair in zip(rows, pairs):
        table.add_row(*row, style=styles.get(pair.verdict))
    Console(width=max(160, Console().width)).print(table)


def write_csv(pairs: list[Pair], path: Path) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows(table_rows(pairs))
    except OSError as exc:
        raise UsageError(f"--csv {path}: cannot be written ({exc})") from None


def run_compare(runs: list[Path], by: str | None, threshold_text: str, markdown: bool, csv_path: Path | None) -> int:
    threshold = parse_threshold(threshold_text)
    if by is not None:
        if len(runs) != 1:
            raise UsageError("--by compares settings within ONE run: give one results folder")
        pairs = pairs_by_setting(runs[0], by)
    else:
        if len(runs) != 2:
            raise UsageError("give two results folders (RUN_A RUN_B), or one with --by KEY")
        pairs = pairs_of_runs(runs[0], runs[1])
    for pair in pairs:
        judge(pair, threshold)
    print_table(pairs, markdown, threshold)
    if csv_path is not None:
        write_csv(pairs, csv_path)
    slower = sum(p.verdict == SLOWER for p in pairs)
    counts = {v: sum(p.verdict == v for p in pairs) for v in (FASTER, SLOWER, SAME, FEW)}
    print(", ".join(f"{n} {v}" for v, n in counts.items() if n), file=sys.stderr)
    return 1 if slower else 0
