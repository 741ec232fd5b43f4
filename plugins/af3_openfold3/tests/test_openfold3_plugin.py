"""The openfold3 plugin's light parts: settings, presets, plan-time checks, registration. Need
nothing installed but af3-bench."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from af3_openfold3 import plugin
from af3_openfold3.settings import DEFAULTS, PRESETS, SETTINGS, validate

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_openfold3_inference():
    """openfold3 0.5.0 inference: the released depths (48 Pairformer, 4 MSA, 2 template, 24 diffusion
    transformer, 3 atom, 4 confidence blocks), 3 recycles, 200 steps, 5 samples, fp32 with TF32
    matmuls (run_openfold predict --use_tf32), 4 template slots, Triton kernels where they run; the
    small preset keeps the widths and shrinks the rest."""
    assert {k: DEFAULTS[k] for k in ("pairformer_blocks", "msa_blocks", "template_blocks", "diffusion_blocks",
                                     "atom_blocks", "confidence_blocks", "recycles", "steps", "samples", "dtype",
                                     "tf32", "templates", "kernels", "weights")} == \
        dict(pairformer_blocks=48, msa_blocks=4, template_blocks=2, diffusion_blocks=24, atom_blocks=3,
             confidence_blocks=4, recycles=3, steps=200, samples=5, dtype="fp32", tf32=True, templates=4,
             kernels="auto", weights="package")
    assert PRESETS["default"] == {} and set(PRESETS["small"]) <= set(SETTINGS)
    assert set(DEFAULTS) == set(SETTINGS)


@pytest.mark.parametrize("changes, device, message", [
    ({"pairformer_blocks": 0}, "cpu", "pairformer_blocks must be >= 1"),
    ({"samples": 0}, "cpu", "samples must be >= 1"),
    ({"templates": 0}, "cpu", "templates must be >= 1"),
    ({"recycles": -1}, "cpu", "recycles must be >= 0"),
    ({"chunk_size": -4}, "cpu", "chunk_size must be >= 0"),
    ({"steps": 0}, "cpu", "steps must be >= 1"),
    ({"kernels": "triton"}, "cpu", "kernels=triton needs a CUDA GPU"),
    ({"kernels": "cueq"}, "cpu", "kernels=cueq needs a CUDA GPU"),
    ({}, "mps", "cpu or cuda"),
])
def test_plan_time_problems(changes, device, message):
    problems = validate({**DEFAULTS, **changes}, device)
    assert any(message in p for p in problems), problems


def test_valid_settings_pass_and_registration_describes_the_engine():
    assert validate(DEFAULTS, "cuda") == [] and validate({**DEFAULTS, **PRESETS["small"]}, "cpu") == []
    assert validate({**DEFAULTS, "kernels": "triton"}, "cuda") == []
    found = []
    plugin.register_plugins(register=found.append)
    (p,) = found
    assert p.name == "openfold3" and p.modes == ("toy", "trunk", "full") and p.default_mode == "trunk"
    assert p.default_preset == {"cpu": "small", "cuda": "default"}
    availability = p.availability()
    if availability.ok:
        assert availability.source_version.startswith("openfold3 ")
    else:
        assert "pip install --no-deps openfold3==0.5.0" in availability.fix


def test_registering_and_checking_import_neither_torch_nor_openfold3():
    """``af3 plugins`` imports the plugin module and runs its check: importing the ``openfold3``
    package would pull in gemmi (and deepspeed when installed), torch the rest."""
    code = ("import sys; from af3_openfold3 import plugin; found = []; plugin.register_plugins(register=found.append); "
            "[p.availability() for p in found]; "
            "print(sorted(m for m in ('torch', 'openfold3', 'gemmi', 'biotite', 'ml_collections', 'pytorch_lightning') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins" / "af3_openfold3"), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
