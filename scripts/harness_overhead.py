"""How much the harness itself adds to a pass (a benchmark, not a test).

1. Per-pass overhead: the test plugin's near-empty step run for many passes through the real
   harness; overhead = gap between consecutive pass starts minus the pass's own time (frames,
   timing and the host's bookkeeping, which the worker waits on when the pipe fills).
2. With --cuda: a fixed ~1 ms CUDA workload (one fp32 3072x3072 matmul, TF32 off) timed by the
   harness and by triton.testing.do_bench in the same session, and by bare loops in this process
   that tell apart where a gap comes from: do_bench flushes L2 and queues its repetitions back to
   back (the GPU never waits for the host); a harness pass is synchronous (launch, then wait), so
   the GPU starts each pass idle and the pass's wall time includes the launch and the wake-up.

    python scripts/harness_overhead.py [--cuda] [--passes N] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATMUL_N = 3072


def install_test_plugin(site: Path) -> None:
    src = shutil.copytree(ROOT / "tests/plugins/af3_testplugin", site.parent / "src")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(src)], check=True)


def bench(site: Path, out: Path, *args: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "testplugin", "--out", str(out), "--plain",
                    "--no-plot", *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]


def per_pass_overhead(site: Path, tmp: Path, passes: int) -> dict:
    rows = bench(site, tmp / "overhead", "--device", "cpu", "--seq-len", "1", "--passes", str(passes))
    gaps_us = [((b["start_ts"] - a["start_ts"]) * 1e3 - a["elapsed_ms"]) * 1e3 for a, b in zip(rows, rows[1:])]
    # The mean matters as much as the median: when the host's bookkeeping is slower than the worker,
    # the pipe fills and the worker stalls in bursts that a median would hide. The stalls (gaps over
    # 1 ms) say so: how many, how far apart in passes (a full pipe's worth), and their share.
    stalls = [i for i, gap in enumerate(gaps_us) if gap > 1000]
    spacing = [b - a for a, b in zip(stalls, stalls[1:])]
    return {"passes": passes, "overhead_us_median": statistics.median(gaps_us),
            "overhead_us_mean": statistics.fmean(gaps_us),
            "overhead_us_p95": statistics.quantiles(gaps_us, n=20)[18],
            "step_us_median": statistics.median(r["elapsed_ms"] for r in rows) * 1e3,
            "stalls_over_1ms": len(stalls),
            "stall_us_median": statistics.median(gaps_us[i] for i in stalls) if stalls else None,
            "stall_spacing_passes_median": statistics.median(spacing) if spacing else None,
            "stall_share_of_overhead": sum(gaps_us[i] for i in stalls) / sum(gaps_us) if stalls else 0.0}


def bare_loops(mm, reps: int = 300) -> dict:
    """The same matmul timed three bare ways in this process (medians, ms)."""
    import time

    import torch

    def events():
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    # Queued back to back without a flush: do_bench's pattern minus its L2 flush.
    pairs = [events() for _ in range(reps)]
    for start, end in pairs:
        start.record()
        mm()
        end.record()
    torch.cuda.synchronize()
    queued = statistics.median(s.elapsed_time(e) for s, e in pairs)
    # One synchronous pass at a time, as a harness times a pass: events inside, wall around.
    start, end = events()
    synced_events, synced_wall = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        start.record()
        mm()
        end.record()
        torch.cuda.synchronize()
        synced_wall.append((time.perf_counter() - t0) * 1e3)
        synced_events.append(start.elapsed_time(end))
    return {"queued_no_flush_events_ms": queued, "synced_events_ms": statistics.median(synced_events),
            "synced_wall_ms": statistics.median(synced_wall)}


def cuda_vs_do_bench(site: Path, tmp: Path, passes: int) -> dict:
    import torch
    import triton.testing

    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", generator=gen)
    before = triton.testing.do_bench(lambda: torch.mm(a, b), warmup=100, rep=2000, return_mode="median")
    rows = bench(site, tmp / "cuda", "--device", "cuda", "--seq-len", "1", "--passes", str(passes),
                 "--set", f"cuda_matmul_n={MATMUL_N}")
    harness = statistics.median(r["elapsed_ms"] for r in rows)
    in_worker_events = statistics.median(r["cuda_event_ms"] for r in rows)
    after = triton.testing.do_bench(lambda: torch.mm(a, b), warmup=100, rep=2000, return_mode="median")
    do_bench_ms = statistics.mean([before, after])
    bare = bare_loops(lambda: torch.mm(a, b))
    return {"workload": f"fp32 mm {MATMUL_N}^3, TF32 off", "harness_median_ms": harness,
            "do_bench_median_ms": do_bench_ms, "worker_cuda_event_median_ms": in_worker_events,
            "do_bench_before_after_ms": [before, after], **bare,
            "ratio": harness / do_bench_ms,
            # The harness's own cost: its pass against the same synchronous pass in a bare loop.
            "ratio_to_synced_wall": harness / bare["synced_wall_ms"],
            "gpu": torch.cuda.get_device_name()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--passes", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        site = tmp_path / "site"
        install_test_plugin(site)
        result = {"per_pass": per_pass_overhead(site, tmp_path, args.passes)}
        if args.cuda:
            result["cuda_vs_do_bench"] = cuda_vs_do_bench(site, tmp_path, 300)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
