#!/usr/bin/env bash
# The Ligo engine's GPU runs (called by scripts/gpu_suite.sh, or alone):
#   bash plugins/af3_ligo/scripts/gpu_runs.sh RUNS_DIR
# Needs third_party/alphafold3_ligo (or AF3_LIGO_SRC) and af3-bench, af3-ligo, af3-kernels importable.
# 1. harness vs bare loop, paper trunk at 256 tokens (must agree within 3%; anchor 1.83 s per pass);
# 2. paper preset, fp32: trunk at 256, 512, 768 and full at 256 (anchor 10.5 s), for each MSA
#    implementation (torch, seed, fused): median, compile, peak memory in summary.csv;
# 3. the largest token count each implementation fits (trunk, 1 cycle: the peak is per cycle);
# 4. (sub-section "full", only when named in LIGO_SECTIONS) full mode at 256 with more passes.
set -uo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${1:-gpu_out/runs}
mkdir -p "$RUNS"
AF3=(python3 -m af3core)
SECTIONS=${LIGO_SECTIONS:-agreement impls oom}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
log() { echo "=== $(date +%H:%M:%S) ligo: $*"; }
bench() {  # name, af3 bench arguments...
  local name=$1; shift
  log "af3 bench $*"
  "${AF3[@]}" bench --plugin ligo --preset paper --device cuda --out "$RUNS/$name" --force --plain --no-plot "$@" 2>&1 | tail -n 12
}

if has agreement; then
log "standalone (bare loop) paper trunk 256"
python3 plugins/af3_ligo/scripts/standalone_timing.py --preset paper --mode trunk --tokens 256 --passes 5 \
  --device cuda | tee "$RUNS/ligo-standalone-trunk-256.txt" | tail -n 1
bench ligo-harness-trunk-256 --mode trunk --seq-len 256 --passes 5
fi

has impls && for impl in ${LIGO_IMPLS:-torch seed fused}; do
  # check_finite=false for seed: its defect (uninitialised accumulator) may give non-finite values;
  # the pass is still timed, and the GPU test reports how far its output is from torch's.
  extra=()
  [ "$impl" = seed ] && extra=(--set check_finite=false)
  bench "ligo-trunk-$impl" --mode trunk --seq-len 256,512,768 --passes 3 --set msa_impl=$impl "${extra[@]}"
  bench "ligo-full-$impl" --mode full --seq-len 256 --passes 2 --set msa_impl=$impl "${extra[@]}"
done

# full mode alone with more passes (LIGO_FULL_PASSES): the 200-step sampling loop varies from pass to pass
has full && for impl in ${LIGO_IMPLS:-torch seed fused}; do
  extra=()
  [ "$impl" = seed ] && extra=(--set check_finite=false)
  bench "ligo-full-$impl-more" --mode full --seq-len 256 --passes ${LIGO_FULL_PASSES:-4} --set msa_impl=$impl "${extra[@]}"
done

has oom && for impl in ${LIGO_IMPLS:-torch seed fused}; do
  extra=()
  [ "$impl" = seed ] && extra=(--set check_finite=false)
  bench "ligo-oom-$impl" --mode trunk --seq-len ${LIGO_OOM_RANGE:-1024::128} --until-oom --passes 1 --timeout 600 \
    --set cycles=1 --set msa_impl=$impl "${extra[@]}"
done
