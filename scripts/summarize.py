"""Print a short table of one or more af3 bench output folders (their summary.csv files).

    python scripts/summarize.py RESULTS_DIR [RESULTS_DIR...]   (folders are searched recursively)
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

SHOW_SETTINGS = ("impl", "msa_impl", "dtype", "precision", "S", "C", "attention", "recycles", "diffusion_steps", "samples")


def _gib(text: str) -> str:
    try:
        return f"{float(text) / 2**30:.2f}"
    except ValueError:
        return "-"


def _ms(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return "-"
    return f"{value:.4g}"


def main(paths: list[str]) -> int:
    rows = []
    for path in paths:
        for summary in sorted(Path(path).rglob("summary.csv")):
            with open(summary, newline="") as f:
                rows.extend(csv.DictReader(f))
    header = ("plugin", "mode", "preset", "settings", "L", "status", "median_ms", "compile_ms", "nvml_GiB",
              "fw_GiB", "floor_frac")
    print(" | ".join(header))
    for r in rows:
        settings = json.loads(r.get("settings") or "{}")
        if settings.get("dtype") != "fp32":
            settings.pop("precision", None)  # the kernels' precision applies to fp32 inputs only
        short = ",".join(f"{k}={settings[k]}" for k in SHOW_SETTINGS if k in settings)
        print(" | ".join([r["plugin"], r["mode"], r.get("preset") or "", short, r["seq_len"], r["status"],
                          _ms(r["median_ms"]), _ms(r["compile_ms"]), _gib(r["nvml_peak_gpu_bytes"]),
                          _gib(r["framework_peak_bytes"]), _ms(r.get("fraction_of_floor", ""))]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
