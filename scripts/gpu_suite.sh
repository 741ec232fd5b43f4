#!/usr/bin/env bash
# Every GPU check in one go, for a machine with an NVIDIA GPU and no package index:
#   bash scripts/gpu_suite.sh [STEP...]            (default: tests harness kernels deepmind ligo)
# Steps:
#   tests      the test suite on the GPU (pytest -n $AF3_TEST_WORKERS, default 8: Triton compiles dominate)
#   harness    the harness's own overhead (scripts/harness_overhead.py --cuda)
#   NAME       plugins/af3_NAME/suite.txt: that plugin's list of `af3 bench` cases
#   FILE       any file in the same format: one case a line, "NAME: ARGS" (ARGS as for `af3 bench`,
#              without --out/--force/--plain, which this script adds); lines starting with # are comments
# AF3_SUITE_FILTER (an extended regex on the case names) runs part of the lists, so one suite can be
# split over calls that each fit a time limit. AF3_DEADLINE_S (seconds from the start) stops a case
# still running then and skips the rest, so that the table still comes back from a call with a limit.
# AF3_WHEELS names the folder of carried wheels or tar.xz bundles of them (default .whl); AF3_TEST_PATHS
# what the tests step runs (default: tests plugins). The step "install" installs and runs nothing.
# Needs python3 with torch, triton and jax (CUDA); the wheels of scripts/gpu_wheels.txt in .whl/
# (scripts/build_gpu_wheels.sh downloads them); the engine sources in third_party/. Writes under $OUT
# (default ./gpu_out): results.tar.gz (every results folder and log, refreshed after each step) and
# table.txt (one line per case, also printed last).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
RUNS=${AF3_RUNS:-$OUT.runs}  # outside $OUT: only the archive and the table come back from a device call
SITE=${AF3_SITE:-/tmp/af3-site}
STEPS=${*:-tests harness kernels deepmind ligo}
DEADLINE=$((SECONDS + ${AF3_DEADLINE_S:-1000000}))
mkdir -p "$RUNS" "$OUT"
exec > >(tee -a "$OUT/suite.log") 2>&1
export PYTHONUNBUFFERED=1

log() { echo "=== $(date +%H:%M:%S) $*"; }
archive() { tar -czf "$OUT/results.tar.gz" -C "$(dirname "$RUNS")" "$(basename "$RUNS")" 2>/dev/null; }

# Carried wheels once per machine, then this tree's four distributions every time (real dist-info,
# so entry points work; a warm machine must not keep an older copy of the tree).
# Every wheel under $WHEELS, bundles included (.whl/call-N of build_gpu_wheels.sh --bundles: those
# carried by earlier calls stay on a warm machine, so the last call has them all).
# Bundles packed with `pack_wheel_bundles.py --xz` are tar.xz files of uncompressed wheels (xz
# shrinks the CUDA libraries in them to under half their zip size): they unpack into a temporary
# folder whose wheels install with the rest.
WHEELS=${AF3_WHEELS:-.whl}
UNPACKED=$(mktemp -d)
while IFS= read -r packed; do
  log "unpack $packed"
  tar -xJf "$packed" -C "$UNPACKED" || exit 1
done < <(find "$WHEELS" -name '*.tar.xz' 2>/dev/null | sort)
# One file per wheel name: `--xz` leaves the wheels in .whl/ beside their archives, and pip refuses
# two files of one distribution in one install.
mapfile -t wheels < <(find "$WHEELS" "$UNPACKED" -name '*.whl' 2>/dev/null | awk -F/ '!seen[$NF]++' | sort)
if (( ${#wheels[@]} )); then
  log "install ${#wheels[@]} wheels under $WHEELS/"
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "${wheels[@]}" || exit 1
fi
log "install af3-bench and its plugins"
python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target "$SITE" \
  . plugins/*/ 2>&1 | grep -v "already exists" || true
export PYTHONPATH=$SITE
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -m af3core plugins

run_list() {  # a file of "NAME: ARGS" lines
  local file=$1 name args
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    name=${line%%:*}; args=${line#*:}
    [[ -n "${AF3_SUITE_FILTER:-}" && ! "$name" =~ $AF3_SUITE_FILTER ]] && continue
    if (( SECONDS >= DEADLINE )); then log "$name: skipped (AF3_DEADLINE_S reached)"; continue; fi
    log "$name: af3 bench$args"
    # shellcheck disable=SC2086 - ARGS are words, as typed on a command line
    timeout $((DEADLINE - SECONDS)) python3 -m af3core bench --out "$RUNS/$name" --force --plain $args </dev/null 2>&1 \
      | tail -n 12
    archive
  done < "$file"
}

for step in $STEPS; do
  case $step in
    install) ;;
    tests)
      log "pytest on the GPU"
      timeout "${AF3_TEST_TIMEOUT:-900}" python3 -m pytest -q -rs -p no:cacheprovider -n "${AF3_TEST_WORKERS:-8}" \
        -m "not timing" ${AF3_TEST_PATHS:-tests plugins} 2>&1 | tee "$RUNS/tests.txt" | tail -n 30
      log "pytest: timing comparisons, alone on the GPU"
      timeout "${AF3_TEST_TIMEOUT:-900}" python3 -m pytest -q -rs -s -p no:cacheprovider -m timing ${AF3_TEST_PATHS:-tests plugins} \
        2>&1 | tee "$RUNS/tests_timing.txt" | tail -n 12
      ;;
    harness)
      log "harness overhead"
      python3 scripts/harness_overhead.py --cuda --passes 3000 --out "$RUNS/harness_overhead.json"
      ;;
    *)
      file=$step
      [ -f "$file" ] || file=plugins/af3_$step/suite.txt
      if [ ! -f "$file" ]; then echo "no suite $step (neither a file nor plugins/af3_$step/suite.txt)"; continue; fi
      run_list "$file"
      ;;
  esac
  archive
done

log "table"
python3 scripts/summarize.py "$RUNS" > "$OUT/table.txt"
[ -f "$RUNS/harness_overhead.json" ] && cat "$RUNS/harness_overhead.json"
cat "$OUT/table.txt"
