"""scripts/pack_wheel_bundles.py: the GPU wheels split by purpose over device calls."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pack_wheel_bundles.py"
MIB = 2**20


def _module():
    spec = importlib.util.spec_from_file_location("pack_wheel_bundles", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheels(folder: Path, sizes_mib: dict[str, float]) -> None:
    for name, size in sizes_mib.items():
        (folder / name).write_bytes(b"\0" * int(size * MIB))


# The real set's large wheels (sizes rounded), plus small ones of each purpose.
REAL = {
    "rdkit-2026.9.1-cp312-cp312-manylinux_2_28_x86_64.whl": 30.3,
    "cuequivariance_ops_cu13-0.13.0-py3-none-manylinux_2_24_x86_64.whl": 42.9,
    "cuequivariance_ops_torch_cu13-0.13.0-cp312-cp312-manylinux_2_27_x86_64.whl": 27.2,
    "cuequivariance_torch-0.13.0-py3-none-any.whl": 0.2,
    "cuequivariance-0.13.0-py3-none-any.whl": 0.2,
    "biotite-1.6.0-cp312-cp312-manylinux_2_24_x86_64.whl": 18.2,
    "openfold3-0.5.0-py3-none-any.whl": 12.1,
    "boltz-2.2.1-py3-none-any.whl": 0.3,
    "protenix-2.0.0-py3-none-any.whl": 0.5,
    "dm_haiku-0.0.17-py3-none-any.whl": 0.4,
    "PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.whl": 0.7,
}


def test_the_real_set_arrives_by_purpose(tmp_path):
    _wheels(tmp_path, REAL)
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    content = {p.name: sorted(w.name.split("-")[0] for w in p.glob("*.whl")) for p in tmp_path.glob("call-*")}
    assert content == {
        "call-1": ["PyYAML", "biotite", "dm_haiku", "openfold3"],
        "call-2": ["boltz", "cuequivariance_ops_torch_cu13", "protenix", "rdkit"],
        "call-3": ["cuequivariance", "cuequivariance_ops_cu13", "cuequivariance_torch"],
    }
    assert not list(tmp_path.glob("*.whl"))
    assert "call-3" in result.stdout and "device call 3" in result.stdout


def test_cuequivariance_python_packages_never_arrive_before_its_libraries(tmp_path):
    # Whatever the sizes, cuequivariance_torch lands in the bundle of the last CUDA library or later:
    # OpenFold3 imports it whenever it is installed and stops if its libraries are not all there.
    pack = _module()
    _wheels(tmp_path, {name: 0.1 for name in REAL})
    assert len(pack.pack(list(tmp_path.glob("*.whl")), 60 * MIB)) == 1  # everything fits in one: one call, nothing split
    _wheels(tmp_path, REAL)
    bundles = pack.pack(list(tmp_path.glob("*.whl")), 60 * MIB)
    where = {pack.distribution(w): i for i, b in enumerate(bundles) for w in b}
    assert where["cuequivariance_torch"] >= max(where["cuequivariance_ops_cu13"], where["cuequivariance_ops_torch_cu13"])
    assert where["boltz"] == where["rdkit"] == where["protenix"]


def test_neighbours_merge_when_they_fit_and_a_repack_starts_over(tmp_path):
    _wheels(tmp_path, {"rdkit-1-py3-none-any.whl": 20, "boltz-1-py3-none-any.whl": 1, "tqdm-1-py3-none-any.whl": 1})
    assert subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True).returncode == 0
    assert sorted(p.name for p in tmp_path.glob("call-*")) == ["call-1"]
    # A second run (a rebuild) repacks what is in the bundles already, with a smaller limit now.
    result = subprocess.run([sys.executable, str(SCRIPT), "--limit-mib", "21", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(w.name.split("-")[0] for w in (tmp_path / "call-1").glob("*.whl")) == ["tqdm"]
    assert sorted(w.name.split("-")[0] for w in (tmp_path / "call-2").glob("*.whl")) == ["boltz", "rdkit"]


def test_a_bundle_over_the_limit_is_a_usage_error_not_a_split(tmp_path):
    _wheels(tmp_path, {"rdkit-1-py3-none-any.whl": 5, "protenix-1-py3-none-any.whl": 5})
    result = subprocess.run([sys.executable, str(SCRIPT), "--limit-mib", "8", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "more than 8 MiB" in result.stderr and "rdkit" in result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.whl")) == ["protenix-1-py3-none-any.whl", "rdkit-1-py3-none-any.whl"]


@pytest.mark.parametrize("name, expected", [
    ("cuequivariance_ops_torch_cu13-0.13.0-cp312-cp312-x.whl", "cuequivariance_ops_torch_cu13"),
    ("PyYAML-6.0.2-cp312-cp312-x.whl", "pyyaml"),
])
def test_distribution_names(name, expected):
    assert _module().distribution(Path(name)) == expected


def _real_wheel(path: Path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_xz_bundles_pack_what_zip_cannot_and_keep_every_member(tmp_path):
    """A library that repeats itself beyond deflate's 32 KiB window (CUDA code for several GPU
    architectures does) is as large zipped as raw; xz sees the repeats, so bundles that zip would
    split over calls fit in one, and the wheels inside are stored with their members unchanged."""
    import os
    import tarfile
    import zipfile

    block = os.urandom(MIB)
    library = {"cuequivariance_ops/lib.so": block * 4, "cuequivariance_ops/__init__.py": b"x = 1\n"}
    _real_wheel(tmp_path / "cuequivariance_ops_cu13-1-py3-none-any.whl", library)
    _real_wheel(tmp_path / "cuequivariance_torch-1-py3-none-any.whl", {"cuequivariance_torch/__init__.py": b""})
    _real_wheel(tmp_path / "tqdm-1-py3-none-any.whl", {"tqdm/__init__.py": block})
    assert (tmp_path / "cuequivariance_ops_cu13-1-py3-none-any.whl").stat().st_size > 4 * MIB  # zip saw no repeat

    plain = subprocess.run([sys.executable, str(SCRIPT), "--limit-mib", "3", str(tmp_path)], capture_output=True, text=True)
    assert plain.returncode == 2 and "more than 3 MiB" in plain.stderr

    result = subprocess.run([sys.executable, str(SCRIPT), "--xz", "--limit-mib", "3", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("call-*")) == ["call-1"]
    archives = sorted(p.name for p in (tmp_path / "call-1").iterdir())
    assert archives == ["group-1.tar.xz", "group-3.tar.xz"]  # tqdm's purpose group, cuEquivariance's
    assert len(list(tmp_path.glob("*.whl"))) == 3  # the wheels stay where they were
    assert "call-1" in result.stdout and "device call 1" in result.stdout

    unpacked = tmp_path / "unpacked"
    for archive in (tmp_path / "call-1").glob("*.tar.xz"):
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
    assert sorted(p.name for p in unpacked.iterdir()) == sorted(p.name for p in tmp_path.glob("*.whl"))
    with zipfile.ZipFile(unpacked / "cuequivariance_ops_cu13-1-py3-none-any.whl") as z:
        assert {i.filename: i.compress_type for i in z.infolist()} == dict.fromkeys(library, zipfile.ZIP_STORED)
        assert {name: z.read(name) for name in library} == library

    # A repack without --xz starts over: the archives go, the wheels move into the bundles.
    again = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not list(tmp_path.glob("call-*/*.tar.xz"))
    assert len(list(tmp_path.glob("call-*/*.whl"))) == 3


def test_merging_starts_from_the_last_bundle_so_the_first_has_room_for_the_sources(tmp_path):
    # The packed sizes of the real groups: merged from the front, the first call would hold 54 MiB
    # and no room for the engine sources (15 MiB) beside it.
    pack = _module()
    _wheels(tmp_path, {"tqdm-1-py3-none-any.whl": 25.5, "rdkit-1-py3-none-any.whl": 28.9,
                       "cuequivariance_ops_cu13-1-py3-none-any.whl": 19.5})
    bundles = pack.pack(list(tmp_path.glob("*.whl")), 60 * MIB)
    assert [[pack.distribution(w) for w in b] for b in bundles] == [["tqdm"], ["rdkit", "cuequivariance_ops_cu13"]]


def test_the_boltz_protenix_archive_carries_the_small_wheels_they_share_with_bundle_1(tmp_path):
    # Device machines are not always lent twice: the call with bundle 2 must run Boltz-2 and
    # Protenix on a fresh machine without bundle 1 (a hand-packed bundle without platformdirs once
    # made cuEquivariance's ops fail to import).
    import tarfile

    pack = _module()
    for name in ("PyYAML-6", "platformdirs-4", "pytorch_lightning-2", "openfold3-0", "boltz-2", "rdkit-1"):
        _real_wheel(tmp_path / f"{name}-py3-none-any.whl", {f"{name.split('-')[0]}/__init__.py": b""})
    staging = tmp_path / "staging"
    staging.mkdir()
    bundles = pack.pack_xz(list(tmp_path.glob("*.whl")), 60 * MIB, staging)
    assert [[a.name for a in b] for b in bundles] == [["group-1.tar.xz", "group-2.tar.xz"]]

    def members(archive):
        with tarfile.open(staging / archive) as tar:
            return sorted(n.split("-")[0] for n in tar.getnames())

    assert members("group-1.tar.xz") == ["PyYAML", "openfold3", "platformdirs", "pytorch_lightning"]
    assert members("group-2.tar.xz") == ["PyYAML", "boltz", "platformdirs", "pytorch_lightning", "rdkit"]
    # Without Boltz-2's group there is nothing to share with: no second archive.
    for wheel in ("boltz-2-py3-none-any.whl", "rdkit-1-py3-none-any.whl"):
        (tmp_path / wheel).unlink()
    assert [[a.name for a in b] for b in pack.pack_xz(list(tmp_path.glob("*.whl")), 60 * MIB, staging)] == \
        [["group-1.tar.xz"]]
