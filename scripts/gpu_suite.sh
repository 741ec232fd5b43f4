#!/usr/bin/env bash
# Every GPU check in one script, for a machine with an NVIDIA GPU and no network:
#   bash scripts/gpu_suite.sh [SECTION...]
# sections: tests harness kernel-table kernel-harness kernels sweeps deepmind ligo (default: all),
# and dm-small-trunk / dm-small-full to run parts of the DeepMind section alone; kernel-tests (the
# kernel test files in 8 parallel groups: Triton compilation dominates) and kernel-tune (block-size
# sweep and per-kernel breakdown, tune_msa_pwa.py), kernel-memory (peak memory and largest R) and
# ligo-tests (tests/test_ligo_gpu.py) run only when named.
# The engine sections take their sub-sections from DM_SECTIONS (small default standalone) and
# LIGO_SECTIONS (agreement impls oom; LIGO_IMPLS, LIGO_OOM_RANGE), so one suite can be split into
# calls that each fit a time limit.
# Needs: python3 with torch, triton, jax (CUDA); for the DeepMind engine, its extra wheels in .whl/
# (see docs/DEEPMIND.md); the engine sources in third_party/. Writes everything under $OUT
# (default ./gpu_out): results.tar.gz (every af3 output folder and log) and table.txt, which is
# also printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
RUNS=${AF3_RUNS:-$OUT.runs}  # outside $OUT: only the archive and the table come back from a device call
SITE=${AF3_SITE:-/tmp/af3-site}
mkdir -p "$RUNS" "$OUT"
exec > >(tee -a "$OUT/suite.log") 2>&1
SECTIONS=${*:-tests harness kernel-table kernel-harness kernels sweeps deepmind ligo}
export PYTHONUNBUFFERED=1 TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1

log() { echo "=== $(date +%H:%M:%S) $*"; }
# Archive after every step, so a suite cut off by a time limit still returns what it finished.
archive() { tar -czf "$OUT/results.tar.gz" -C "$(dirname "$RUNS")" "$(basename "$RUNS")" 2>/dev/null; }
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

# --- install: carried wheels once, then the four distributions every time (real dist-info: entry
# points work; a warm machine must not keep an older copy of this tree)
if ls .whl/*.whl >/dev/null 2>&1 && [ ! -f "$SITE/.wheels-installed" ]; then
  log "install wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl && touch "$SITE/.wheels-installed" || exit 1
fi
log "install af3-bench and plugins"
python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target "$SITE" \
  . plugins/af3_kernels plugins/af3_ligo plugins/af3_deepmind 2>&1 | grep -v "already exists" || true
export PYTHONPATH=$SITE
( while sleep 15; do archive; done ) >/dev/null 2>&1 &  # the engine scripts run long: keep the archive fresh
ARCHIVER=$!
# Stop it on exit: it would otherwise hold the output pipe open and a caller piping this script's
# output would wait forever.
trap 'kill $ARCHIVER 2>/dev/null' EXIT
AF3=(python3 -m af3core)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"${AF3[@]}" plugins

bench() {  # name, af3 bench arguments...
  local name=$1; shift
  log "af3 bench $*"
  "${AF3[@]}" bench --out "$RUNS/$name" --force --plain "$@" 2>&1 | tail -n 40
  archive
}

if has tests; then
  log "pytest (CUDA)"
  python3 -m pytest -q -rs -x tests 2>&1 | tail -n 25
fi

if has kernel-tests; then
  log "kernel tests (CUDA), 8 parallel groups"
  python3 -m pytest -q --collect-only -p no:cacheprovider tests/test_kernels_msa_pwa.py tests/test_kernels_runner.py \
    2>/dev/null | grep '::' > "$RUNS/kernel_tests.ids"
  pids=()
  for k in 0 1 2 3 4 5 6 7; do
    awk -v k=$k 'NR % 8 == k' "$RUNS/kernel_tests.ids" > "$RUNS/kernel_tests.$k.ids"
    mapfile -t ids < "$RUNS/kernel_tests.$k.ids"  # one id per line: ids may contain spaces
    [ ${#ids[@]} -gt 0 ] || continue
    timeout 300 python3 -m pytest -q -rs -p no:cacheprovider "${ids[@]}" > "$RUNS/kernel_tests.$k.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"  # not a bare wait: the archiving loop runs in the background too
  grep -h -E "passed|failed|error" "$RUNS"/kernel_tests.*.log | grep -v "^E " | tail -n 8
  grep -h -E "^(FAILED|ERROR)" "$RUNS"/kernel_tests.*.log | head -n 20
  archive
fi

if has kernel-tune; then
  log "kernel block-size sweep and per-kernel breakdown (CUDA graphs)"
  bfile=${TUNE_BASELINE:-.scratch/baseline_msa_pwa.py}  # an older msa_pwa.py to time beside this one
  base=(); [ -f "$bfile" ] && base=(--baseline "$bfile")
  python3 plugins/af3_kernels/bench/tune_msa_pwa.py --out "$RUNS/tune_msa_pwa.jsonl" --budget-s ${TUNE_BUDGET_S:-240} \
    --parts ${TUNE_PARTS:-fwd,fwdbwd,elementwise,profile} "${base[@]}" 2>&1 | tee "$RUNS/tune_msa_pwa.txt"
  archive
fi

if has ligo-tests; then
  log "Ligo GPU tests (harness vs bare loop within 3%; the MSA implementations agree)"
  timeout 400 python3 -m pytest -m gpu -q -rs -s -p no:cacheprovider tests/test_ligo_gpu.py 2>&1 | tee "$RUNS/ligo_gpu_tests.txt" | tail -n 20
  archive
fi

if has harness; then
  log "harness overhead"
  python3 scripts/harness_overhead.py --cuda --passes 3000 --out "$RUNS/harness_overhead.json"
  archive
fi

if has kernel-table; then
  log "kernel side-by-side table (one process: every implementation, events and CUDA-graph timing)"
  python3 plugins/af3_kernels/bench/bench_msa_pwa.py --impls fused,torch,seed --graph --budget-s ${KT_BUDGET_S:-200} \
    --out "$RUNS/bench_msa_pwa.jsonl" 2>&1 | tee "$RUNS/bench_msa_pwa.txt" | tail -n 40
  archive
fi

if has kernel-harness; then
  # A few kernel cases through the harness itself (each its own worker), timed from a CUDA graph.
  for impl in fused torch; do
    bench "k-fwd-bf16-$impl-graph" --plugin kernels --mode fwd --seq-len 384 --set impl=$impl --set dtype=bf16 \
      --set S=128 --set C=8 --set timing=graph --passes 3
  done
  bench "k-fwdbwd-fp32-fused-graph" --plugin kernels --mode fwdbwd --seq-len 384 --set impl=fused \
    --set dtype=fp32 --set S=128 --set C=8 --set timing=graph --passes 3
  for mode in fwd fwdbwd; do  # fp32 from bf16 splits on the tensor cores
    bench "k-$mode-fp32-fused-bf16x6-graph" --plugin kernels --mode $mode --seq-len 384 --set impl=fused \
      --set dtype=fp32 --set precision=bf16x6 --set S=128 --set C=8 --set timing=graph --passes 3
  done
fi

if has kernel-memory; then
  log "kernel peak memory of fwd+bwd against R, and the largest R that fits (fused vs eager)"
  python3 plugins/af3_kernels/bench/bench_msa_pwa.py --no-table --memory --budget-s ${KM_BUDGET_S:-60} \
    --out "$RUNS/bench_msa_pwa_memory.jsonl" 2>&1 | tee "$RUNS/bench_msa_pwa_memory.txt" | tail -n 12
  archive
fi

if has kernels; then
  for impl in fused torch compile; do
    for shape in "128 384 8" "128 384 32" "128 768 32" "512 768 8"; do
      set -- $shape
      bench "k-fwd-bf16-$impl-S$1-R$2-C$3" --plugin kernels --mode fwd --seq-len "$2" \
        --set impl=$impl --set dtype=bf16 --set S=$1 --set C=$3 --passes 3
    done
  done
  for impl in fused torch compile seed; do
    for mode in fwd fwdbwd; do
      bench "k-$mode-fp32-$impl" --plugin kernels --mode $mode --seq-len 384 --set impl=$impl \
        --set dtype=fp32 --set S=128 --set C=8 --passes 3
    done
  done
fi

if has sweeps; then
  # Largest R that fits, forward+backward fp32 (S=128, H=8, C=8): coarse steps, then 128 past the last fit.
  for impl in fused torch; do
    bench "sweep-coarse-$impl" --plugin kernels --mode fwdbwd --seq-len 4096::4096 --until-oom \
      --set impl=$impl --set dtype=fp32 --set reps=2 --set check=false --passes 1 --no-plot
  done
  # The seed kernel's time and memory against R (it is slow: a few sizes only).
  for mode in fwd bwd; do
    bench "seed-$mode-vs-R" --plugin kernels --mode $mode --seq-len 256:1280:256 --set impl=seed \
      --set dtype=fp32 --set reps=5 --set check=false --passes 1 --timeout 120
  done
fi

if has dm-small-trunk; then
  bench dm-small-trunk --plugin deepmind --device cuda --preset small --mode trunk --seq-len 256:1024:256 --passes 3
fi
if has dm-small-full; then
  bench dm-small-full --plugin deepmind --device cuda --preset small --mode full --seq-len 256:1024:256 --passes 3
fi

if has deepmind; then
  bash plugins/af3_deepmind/scripts/gpu_runs.sh "$RUNS"
  archive
fi

if has ligo; then
  bash plugins/af3_ligo/scripts/gpu_runs.sh "$RUNS"
  archive
fi

log "archive"
archive
python3 scripts/summarize.py "$RUNS" > "$OUT/table.txt"
[ -f "$RUNS/harness_overhead.json" ] && cat "$RUNS/harness_overhead.json"
cat "$OUT/table.txt"
