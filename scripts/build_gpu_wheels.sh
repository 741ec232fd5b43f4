#!/usr/bin/env bash
# Download the wheels a GPU machine without a package index needs (scripts/gpu_wheels.txt) into
# .whl/ (ignored by git): cp312, manylinux x86_64, no dependencies (every pin is in the list).
#   bash scripts/build_gpu_wheels.sh [--anchors] [--openfold3] [--bundles]
# --anchors adds the public kernels the kernels plugin compares against (trifast, cuEquivariance:
# about 74 MB, more than one device call carries at once: see docs/BENCHMARKS.md, Reproducing);
# --openfold3 adds OpenFold3 and its model's imports (scripts/gpu_wheels_openfold3.txt, about 73 MB).
# --bundles then packs the wheels into .whl/call-1, .whl/call-2, ... of at most AF3_BUNDLE_MIB
# (default 56) MiB each, for device calls that carry 64 MiB with the tree: carry one a call, in
# order, on one warm machine (gpu_suite.sh installs every bundle that has arrived so far). It drops
# biotite's chemical component dictionary (37 MB the models never read) so that the wheel fits.
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
python3 - "${AF3_BUNDLE_MIB:-56}" <<'PY'
"""First-fit decreasing: the fewest bundles of at most LIMIT MiB; the largest wheels go first."""
import sys
from pathlib import Path

limit = float(sys.argv[1]) * 2**20
root = Path(".whl")
for old in root.glob("call-*/*.whl"):  # a rebuild repacks everything
    old.rename(root / old.name)
wheels = sorted(root.glob("*.whl"), key=lambda w: w.stat().st_size, reverse=True)
bins: list[list[Path]] = []
for wheel in wheels:
    size = wheel.stat().st_size
    if size > limit:
        sys.exit(f"build_gpu_wheels.sh: {wheel.name} is {size / 2**20:.1f} MiB, more than a bundle (AF3_BUNDLE_MIB)")
    target = next((b for b in bins if sum(w.stat().st_size for w in b) + size <= limit), None)
    if target is None:
        bins.append(target := [])
    target.append(wheel)
for i, wheels_in in enumerate(bins, 1):
    folder = root / f"call-{i}"
    folder.mkdir(exist_ok=True)
    for wheel in wheels_in:
        wheel.rename(folder / wheel.name)
    size = sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20
    print(f"{folder}: {size:.1f} MiB, {len(wheels_in)} wheels (carry it in device call {i})")
PY
