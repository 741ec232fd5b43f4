"""The roadmap check: latency <= 30 ms per 100 amino acids (on an H100), case by case.

    python -m af3_esm2.target RUN_DIR [RUN_DIR...] [--ms 30] [--markdown]

Reads every ``summary.csv`` under the folders (an ``af3 bench`` run, or a ``gpu_suite.sh`` runs
folder), keeps the ``esm2`` cases and prints, per case, the size, dtype, weights, batch, residues,
device, the median ``ms_per_100_residues`` and the verdict against ``--ms``. Exit status 1 when a
case misses the target or failed, 2 when no esm2 case was found. Light: no torch.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

COLUMNS = ("size", "dtype", "weights", "batch", "residues", "device", "ms/100 res", "residues/s", "verdict")


def rows(folders: list[Path], target_ms: float) -> list[dict]:
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("summary.csv")):
            with path.open(newline="") as fh:
                for r in csv.DictReader(fh):
                    if r.get("plugin") != "esm2":
                        continue
                    s = json.loads(r.get("settings") or "{}")
                    value = r.get("ms_per_100_residues") or ""
                    if r.get("status") != "ok" or not value:
                        verdict = f"failed ({r.get('status')})"
                    else:
                        verdict = "meets" if float(value) <= target_ms else "misses"
                    found.append({
                        "size": s.get("size", ""), "dtype": s.get("dtype", ""), "weights": s.get("weights", ""),
                        "batch": s.get("batch", ""), "residues": r.get("seq_len", ""),
                        "device": r.get("gpu_name") or r.get("device", ""),
                        "ms/100 res": f"{float(value):.2f}" if value else "",
                        "residues/s": f"{float(r['residues_per_s']):.0f}" if r.get("residues_per_s") else "",
                        "verdict": verdict,
                    })
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m af3_esm2.target", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--ms", type=float, default=30.0, help="target latency per 100 residues, ms (default 30)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    found = rows(args.folders, args.ms)
    if not found:
        print("no esm2 case in a summary.csv under " + ", ".join(map(str, args.folders)), file=sys.stderr)
        return 2
    table = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in found]
    if args.markdown:
        print("| " + " | ".join(table[0]) + " |\n|" + "---|" * len(COLUMNS))
        for line in table[1:]:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
    bad = [r for r in found if r["verdict"] != "meets"]
    print(f"{len(found) - len(bad)} of {len(found)} cases meet <= {args.ms:g} ms per 100 residues", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
