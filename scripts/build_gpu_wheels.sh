#!/usr/bin/env bash
# Download the wheels a GPU machine without a package index needs (scripts/gpu_wheels.txt) into
# .whl/ (ignored by git): cp312, manylinux x86_64, no dependencies (every pin is in the list).
#   bash scripts/build_gpu_wheels.sh [--anchors] [--openfold3] [--bundles]
# --anchors adds the public kernels the kernels plugin compares against (trifast, cuEquivariance:
# about 74 MB, more than one device call carries at once: see docs/BENCHMARKS.md, Reproducing);
# --openfold3 adds OpenFold3 and its model's imports (scripts/gpu_wheels_openfold3.txt, about 73 MB).
# --bundles then packs the wheels into .whl/call-1, .whl/call-2 (tar.xz archives of stored wheels,
# pack_wheel_bundles.py --xz: two calls where zipped wheels need three) of at most AF3_BUNDLE_MIB
# (default 60) MiB each, by purpose (scripts/pack_wheel_bundles.py says which wheel goes where and
# why), for device calls that carry 64 MiB with the tree: carry one a call, in either order, on one
# warm machine (gpu_suite.sh unpacks and installs every bundle that has arrived so far; each bundle
# alone runs its engines on a fresh machine). It drops biotite's chemical component dictionary
# (37 MB the models never read).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
lists=(scripts/gpu_wheels.txt)
bundles=
for arg in "$@"; do
  case $arg in
    --anchors) lists+=(scripts/gpu_wheels_anchors.txt) ;;
    --openfold3) lists+=(scripts/gpu_wheels_openfold3.txt) ;;
    --bundles) bundles=1 ;;
    *) echo "build_gpu_wheels.sh: unknown option $arg (--anchors, --openfold3, --bundles)" >&2; exit 2 ;;
  esac
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl $(grep -hv '^#' "${lists[@]}")
du -sh .whl
[ -z "$bundles" ] && exit 0
for wheel in .whl/biotite-*.whl; do
  [ -f "$wheel" ] && zip -q -d "$wheel" 'biotite/structure/info/components.bcif' 2>/dev/null || true
done
python3 scripts/pack_wheel_bundles.py --xz --limit-mib "${AF3_BUNDLE_MIB:-60}" .whl
