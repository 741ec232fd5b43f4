"""Boltz-2's real model on a CPU with the ``small`` preset at 16-32 tokens: the three modes, the
configured number of diffusion steps, the finiteness check, and the af3 command with a worker.

Skipped with the reason when Boltz (``pip install --no-deps boltz==2.2.1`` plus the plugin's
``run`` extra; scripts/setup.sh does both) or torch is absent.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

from af3core import Case, NonFiniteOutput

from af3_boltz import plugin
from af3_boltz.settings import DEFAULTS, SMALL

pytestmark = pytest.mark.skipif(not plugin.check().ok, reason=f"Boltz is not installed here: {plugin.FIX}")
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "boltz" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-boltz distribution is not pip-installed (af3 finds plugins by entry point)",
)
TINY = {**DEFAULTS, **SMALL, "pairformer_blocks": 1, "msa_rows": 4}


def runner(mode, seq_len=16, **settings):
    from af3_boltz.runner import BoltzRunner

    r = BoltzRunner(Case(plugin="boltz", mode=mode, seq_len=seq_len, device="cpu", settings={**TINY, **settings}))
    facts = r.setup()
    return r, facts


def test_trunk_gives_finite_single_and_pair_of_the_right_shapes_and_samples_nothing():
    r, facts = runner("trunk", seq_len=17)  # any token count; atoms are padded to a multiple of 32
    calls = []
    r.model.structure_module.score_model.register_forward_hook(lambda *a: calls.append(1))
    out = r._forward()
    assert out["s"].shape == (1, 17, 384) and out["z"].shape == (1, 17, 17, 128)
    assert all(bool(out[k].isfinite().all()) for k in ("s", "z", "pdistogram"))
    assert calls == [] and "sample_atom_coords" not in out
    assert facts["n_params"] > 1e8 and facts["n_atoms"] % 32 == 0 and facts["use_kernels"] is False


@pytest.mark.parametrize("steps", [3, 5])
def test_full_runs_the_configured_number_of_denoiser_calls_and_the_confidence_head(steps):
    r, facts = runner("full", steps=steps)
    calls = []
    r.model.structure_module.score_model.register_forward_hook(lambda *a: calls.append(1))
    out = r._forward()
    assert len(calls) == steps and facts["steps"] == steps
    assert out["sample_atom_coords"].shape[-1] == 3 and "plddt" in out and bool(out["plddt"].isfinite().all())


def test_non_finite_outputs_fail_the_pass():
    r, _ = runner("trunk")
    next(r.model.parameters()).data.fill_(float("nan"))
    with pytest.raises(NonFiniteOutput, match="non-finite values in"):
        r.step()


def test_the_seed_fixes_the_parameters():
    """The parameters are random per seed (not zeros, not a checkpoint): two seeds, two trunks; and
    one seed, one model (Boltz samples its init with scipy from numpy's unseeded state: the plugin
    draws it with torch, which the seed fixes)."""
    import torch

    a, _ = runner("trunk", seed=0)
    b, _ = runner("trunk", seed=1)
    c, _ = runner("trunk", seed=0)
    assert not bool((a._forward()["z"] == b._forward()["z"]).all())
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))


@needs_entry_point
def test_af3_bench_runs_boltz_in_a_worker(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "boltz", "--seq-len", "16",
                           "--passes", "2", "--device", "cpu", "--set", "pairformer_blocks=1", "--set", "msa_rows=4",
                           "--out", str(tmp_path / "out"), "--plain", "--no-plot"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "boltz.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["ok"] for r in rows)
    assert rows[0]["info"]["boltz_distribution"] in plugin.DISTRIBUTIONS and rows[0]["preset"] == "small"
    assert rows[0]["engine_source_version"].startswith(rows[0]["info"]["boltz_distribution"])
    assert "kernels: torch" in proc.stdout  # on a CPU the kernels resolve to Boltz's torch path, and it says so
