"""The boltz plugin's light parts: settings, presets, plan-time checks. Need nothing installed but af3-bench."""
import pytest

from af3_boltz import plugin
from af3_boltz.settings import DEFAULTS, PRESETS, SETTINGS, validate


def test_defaults_are_boltz_predicts():
    """boltz predict (2.2.1): 64 Pairformer blocks, 3 recycles, 200 steps, 1 sample, bf16-mixed,
    kernels on a capable GPU; the small preset is a CPU-sized trunk in fp32."""
    assert {k: DEFAULTS[k] for k in ("pairformer_blocks", "recycles", "steps", "samples", "dtype", "use_kernels")} == \
        dict(pairformer_blocks=64, recycles=3, steps=200, samples=1, dtype="bf16", use_kernels="auto")
    assert PRESETS["default"] == {} and PRESETS["small"]["dtype"] == "fp32"
    assert set(DEFAULTS) == set(SETTINGS)


@pytest.mark.parametrize("changes, device, message", [
    ({"pairformer_blocks": 0}, "cpu", "pairformer_blocks must be >= 1"),
    ({"recycles": -1}, "cpu", "recycles must be >= 0"),
    ({"steps": 1}, "cpu", "steps must be >= 2"),
    ({"use_kernels": "on"}, "cpu", "needs a CUDA GPU"),
    ({}, "mps", "cpu or cuda"),
])
def test_plan_time_problems(changes, device, message):
    problems = validate({**DEFAULTS, **changes}, device)
    assert any(message in p for p in problems), problems


def test_valid_settings_pass_and_registration_describes_the_engine():
    assert validate(DEFAULTS, "cuda") == [] and validate({**DEFAULTS, **PRESETS["small"]}, "cpu") == []
    found = []
    plugin.register_plugins(register=found.append)
    (p,) = found
    assert p.name == "boltz" and p.modes == ("toy", "trunk", "full")
    assert p.default_preset == {"cpu": "small", "cuda": "default"}
    availability = p.availability()
    if availability.ok:
        assert availability.source_version.split()[0] in plugin.DISTRIBUTIONS
    else:
        assert "pip install --no-deps boltz==2.2.1" in availability.fix
