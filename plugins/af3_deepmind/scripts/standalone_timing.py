#!/usr/bin/env python
"""Time DeepMind's AF3 graph without the af3-bench harness, to cross-check the harness's numbers.

Builds exactly the graph the ``deepmind`` plugin builds (same source, batch, parameters, config,
through ``af3_deepmind.engine.build``), then times it the way DeepMind's ``run_alphafold.py``
runs it: ``jax.jit(forward_fn.apply)`` called on device-resident inputs, outputs blocked on.
No worker, no subprocess, no pipe. Prints one line, e.g.

    standalone deepmind mode=full preset=default tokens=1024 device=cuda passes=3 compile_s=61.2 median_ms=32410.5 min_ms=32398.0 times_ms=[...]

Example (the GPU cross-check; run in the same session as the harness run):

    python plugins/af3_deepmind/scripts/standalone_timing.py --mode full --preset default \\
        --seq-len 1024 --device cuda --passes 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse_set(items: list[str], defaults: dict) -> dict:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(f"--set {item!r}: unknown key (known: {', '.join(defaults)})")
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        else:
            out[key] = type(default)(raw)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="full", choices=("toy", "trunk", "full"))
    parser.add_argument("--preset", default="default", choices=("small", "default"))
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--finite-flag", action="store_true",
        help="time the harness's function (forward plus its fused all-finite reduction) instead of the bare forward",
    )
    args = parser.parse_args(argv)

    from af3_deepmind.settings import PRESETS, SETTINGS

    settings = {k: s.default for k, s in SETTINGS.items()}
    settings.update(PRESETS[args.preset])
    settings.update(_parse_set(args.set, settings))

    # The same environment the plugin gives its workers, unless the caller set it explicitly.
    os.environ.setdefault("XLA_FLAGS", "--xla_gpu_enable_triton_gemm=false")
    from af3_deepmind import engine

    engine.apply_memory_env(bool(settings["preallocate"]))
    built = engine.build(args.mode, args.seq_len, settings, args.device)

    import jax

    fn = engine.with_finite_flag(built.forward.apply) if args.finite_flag else built.forward.apply
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(built.params, built.key, built.batch).compile()
    compile_s = time.perf_counter() - t0

    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        out = compiled(built.params, built.key, built.batch)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) * 1e3)
        del out
    stats = built.device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    print(
        f"standalone deepmind mode={args.mode} preset={args.preset} tokens={args.seq_len} device={args.device} "
        f"passes={args.passes} finite_flag={args.finite_flag} source={built.facts['engine_source_version']} "
        f"attention={built.facts['attention']} compile_s={compile_s:.1f} median_ms={statistics.median(times):.1f} "
        f"min_ms={min(times):.1f} jax_peak_bytes={peak} times_ms=[{', '.join(f'{t:.1f}' for t in times)}]",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
