"""Print one line per case of one or more af3 bench results folders (searched recursively).

    python scripts/summarize.py RESULTS_DIR [RESULTS_DIR...]

Settings a plugin resolves in the worker ("auto" timing and precision of the kernels) are shown as
resolved, from the rows' ``info``.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

SHOW_SETTINGS = ("kernel", "variant", "impl", "msa_impl", "dtype", "precision", "timing", "S", "C", "attention",
                 "recycles", "diffusion_steps", "samples")


def _gib(text: str) -> str:
    try:
        return f"{float(text) / 2**30:.2f}"
    except (TypeError, ValueError):
        return "-"


def _ms(text: str) -> str:
    try:
        return f"{float(text):.4g}"
    except (TypeError, ValueError):
        return "-"


def _resolved(folder: Path) -> dict[str, dict]:
    """case_id -> the facts the runner reported (its setup's info), from the first row of each case."""
    facts: dict[str, dict] = {}
    for jsonl in folder.glob("*.jsonl"):
        for line in jsonl.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            facts.setdefault(row.get("case_id"), row.get("info") or {})
    return facts


def main(paths: list[str]) -> int:
    header = ("run", "plugin", "mode", "preset", "settings", "kernels", "L", "status", "median_ms", "compile_ms",
              "nvml_GiB", "fw_GiB", "floor_frac", "in_process")
    print(" | ".join(header))
    for path in paths:
        for summary in sorted(Path(path).rglob("summary.csv")):
            folder = summary.parent
            facts = _resolved(folder)
            try:
                in_process = json.loads((folder / "meta.json").read_text()).get("in_process", False)
            except (OSError, ValueError):
                in_process = False
            with open(summary, newline="", encoding="utf-8", errors="replace") as f:
                for r in csv.DictReader(f):
                    settings = json.loads(r.get("settings") or "{}")
                    info = facts.get(r.get("case_id"), {})
                    for key in ("precision", "timing"):
                        if key in settings and key in info:
                            settings[key] = info[key]  # as the worker resolved it (None: not applicable)
                    shown = ",".join(f"{k}={settings[k]}" for k in SHOW_SETTINGS if settings.get(k) is not None)
                    kernels = r.get("kernels") or str(info.get("kernels") or "")
                    print(" | ".join([folder.name, r["plugin"], r["mode"], r.get("preset") or "", shown, kernels,
                                      r["seq_len"],
                                      r["status"], _ms(r["median_ms"]), _ms(r["compile_ms"]),
                                      _gib(r["nvml_peak_gpu_bytes"]), _gib(r["framework_peak_bytes"]),
                                      _ms(r.get("fraction_of_floor")), "yes" if in_process else ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
