#!/usr/bin/env bash
# Download the wheels a GPU machine without a package index needs (scripts/gpu_wheels.txt) into
# .whl/ (ignored by git): cp312, manylinux x86_64, no dependencies (every pin is in the list).
#   bash scripts/build_gpu_wheels.sh [--anchors] [--openfold3]
# --anchors adds the public kernels the kernels plugin compares against (trifast, cuEquivariance:
# about 74 MB, more than one device call carries at once: see docs/BENCHMARKS.md, Reproducing);
# --openfold3 adds OpenFold3 and its model's imports (scripts/gpu_wheels_openfold3.txt, about 73 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
lists=(scripts/gpu_wheels.txt)
for arg in "$@"; do
  case $arg in
    --anchors) lists+=(scripts/gpu_wheels_anchors.txt) ;;
    --openfold3) lists+=(scripts/gpu_wheels_openfold3.txt) ;;
    *) echo "build_gpu_wheels.sh: unknown option $arg (--anchors, --openfold3)" >&2; exit 2 ;;
  esac
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl $(grep -hv '^#' "${lists[@]}")
du -sh .whl
