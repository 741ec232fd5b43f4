#!/usr/bin/env bash
# DeepMind AF3 on one GPU: the issue's checks. Called by scripts/gpu_suite.sh with its runs folder:
#   bash plugins/af3_deepmind/scripts/gpu_runs.sh RUNS_DIR
# Expects PYTHONPATH to hold af3core, af3_deepmind and the .whl kit (gpu_suite.sh sets it), jax with
# CUDA, and DeepMind's source in third_party/alphafold3_deepmind (or AF3_DEEPMIND_SRC).
# Sections (DM_SECTIONS, default all): small default standalone
set -uo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${1:-gpu_out/runs}
mkdir -p "$RUNS"
SECTIONS=${DM_SECTIONS:-small default standalone}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
log() { echo "=== $(date +%H:%M:%S) deepmind: $*"; }
bench() {  # name, af3 bench arguments...
  local name=$1; shift
  log "af3 bench $*"
  python3 -m af3core bench --plugin deepmind --device cuda --out "$RUNS/$name" --force --plain --no-plot "$@" 2>&1 | tail -n 20
}

if has small; then
  # Small preset (1 recycle, 4 steps, 1 sample, 16 MSA rows, no templates), 256..1024 tokens.
  bench dm-small-trunk --preset small --mode trunk --seq-len 256:1024:256 --passes 3
  bench dm-small-full --preset small --mode full --seq-len 256:1024:256 --passes 3
fi

if has default; then
  # DeepMind's inference settings at 1024 tokens; their published H100 figure is 34 s.
  bench dm-default-full-1024 --preset default --mode full --seq-len 1024 --passes 2 --timeout 900
fi

if has standalone; then
  # The same graph timed without the harness, in the same session: within 3% of the harness run.
  log "standalone timing (default, full, 1024)"
  XLA_PYTHON_CLIENT_PREALLOCATE=false python3 plugins/af3_deepmind/scripts/standalone_timing.py \
    --mode full --preset default --seq-len 1024 --device cuda --passes 2 2>&1 | grep '^standalone' \
    | tee "$RUNS/dm-standalone-default-full-1024.txt"
fi
