"""OpenFold3's real model on a CPU with the ``small`` preset at 12-32 tokens: trunk and full modes
(what each runs and what it leaves out), the outputs' dependence on the input and on nothing else,
the finiteness check, the parameters, and the af3 command: listing, usage errors and bench runs in a
worker.

Skipped with the reason when OpenFold3 (``pip install --no-deps openfold3==0.5.0`` plus the plugin's
``run`` extra; scripts/setup.sh does both) or what its model imports is absent.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

from af3core import Case, CaseError, NonFiniteOutput

from af3_openfold3 import plugin
from af3_openfold3.settings import DEFAULTS, SMALL

AVAILABILITY = plugin.check()
pytestmark = pytest.mark.skipif(not AVAILABILITY.ok, reason=f"OpenFold3 cannot run here: {AVAILABILITY.reason}; "
                                                             f"{AVAILABILITY.fix}")
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "openfold3" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-openfold3 distribution is not pip-installed (af3 finds plugins by entry point)",
)
# tf32=False keeps torch's default float32 matmul precision in this process (other tests share it)
TINY = {**DEFAULTS, **SMALL, "msa_rows": 4, "tf32": False}


def runner(mode, seq_len=12, **settings):
    from af3_openfold3.runner import OpenFold3Runner

    r = OpenFold3Runner(Case(plugin="openfold3", mode=mode, seq_len=seq_len, device="cpu",
                             settings={**TINY, **settings}))
    return r, r.setup()


def count_calls(module) -> list:
    calls = []
    module.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_trunk_runs_embedders_msa_and_pairformer_only():
    """trunk = run_trunk: s and z of the released widths, finite; neither the diffusion module nor
    any head runs; the Pairformer runs recycles + 1 times."""
    r, facts = runner("trunk", seq_len=13)
    diffusion, heads = count_calls(r.model.diffusion_module), count_calls(r.model.aux_heads)
    pairformer = count_calls(r.model.pairformer_stack)
    out = r._forward()
    assert out["s"].shape == (1, 13, 384) and out["z"].shape == (1, 13, 13, 128)
    assert all(bool(out[k].isfinite().all()) for k in ("s_input", "s", "z"))
    assert diffusion == [] and heads == [] and len(pairformer) == SMALL["recycles"] + 1
    assert facts["steps"] == 0 and facts["kernels"] == "off" and facts["engine_source_version"].startswith("openfold3 ")
    assert facts["n_atoms"] == int(r.batch["num_atoms_per_token"].sum()) and 0 < facts["zero_weight_matrices"]


@pytest.mark.parametrize("steps, samples", [(3, 1), (2, 2)])
def test_full_makes_one_denoiser_call_per_step_for_all_samples_and_runs_the_heads(steps, samples):
    r, facts = runner("full", steps=steps, samples=samples)
    diffusion, heads = count_calls(r.model.diffusion_module), count_calls(r.model.aux_heads)
    out = r._forward()
    assert len(diffusion) == steps and len(heads) == 1 and (facts["steps"], facts["samples"]) == (steps, samples)
    assert out["atom_positions_predicted"].shape == (1, samples, facts["n_atoms"], 3)
    assert all(bool(out[k].isfinite().all()) for k in ("atom_positions_predicted", "plddt_logits", "pae_logits",
                                                       "pde_logits", "distogram_logits"))


def test_outputs_depend_on_the_input_and_on_nothing_else():
    """Same seed, same batch: the same z, so a pass leaves its batch untouched; another batch on the
    same parameters: another z. With re-randomised weights (no zero-initialised branch), too."""
    import torch

    from af3_openfold3 import batch as batch_mod

    for weights in ("package", "random"):
        r, facts = runner("trunk", weights=weights)
        torch.manual_seed(0)
        first = r._forward()["z"].clone()
        torch.manual_seed(0)
        again = r._forward()["z"]
        assert torch.equal(first, again), weights
        r.batch = batch_mod.synthetic_batch(12, TINY["msa_rows"], TINY["templates"], seed=1)
        other = r._forward()["z"]
        assert (first - other).abs().max() > 1e-3, weights
        assert (facts["zero_weight_matrices"] == 0) == (weights == "random")


def test_toy_runs_every_component_once_in_bf16():
    r, facts = runner("toy", dtype="bf16")
    diffusion, pairformer = count_calls(r.model.diffusion_module), count_calls(r.model.pairformer_stack)
    assert r.step() is None
    assert len(diffusion) == 2 and len(pairformer) == 1 and facts["recycles"] == 0 and facts["dtype"] == "bf16"


def test_non_finite_outputs_fail_the_pass_and_a_setting_the_cpu_cannot_run_is_a_case_error():
    r, _ = runner("trunk")
    next(r.model.pairformer_stack.parameters()).data.fill_(float("nan"))
    with pytest.raises(NonFiniteOutput, match="non-finite values in"):
        r.step()
    with pytest.raises(CaseError, match="kernels=triton needs a CUDA GPU"):
        runner("trunk", kernels="triton")


def af3(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "af3core", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


@needs_entry_point
def test_af3_plugins_lists_openfold3_available(tmp_path):
    proc = af3("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (entry,) = [e for e in json.loads(proc.stdout) if e["name"] == "openfold3"]
    assert entry["available"] and entry["distribution"] == "af3-openfold3"
    assert entry["source_version"] == f"openfold3 {metadata.version('openfold3')}"
    assert entry["settings"]["kernels"]["choices"] == ["auto", "triton", "cueq", "off"]


@needs_entry_point
@pytest.mark.parametrize("args, message", [
    (["--set", "pairformer_blocks=0"], "pairformer_blocks must be >= 1, got 0"),
    (["--set", "kernels=triton"], "kernels=triton needs a CUDA GPU"),
    (["--set", "dtype=fp16"], "expected one of fp32, bf16"),
    (["--set", "steps=many"], "expected an integer"),
    (["--set", "nosuch=1"], "unknown setting(s) nosuch"),
    (["--preset", "huge"], "huge"),
])
def test_bad_settings_are_one_line_usage_errors(tmp_path, args, message):
    proc = af3("bench", "--plugin", "openfold3", "--device", "cpu", "--out", str(tmp_path / "out"), *args,
               cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "openfold3.jsonl").exists()


@needs_entry_point
@pytest.mark.parametrize("mode, extra", [("trunk", []), ("full", ["--set", "steps=3"])])
def test_af3_bench_runs_openfold3_in_a_worker(tmp_path, mode, extra):
    proc = af3("bench", "--plugin", "openfold3", "--preset", "small", "--mode", mode, "--seq-len", "32",
               "--passes", "1", "--device", "cpu", *extra, "--out", str(tmp_path / "out"), "--plain", "--no-plot",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "openfold3.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["ok"] and rows[0]["mode"] == mode and rows[0]["preset"] == "small"
    info = rows[0]["info"]
    assert rows[0]["engine_source_version"] == info["engine_source_version"] == \
        f"openfold3 {metadata.version('openfold3')}"
    assert info["pairformer_blocks"] == SMALL["pairformer_blocks"] and info["n_params"] > 1e7
    assert info["steps"] == (3 if mode == "full" else 0) and rows[0]["settings"]["kernels"] == "auto"
    assert info["kernels"] == "off" and info["matmul_precision"] == "high"  # run_openfold predict's --use_tf32
    assert rows[0]["elapsed_ms"] > 0
