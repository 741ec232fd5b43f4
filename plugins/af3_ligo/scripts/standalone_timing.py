#!/usr/bin/env python
"""Time Ligo's AlphaFold 3 without the harness: same graph as ``af3 bench --plugin ligo``, plain loop.

It builds the model and batch with the plugin's own builder (``af3_ligo.build.prepare``, which
imports nothing of af3core), then times passes in this process with ``time.perf_counter`` around
``model(batch, train=False)`` under ``torch.no_grad()`` and a CUDA synchronise. No worker
subprocess, no result pipe, no finiteness check. Used to check that the harness's median agrees
with a bare loop (within 3%) on the same machine in the same session.

    python plugins/af3_ligo/scripts/standalone_timing.py --preset paper --mode trunk --tokens 256 --passes 5
    python plugins/af3_ligo/scripts/standalone_timing.py --preset paper --mode full --tokens 256 --passes 3 \
        --set msa_impl=fused

Prints one line per pass and a final JSON line: compile_ms (first pass), pass_ms, median_ms,
peak_bytes (torch.cuda.max_memory_allocated over the whole run).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

from af3_ligo import build
from af3_ligo.presets import DEFAULTS, PRESETS


def parse_sets(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--set takes KEY=VALUE, got {pair!r}")
        if key in DEFAULTS:
            kind = type(DEFAULTS[key])
            if kind is bool:
                out[key] = value.lower() in ("1", "true", "yes")
            else:
                out[key] = value if kind is str else kind(value)
        elif key.startswith("config."):
            out[key] = value  # parsed as yaml by af3_ligo.config
        else:
            sys.exit(f"unknown setting {key!r}: one of {sorted(DEFAULTS)} or config.<dotted.path>")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    ap.add_argument("--mode", choices=("toy", "trunk", "full"), default="trunk")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--passes", type=int, default=5, help="timed passes after the first (compile) pass")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = {**DEFAULTS, **PRESETS[args.preset], **parse_sets(args.set)}
    t0 = time.perf_counter()
    built = build.prepare(settings, args.mode, args.tokens, device)
    setup_ms = (time.perf_counter() - t0) * 1e3
    model, batch = built.model, built.batch
    autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16) if settings["dtype"] == "bf16"
                else torch.autocast(device_type=device, enabled=False))

    def one_pass() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            out = model(batch, train=False)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - start) * 1e3
        del out
        return elapsed

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    compile_ms = one_pass()
    print(f"compile (first pass): {compile_ms:.1f} ms", flush=True)
    times = []
    for i in range(args.passes):
        times.append(one_pass())
        print(f"pass {i + 1}/{args.passes}: {times[-1]:.1f} ms", flush=True)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    print(json.dumps({
        "preset": args.preset, "mode": args.mode, "tokens": args.tokens, "device": device,
        "msa_impl": settings["msa_impl"], "dtype": settings["dtype"],
        "setup_ms": round(setup_ms, 1), "compile_ms": round(compile_ms, 1),
        "pass_ms": [round(t, 1) for t in times], "median_ms": round(statistics.median(times), 1),
        "peak_bytes": peak, "engine_source_version": built.facts["engine_source_version"],
        "n_params": built.facts["n_params"],
    }))


if __name__ == "__main__":
    main()
