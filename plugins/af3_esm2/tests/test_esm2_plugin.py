"""The esm2 plugin's light parts: settings, presets, plan-time checks, the released sizes, the
per-residue figures, and the CLI's refusals (exit 2, one line). Need nothing installed but
af3-bench (the CLI tests need the af3-esm2 entry point)."""
import subprocess
import sys
from importlib import metadata

import pytest

from af3_esm2 import plugin
from af3_esm2.model import SIZES, expected_params
from af3_esm2.runner import figures
from af3_esm2.settings import DEFAULTS, PRESETS, SETTINGS, SIZE_NAMES, check_seq_len, validate

needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "esm2" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-esm2 distribution is not pip-installed (af3 finds plugins by entry point)",
)


def test_sizes_are_the_released_architectures():
    """fair-esm 2.0.0's esm2_t*_UR50D: (layers, width, heads); the name is the parameter class."""
    assert {k: tuple(v[:3]) for k, v in SIZES.items()} == {
        "8M": (6, 320, 20), "35M": (12, 480, 20), "150M": (30, 640, 20), "650M": (33, 1280, 20), "3B": (36, 2560, 40)}
    assert tuple(SIZES) == SIZE_NAMES == SETTINGS["size"].choices
    for name, s in SIZES.items():
        n, scale = expected_params(s.layers, s.embed_dim, s.heads), {"M": 1e6, "B": 1e9}[name[-1]]
        assert 0.9 < n / (float(name[:-1]) * scale) < 1.05, (name, n)
        assert s.checkpoint == f"esm2_t{s.layers}_{name}_UR50D"


def test_defaults_and_presets():
    assert DEFAULTS == dict(size="650M", batch=1, dtype="fp32", weights="none", seed=0, check_finite=True)
    assert set(DEFAULTS) == set(SETTINGS) and PRESETS == {"small": {"size": "8M"}, "default": {}}


@pytest.mark.parametrize("changes, device, message", [
    ({"dtype": "fp16"}, "cpu", "dtype=fp16 needs a CUDA device"),
    ({"batch": 0}, "cpu", "batch must be >= 1"),
    ({"size": "15B"}, "cuda", "size must be one of 8M, 35M, 150M, 650M, 3B"),
    ({"dtype": "int4"}, "cuda", "dtype must be one of"),
    ({"weights": "int4"}, "cuda", "weights must be one of none, int8"),
    ({}, "mps", "cpu or cuda"),
])
def test_plan_time_problems(changes, device, message):
    problems = validate({**DEFAULTS, **changes}, device)
    assert any(message in p for p in problems), problems


def test_int8_needs_torchao(monkeypatch):
    from af3_esm2 import settings

    monkeypatch.setattr(settings, "torchao_installed", lambda: False)
    (problem,) = validate({**DEFAULTS, "weights": "int8"}, "cuda")
    assert "needs torchao" in problem and "pip install torchao" in problem
    monkeypatch.setattr(settings, "torchao_installed", lambda: True)
    assert validate({**DEFAULTS, "weights": "int8"}, "cuda") == []


def test_valid_settings_pass_and_registration_describes_the_engine():
    for dtype in ("fp32", "bf16", "fp16"):
        assert validate({**DEFAULTS, "dtype": dtype}, "cuda") == []
    assert validate({**DEFAULTS, **PRESETS["small"], "dtype": "bf16", "batch": 8}, "cpu") == []
    assert check_seq_len(1) is None and "must be >= 1" in check_seq_len(0)
    found = []
    plugin.register_plugins(register=found.append)
    (p,) = found
    assert p.name == "esm2" and p.modes == ("toy", "embed") and p.default_mode == "embed"
    assert p.default_preset == {"cpu": "small", "cuda": "default"}
    availability = p.availability()
    if availability.ok:
        assert availability.source_version.startswith("fair-esm ")
    else:
        assert "fair-esm==2.0.0" in availability.fix


def test_figures_per_residue():
    f = figures(30.0, batch=4, n_residues=250)  # 30 ms for 1000 residues
    assert f["elapsed_ms"] == 30.0 and f["ms_per_sequence"] == 7.5
    assert f["ms_per_100_residues"] == pytest.approx(3.0) and f["residues_per_s"] == pytest.approx(1000 / 0.030)


@needs_entry_point
@pytest.mark.parametrize("sets, message", [
    (["--set", "dtype=fp16"], "dtype=fp16 needs a CUDA device"),
    (["--set", "batch=0"], "batch must be >= 1"),
    (["--set", "size=7M"], "7M"),
    (["--mode", "trunk"], "trunk"),
])
def test_cli_refuses_bad_settings_with_one_line_and_exit_2(tmp_path, sets, message):
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "esm2", "--device", "cpu",
                           "--seq-len", "100", "--out", str(tmp_path / "out"), "--plain", "--no-plot", *sets],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "esm2.jsonl").exists()
