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


@pytest.mark.parametrize("installed, error, expected", [
    (True, None, (True, "auto: on")),
    (False, "cuequivariance-torch is not installed", (False, "auto: off (cuequivariance-torch is not installed)")),
    (True, "cuequivariance_ops_torch does not import (ModuleNotFoundError: No module named 'platformdirs')", None),
])
def test_auto_kernels_fall_back_only_when_cuequivariance_is_absent(monkeypatch, installed, error, expected):
    """On a capable GPU `auto` turns the kernels on when cuEquivariance loads and off when it is not
    installed; an installed one that does not load (a --no-deps install without platformdirs did this
    on a GPU, and the torch path was timed as if it were Boltz's default) fails the case with the fix."""
    torch = pytest.importorskip("torch")
    from af3core import CaseError, packages
    from af3_boltz import build

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(packages, "cuequivariance_installed", lambda: installed)
    monkeypatch.setattr(packages, "cuequivariance_error", lambda: error)
    if expected is None:
        with pytest.raises(CaseError, match="installed but does not load.*platformdirs.*use_kernels=off"):
            build.kernels_wanted("auto", "cuda")
    else:
        on, reason = build.kernels_wanted("auto", "cuda")
        assert on is expected[0] and reason.startswith(expected[1])
    assert build.kernels_wanted("off", "cuda") == (False, "off")  # off never looks at the install
