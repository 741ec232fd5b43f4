"""Pack the wheels of a folder into bundles that one device call can carry each, by purpose.

    python scripts/pack_wheel_bundles.py [--limit-mib 60] [--xz] [FOLDER]     (default FOLDER: .whl)

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

Neighbouring bundles that fit in one are merged (a short list of wheels needs fewer calls), from
the last one back, so that the first, which carries the sources too, stays the smallest; a bundle
over the limit is an error, not a silent split. Wheels move into FOLDER/call-1, call-2, ...

``--xz`` packs each purpose group instead as a tar.xz of its wheels stored uncompressed and merges
neighbours by their packed sizes; the wheels stay in FOLDER. xz sees the repeats in the CUDA
libraries that a wheel's zip cannot: every list of build_gpu_wheels.sh (about 143 MiB of wheels)
packs into 25.5, 30.4 and 19.5 MiB, two calls instead of three: the first bundle with the sources,
then Boltz-2, Protenix and all of cuEquivariance together, with a copy of the small wheels of
bundle 1 they import (``SHARED_WITH_BUNDLE_2``, 1.5 of the 30.4 MiB), so that either call runs its
engines on a fresh machine (the second ran so on an H200, packed by hand the same way).
``gpu_suite.sh`` unpacks every ``*.tar.xz`` it is given and installs one wheel per file name.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

#: Distribution names (as in wheel file names: lower case, ``_`` for ``-``) of bundles 2 and 3;
#: bundle 1 takes every other wheel.
LATER_BUNDLES: tuple[frozenset[str], ...] = (
    frozenset({"rdkit", "boltz", "einx", "frozendict", "protenix", "optree", "cuequivariance_ops_torch_cu13"}),
    frozenset({"cuequivariance_ops_cu13", "cuequivariance", "cuequivariance_torch", "trifast"}),
)
#: Bundle 1's wheels that Boltz-2, Protenix and cuEquivariance import too (Lightning, PyYAML,
#: ml_collections with absl, tqdm, opt_einsum, platformdirs: 1.5 MiB packed). With ``--xz`` the archive of
#: bundle 2 holds a copy of each, so that the call carrying bundles 2 and 3 runs Boltz-2 and Protenix
#: on a fresh machine whichever call comes first (device machines are not always lent twice).
SHARED_WITH_BUNDLE_2 = frozenset({"pyyaml", "absl_py", "lightning_utilities", "pytorch_lightning", "torchmetrics",
                                  "tqdm", "ml_collections", "opt_einsum", "platformdirs"})


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


def merge(units: list[tuple[list[Path], int]], limit: int) -> list[list[Path]]:
    """Neighbouring (files, size) units joined while they fit in ``limit``, from the last one back:
    as few bundles as in order allows, and the first (which also carries the engine sources) the
    smallest."""
    bundles: list[tuple[list[Path], int]] = []
    for files, size in reversed(units):
        if bundles and bundles[0][1] + size <= limit:
            bundles[0] = (files + bundles[0][0], bundles[0][1] + size)
        else:
            bundles.insert(0, (list(files), size))
    return [files for files, _ in bundles]


def _too_large(wheels_in: list[Path], size: int, limit: int, what: str = "") -> ValueError:
    names = ", ".join(w.name.split("-", 1)[0] for w in wheels_in)
    return ValueError(f"a bundle of {size / 2**20:.1f} MiB{what} ({names}) is more than {limit / 2**20:.0f} MiB: "
                      "raise --limit-mib if the calls carry more, or move wheels between the bundles "
                      "of scripts/pack_wheel_bundles.py")


def pack(wheels: list[Path], limit: int) -> list[list[Path]]:
    """Bundles of at most ``limit`` bytes: the purpose groups, neighbours merged while they fit."""
    units = []
    for wheels_in in group(wheels):
        if not wheels_in:
            continue
        size = sum(w.stat().st_size for w in wheels_in)
        if size > limit:
            raise _too_large(wheels_in, size, limit)
        units.append((wheels_in, size))
    return merge(units, limit)


def stored_copy(wheel: Path, dest: Path) -> None:
    """The wheel with every member stored, not deflated: xz then compresses across the members
    (pip checks the members' hashes in RECORD, which this does not change)."""
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_STORED
            zout.writestr(info, data)


def compress(wheels: list[Path], archive: Path) -> None:
    """A tar.xz of the wheels, stored; with the xz tool on every core where it is installed (the
    standard library's single-threaded lzma takes minutes for the CUDA libraries)."""
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in wheels:
            stored_copy(wheel, Path(tmp) / wheel.name)
        names = sorted(w.name for w in wheels)
        if shutil.which("xz"):
            with open(archive, "wb") as out:
                tar = subprocess.Popen(["tar", "-cf", "-", "-C", tmp, *names], stdout=subprocess.PIPE)
                xz = subprocess.run(["xz", "-9", "-T0"], stdin=tar.stdout, stdout=out, check=False)
                tar.stdout.close()
                if tar.wait() or xz.returncode:
                    raise OSError(f"tar | xz failed for {archive.name}")
        else:
            with tarfile.open(archive, "w:xz", preset=9) as out:
                for name in names:
                    out.add(Path(tmp) / name, arcname=name)


def pack_xz(wheels: list[Path], limit: int, staging: Path) -> list[list[Path]]:
    """Bundles of at most ``limit`` bytes of tar.xz archives, one archive per purpose group (made
    in ``staging``), neighbours merged while they fit."""
    units = []
    groups = group(wheels)
    if groups[1]:
        groups[1] += [w for w in groups[0] if distribution(w) in SHARED_WITH_BUNDLE_2]
    for i, wheels_in in enumerate(groups, 1):
        if not wheels_in:
            continue
        archive = staging / f"group-{i}.tar.xz"
        compress(wheels_in, archive)
        size = archive.stat().st_size
        if size > limit:
            raise _too_large(wheels_in, size, limit, " packed")
        units.append(([archive], size))
    return merge(units, limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=".whl", type=Path)
    parser.add_argument("--limit-mib", type=float, default=60.0,
                        help="most a bundle may hold (default 60: a call carries 64 MiB with the tree)")
    parser.add_argument("--xz", action="store_true",
                        help="pack each bundle as tar.xz of stored wheels (fewer calls; the wheels stay in FOLDER)")
    args = parser.parse_args(argv)
    root: Path = args.folder
    for old in root.glob("call-*/*.whl"):  # a rebuild repacks everything
        old.rename(root / old.name)
    for old in root.glob("call-*/*.tar.xz"):
        old.unlink()
    for folder in root.glob("call-*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    wheels = list(root.glob("*.whl"))
    limit = int(args.limit_mib * 2**20)
    with tempfile.TemporaryDirectory(dir=root) as staging:
        try:
            bundles = pack_xz(wheels, limit, Path(staging)) if args.xz else pack(wheels, limit)
        except ValueError as exc:
            print(f"pack_wheel_bundles.py: {exc}", file=sys.stderr)
            return 2
        for i, files in enumerate(bundles, 1):
            folder = root / f"call-{i}"
            folder.mkdir(exist_ok=True)
            for file in files:
                file.rename(folder / file.name)
            size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            what = "archives of stored wheels" if args.xz else "wheels"
            print(f"{folder}: {size:.1f} MiB, {len(files)} {what} (carry it in device call {i})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
