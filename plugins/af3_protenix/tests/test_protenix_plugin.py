"""The protenix plugin's light parts: settings, presets, plan-time checks, registration. Need
nothing installed but af3-bench."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from af3_protenix import plugin
from af3_protenix.settings import DEFAULTS, PRESETS, SETTINGS, check_seq_len, validate

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_protenix_inference():
    """protenix 2.0.0 `protenix pred` defaults: protenix_base_default_v1.0.0 (48 Pairformer, 4 MSA, 2
    template, 24 diffusion transformer, 3 atom, 4 confidence blocks), 10 cycles, 200 steps, 5 samples,
    bf16, TF32, 4 empty template slots, the kernels chosen where they run; small keeps the widths."""
    assert {k: DEFAULTS[k] for k in ("model", "pairformer_blocks", "msa_blocks", "template_blocks",
                                     "diffusion_blocks", "atom_blocks", "confidence_blocks", "cycles", "steps",
                                     "samples", "dtype", "tf32", "templates", "tri_attention",
                                     "tri_multiplicative", "layernorm", "weights")} == \
        dict(model="protenix_base_default_v1.0.0", pairformer_blocks=48, msa_blocks=4, template_blocks=2,
             diffusion_blocks=24, atom_blocks=3, confidence_blocks=4, cycles=10, steps=200, samples=5, dtype="bf16",
             tf32=True, templates=4, tri_attention="auto", tri_multiplicative="auto", layernorm="auto",
             weights="package")
    assert PRESETS["default"] == {} and set(PRESETS["small"]) <= set(SETTINGS) and set(DEFAULTS) == set(SETTINGS)


@pytest.mark.parametrize("changes, device, message", [
    ({"pairformer_blocks": 0}, "cpu", "pairformer_blocks must be >= 1"),
    ({"cycles": 0}, "cpu", "cycles must be >= 1"),
    ({"samples": 0}, "cpu", "samples must be >= 1"),
    ({"steps": 0}, "cpu", "steps must be >= 1"),
    ({"msa_blocks": -1}, "cpu", "msa_blocks must be >= 0"),
    ({"tri_attention": "cuequivariance"}, "cpu", "tri_attention=cuequivariance needs a CUDA GPU"),
    ({"tri_multiplicative": "cuequivariance"}, "cpu", "tri_multiplicative=cuequivariance needs a CUDA GPU"),
    ({"layernorm": "fast"}, "cpu", "layernorm=fast needs a CUDA GPU"),
    ({}, "mps", "cpu or cuda"),
])
def test_plan_time_problems(changes, device, message):
    problems = validate({**DEFAULTS, **changes}, device)
    assert any(message in p for p in problems), problems


def test_valid_settings_pass_and_registration_describes_the_engine():
    assert validate(DEFAULTS, "cuda") == [] and validate({**DEFAULTS, **PRESETS["small"]}, "cpu") == []
    assert validate({**DEFAULTS, "tri_attention": "triattention", "layernorm": "fast"}, "cuda") == []
    assert check_seq_len(3) and check_seq_len(4) is None
    found = []
    plugin.register_plugins(register=found.append)
    (p,) = found
    assert p.name == "protenix" and p.modes == ("toy", "trunk", "full") and p.default_mode == "trunk"
    assert p.default_preset == {"cpu": "small", "cuda": "default"}
    availability = p.availability()
    if availability.ok:
        assert availability.source_version.startswith("protenix ")
    else:
        assert "pip install --no-deps protenix==2.0.0" in availability.fix


def test_registering_and_checking_import_neither_torch_nor_protenix():
    """``af3 plugins`` imports the plugin module and runs its check: importing ``protenix.model`` would
    pull in torch, rdkit and scipy (and may compile a CUDA extension)."""
    code = ("import sys; from af3_protenix import plugin; found = []; plugin.register_plugins(register=found.append); "
            "[p.availability() for p in found]; "
            "print(sorted(m for m in ('torch', 'protenix', 'configs', 'rdkit', 'scipy', 'ml_collections', 'optree') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins" / "af3_protenix"), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("installed, error, expected", [
    (True, None, "cuequivariance"),
    (False, "cuequivariance-torch is not installed", "torch"),
    (True, "cuequivariance_ops_torch does not import (ModuleNotFoundError: No module named 'platformdirs')", None),
])
def test_auto_triangle_kernels_fall_back_only_when_cuequivariance_is_absent(monkeypatch, installed, error, expected):
    """On a GPU `auto` picks cuEquivariance when it loads and torch when it is not installed; an
    installed one that does not load fails the case with the fix instead of timing the torch path
    as Protenix's default (a --no-deps install without platformdirs did that on a GPU)."""
    from af3core import CaseError, packages
    from af3_protenix import build

    monkeypatch.setattr(packages, "cuequivariance_installed", lambda: installed)
    monkeypatch.setattr(packages, "cuequivariance_error", lambda: error)
    monkeypatch.setattr(build, "_nvcc", lambda: False)
    if expected is None:
        with pytest.raises(CaseError, match="installed but does not load.*platformdirs.*tri_attention=torch"):
            build.kernels_wanted(DEFAULTS, "cuda")
    else:
        chosen = build.kernels_wanted(DEFAULTS, "cuda")
        assert (chosen["tri_attention"], chosen["tri_multiplicative"], chosen["layernorm"]) == (expected, expected, "torch")
    explicit = {**DEFAULTS, "tri_attention": "torch", "tri_multiplicative": "torch"}
    assert build.kernels_wanted(explicit, "cuda")["tri_attention"] == "torch"  # asking for torch never fails
