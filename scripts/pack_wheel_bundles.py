"""Pack the wheels of a folder into bundles that one device call can carry each, by purpose.

    python scripts/pack_wheel_bundles.py [--limit-mib 60] [FOLDER]     (default FOLDER: .whl)

A device call carries 64 MiB with the tree; the GPU wheels are about 150 MiB, so they travel over
three calls to one warm machine, each installing what has arrived. Packing them by size alone splits
them at random with respect to what can run after each call. These bundles are made so that each
call runs something, and nothing breaks on a half-arrived install:

1. everything not named below: OpenFold3 (with biotite and gemmi), DeepMind's Haiku stack, ESM-2 and
   the small shared wheels; carry the DeepMind and Ligo sources (15 MiB) with it: with every list
   of build_gpu_wheels.sh it is about 41 MiB, so they fit beside it;
2. Boltz-2 and Protenix with RDKit (both import it), and cuEquivariance's torch ops;
3. the rest of cuEquivariance: its CUDA library and its Python packages, last and together, because
   OpenFold3 imports cuEquivariance whenever ``cuequivariance_torch`` is installed and stops when its
   libraries are not all there; Boltz-2 and Protenix use it once this bundle has arrived.

Neighbouring bundles that fit in one are merged (a short list of wheels needs fewer calls); a
bundle over the limit is an error, not a silent split. Wheels move into FOLDER/call-1, call-2, ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Distribution names (as in wheel file names: lower case, ``_`` for ``-``) of bundles 2 and 3;
#: bundle 1 takes every other wheel.
LATER_BUNDLES: tuple[frozenset[str], ...] = (
    frozenset({"rdkit", "boltz", "einx", "frozendict", "protenix", "optree", "cuequivariance_ops_torch_cu13"}),
    frozenset({"cuequivariance_ops_cu13", "cuequivariance", "cuequivariance_torch", "trifast"}),
)


def distribution(wheel: Path) -> str:
    """The distribution a wheel file holds, normalised as wheel file names spell it."""
    return wheel.name.split("-", 1)[0].lower().replace(".", "_")


def group(wheels: list[Path]) -> list[list[Path]]:
    """The wheels by purpose, in the order they should arrive (empty groups included)."""
    groups: list[list[Path]] = [[] for _ in range(1 + len(LATER_BUNDLES))]
    for wheel in sorted(wheels, key=lambda w: w.name):
        index = next((i for i, names in enumerate(LATER_BUNDLES, 1) if distribution(wheel) in names), 0)
        groups[index].append(wheel)
    return groups


def pack(wheels: list[Path], limit: int) -> list[list[Path]]:
    """Bundles of at most ``limit`` bytes: the purpose groups, neighbours merged while they fit."""
    bundles: list[list[Path]] = []
    for wheels_in in group(wheels):
        if not wheels_in:
            continue
        size = sum(w.stat().st_size for w in wheels_in)
        if size > limit:
            names = ", ".join(w.name.split("-", 1)[0] for w in wheels_in)
            raise ValueError(f"a bundle of {size / 2**20:.1f} MiB ({names}) is more than {limit / 2**20:.0f} MiB: "
                             "raise --limit-mib if the calls carry more, or move wheels between the bundles "
                             "of scripts/pack_wheel_bundles.py")
        if bundles and sum(w.stat().st_size for w in bundles[-1]) + size <= limit:
            bundles[-1].extend(wheels_in)
        else:
            bundles.append(list(wheels_in))
    return bundles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=".whl", type=Path)
    parser.add_argument("--limit-mib", type=float, default=60.0,
                        help="most a bundle may hold (default 60: a call carries 64 MiB with the tree)")
    args = parser.parse_args(argv)
    root: Path = args.folder
    for old in root.glob("call-*/*.whl"):  # a rebuild repacks everything
        old.rename(root / old.name)
    for folder in root.glob("call-*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    try:
        bundles = pack(list(root.glob("*.whl")), int(args.limit_mib * 2**20))
    except ValueError as exc:
        print(f"pack_wheel_bundles.py: {exc}", file=sys.stderr)
        return 2
    for i, wheels_in in enumerate(bundles, 1):
        folder = root / f"call-{i}"
        folder.mkdir(exist_ok=True)
        for wheel in wheels_in:
            wheel.rename(folder / wheel.name)
        size = sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20
        print(f"{folder}: {size:.1f} MiB, {len(wheels_in)} wheels (carry it in device call {i})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
