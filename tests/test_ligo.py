"""The ``ligo`` engine plugin: Ligo Biosciences' PyTorch AlphaFold 3 with random parameters.

The config and plugin tests need nothing; the tests that run the model need Ligo's source
(``AF3_LIGO_SRC`` or ``third_party/alphafold3_ligo``) and skip with the reason without it. All run
on a CPU at 16-32 tokens with the ``small`` preset.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from af3core import Case, CaseError, NonFiniteOutput
from af3_ligo import config as ligo_config
from af3_ligo import plugin, source
from af3_ligo.presets import DEFAULTS, SMALL

ROOT = Path(__file__).resolve().parent.parent
STANDALONE = ROOT / "plugins" / "af3_ligo" / "scripts" / "standalone_timing.py"

try:
    SOURCE = source.locate()
except source.SourceNotFound as exc:
    SOURCE, NO_SOURCE = None, str(exc)
needs_source = pytest.mark.skipif(SOURCE is None, reason="Ligo's source is absent: set AF3_LIGO_SRC or "
                                  "clone github.com/Ligo-Biosciences/AlphaFold3 into third_party/alphafold3_ligo")


def small_case(mode: str, seq_len: int = 32, **settings) -> Case:
    return Case(plugin="ligo", mode=mode, seq_len=seq_len, device="cpu",
                settings={**DEFAULTS, **SMALL, **settings})


def count_denoiser_calls(model) -> list:
    """The sampler calls ``self.forward`` (hooks do not fire): count through an instance wrapper."""
    calls, dm = [], model.diffusion_module
    inner = dm.forward

    def forward(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    dm.forward = forward
    return calls


# --- configuration (no source needed: a yaml written like Ligo's) ---------------------------------

YAML = """\
defaults:
  - optimizer: fused_adamw
c_token: 384
c_pair: 128
blocks_per_ckpt: 1
msa_module:
  c_token: ${model.c_token}
  c_z: ${model.c_pair}
  inf: 1e8
  eps: -1E-3
pairformer_stack:
  c_s: ${model.c_token}
  no_blocks: 48
globals:
  chunk_size: null
  use_deepspeed_evo_attention: true
"""


@pytest.fixture
def yaml_file(tmp_path) -> Path:
    path = tmp_path / "alphafold3.yaml"
    path.write_text(YAML)
    return path


def test_yaml_floats_without_a_dot_are_floats(yaml_file):
    cfg = ligo_config.build_config(yaml_file, {})
    # Plain PyYAML (YAML 1.1) would hand the model the string "1e8"
    assert cfg.msa_module.inf == 1e8 and isinstance(cfg.msa_module.inf, float)
    assert cfg.msa_module.eps == -1e-3
    assert "defaults" not in cfg  # Hydra's training-only list is dropped
    assert cfg["globals"].chunk_size is None


def test_overrides_reach_interpolations_and_unknown_keys_fail(yaml_file):
    cfg = ligo_config.build_config(yaml_file, {"config.c_token": 64, "config.pairformer_stack.no_blocks": "2"})
    assert cfg.msa_module.c_token == 64 and cfg.pairformer_stack.c_s == 64  # via ${model.c_token}
    assert cfg.pairformer_stack.no_blocks == 2  # string from --set parsed as yaml
    assert cfg.msa_module.c_z == 128
    with pytest.raises(KeyError, match="no key 'pairformer_stack.no_blockz'"):
        ligo_config.build_config(yaml_file, {"config.pairformer_stack.no_blockz": 2})
    with pytest.raises(KeyError, match="section"):
        ligo_config.build_config(yaml_file, {"config.msa_module": 2})


# --- plugin description (cheap, no source needed) -------------------------------------------------

def test_registering_imports_neither_torch_nor_ligo():
    code = "import sys, af3_ligo.plugin; print(sorted(m for m in ('torch', 'triton', 'src') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("n, ok", [(32, True), (8, True), (256, True), (30, False), (0, False), (4, False)])
def test_token_counts_must_be_multiples_of_8(n, ok):
    err = plugin.check_seq_len(n)
    assert (err is None) == ok
    if not ok:
        assert "multiple of 8" in err


def test_validate_rejects_bad_combinations():
    assert plugin.validate({**DEFAULTS, **SMALL}, "cpu") == []
    errors = plugin.validate({**DEFAULTS, "msa_impl": "seed", "dtype": "bf16", "cycles": 0, "diffusion_steps": 1},
                             "cuda")
    assert len(errors) == 3 and sum("seed" in e for e in errors) == 1
    (err,) = plugin.validate({**DEFAULTS, "msa_impl": "seed"}, "cpu")
    assert "needs a CUDA GPU" in err


@needs_source
def test_validate_checks_config_keys_against_the_repo_yaml():
    assert plugin.validate({**DEFAULTS, "config.diffusion_module.token_transformer_blocks": 3}, "cpu") == []
    (err,) = plugin.validate({**DEFAULTS, "config.diffusion_module.token_transformer_blockz": 3}, "cpu")
    assert "no key" in err


# --- a missing source (runs everywhere) -----------------------------------------------------------

def test_missing_source_is_reported_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("AF3_LIGO_SRC", str(tmp_path))
    avail = plugin.check()
    assert not avail.ok and "AF3_LIGO_SRC" in avail.reason and "git clone" in avail.fix
    from af3_ligo.runner import LigoRunner

    with pytest.raises(CaseError, match="AF3_LIGO_SRC.*fix: .*git clone"):
        LigoRunner(small_case("trunk")).setup()


def test_bench_exits_2_without_the_source(tmp_path):
    env = dict(os.environ, AF3_LIGO_SRC=str(tmp_path / "nothing"))
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "ligo", "--seq-len", "32",
                           "--out", str(tmp_path / "out"), "--plain", "--no-plot"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "AF3_LIGO_SRC" in proc.stderr and "git clone" in proc.stderr


def test_unusable_msa_choices_on_a_cpu_are_case_errors(monkeypatch):
    from af3_ligo.runner import LigoRunner

    with pytest.raises(CaseError, match="seed.*CUDA"):
        LigoRunner(small_case("trunk", msa_impl="seed")).setup()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(CaseError, match="TRITON_INTERPRET=1"):
        LigoRunner(small_case("trunk", msa_impl="fused")).setup()


# --- the real model on a CPU ----------------------------------------------------------------------

def test_torch_impl_matches_the_repo_module_without_its_expansion():
    """The ``torch`` choice computes what Ligo's naive module computes (which expands v to S x R x R)."""
    torch = pytest.importorskip("torch")
    from af3_ligo.msa import TorchPairWeightedAveraging

    if SOURCE is None:
        pytest.skip("Ligo's source is absent (the reference is its MSAWeightedAveragingNaive)")
    from af3_ligo.ligo_import import import_model

    import_model(SOURCE.root)
    naive_cls = sys.modules["src.models.msa_module"].MSAWeightedAveragingNaive
    g = torch.Generator().manual_seed(1)
    B, S, R, H, C = 1, 3, 7, 2, 5
    v, gate = torch.randn(B, S, R, H, C, generator=g), torch.randn(B, S, R, H, C, generator=g)
    b = torch.randn(B, R, R, H, generator=g)
    b[:, :, 5:] -= 1e8  # masked columns, as Ligo adds inf * (mask - 1)
    want = naive_cls(H, C)(v, b, gate, S, R)
    got = TorchPairWeightedAveraging()(v, b, gate, S, R)
    assert got.shape == (B, S, R, H * C)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@needs_source
def test_trunk_runs_the_trunk_and_samples_nothing():
    torch = pytest.importorskip("torch")
    from af3_ligo import engine
    from af3_ligo.runner import LigoRunner

    runner = LigoRunner(small_case("trunk"))
    facts = runner.setup()
    assert facts["engine_source_version"] == SOURCE.version != "unknown"
    assert facts["msa_impl"] == "torch" and facts["msa_modules_swapped"] == 1
    assert facts["pairformer_blocks"] == 2 and facts["c_token"] == 64 and facts["n_params"] > 100_000
    assert facts["use_deepspeed_evo_attention"] is False
    denoiser_calls = count_denoiser_calls(runner.model)
    runner.compile()
    assert runner.step() is None
    out = engine.run_pass(runner.model, runner.batch, "fp32", "cpu")
    s, z = runner.capture.outputs["s_trunk"], runner.capture.outputs["z_trunk"]
    assert s.shape == (1, 32, 64) and z.shape == (1, 32, 32, 32)
    assert out["sampled_positions"].numel() == 0 and denoiser_calls == []
    assert bool(torch.isfinite(z).all())


@needs_source
def test_full_runs_the_configured_number_of_diffusion_steps():
    torch = pytest.importorskip("torch")
    from af3_ligo import engine
    from af3_ligo.runner import LigoRunner

    runner = LigoRunner(small_case("full", diffusion_steps=4, samples=2))
    facts = runner.setup()
    assert (facts["diffusion_steps"], facts["samples"], facts["cycles"]) == (4, 2, 2)
    calls = count_denoiser_calls(runner.model)
    runner.compile()
    assert len(calls) == 3  # steps 1..n-1 each call the denoiser once (the forward hard-codes 200)
    out = engine.run_pass(runner.model, runner.batch, "fp32", "cpu")
    pos = out["sampled_positions"]
    assert pos.shape == (1, 2, 128, 3) and bool(torch.isfinite(pos).all())
    assert out["distogram_logits"].shape == (1, 32, 32, 64)


@needs_source
def test_non_finite_outputs_fail_the_pass():
    torch = pytest.importorskip("torch")
    from af3_ligo.runner import LigoRunner

    runner = LigoRunner(small_case("trunk", cycles=1))
    runner.setup()
    with torch.no_grad():
        norm = next(m for m in runner.model.pairformer.modules() if isinstance(m, torch.nn.LayerNorm))
        norm.weight.fill_(math.nan)
    with pytest.raises(NonFiniteOutput, match="non-finite values in .*_trunk"):
        runner.step()
    runner.check_finite = False  # what check_finite=false sets: the pass is timed regardless
    assert runner.step() is None


@needs_source
def test_torch_and_fused_give_the_same_model_output():
    """Re-randomised weights (the repo zero-initialises the MSA branch's output projection), 16
    tokens, 4 MSA rows; the fused kernel runs in Triton's interpreter in a fresh process (it must see
    TRITON_INTERPRET=1 before triton is first imported). A third run with the averaging replaced by
    zeros shows the comparison can fail."""
    pytest.importorskip("torch")
    try:
        import importlib.util

        if importlib.util.find_spec("af3_kernels.msa_pwa.function") is None:
            raise ImportError
    except ImportError:
        pytest.skip("af3-kernels is not installed (pip install -e plugins/af3_kernels)")
    script = textwrap.dedent(f"""
        import json, torch
        from af3core import Case
        from af3_ligo.presets import DEFAULTS, SMALL
        from af3_ligo.runner import LigoRunner
        from af3_ligo import engine

        class Zero(torch.nn.Module):
            def forward(self, v, b, g, *rest):
                return torch.zeros_like(g).flatten(-2)

        def trunk(impl, zero_msa=False):
            s = {{**DEFAULTS, **SMALL, "msa_impl": impl, "weights": "random", "msa_rows": 4, "cycles": 1}}
            r = LigoRunner(Case(plugin="ligo", mode="trunk", seq_len=16, device="cpu", settings=s))
            r.setup()
            if zero_msa:
                for m in r.model.modules():
                    if type(m).__name__ == "MSAPairWeightedAveraging":
                        m.msa = Zero()
            engine.run_pass(r.model, r.batch, "fp32", "cpu")
            return r.capture.outputs

        a, b, z = trunk("torch"), trunk("fused"), trunk("torch", zero_msa=True)
        rel = lambda x, y: ((x - y).abs().max() / y.abs().max()).item()
        print(json.dumps({{k: [rel(b[k], a[k]), rel(z[k], a[k])] for k in a}}))
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (fused_err, zero_err) in result.items():
        assert fused_err < 1e-4, f"{name}: fused differs from torch by {fused_err:.2e} (relative)"
        assert zero_err > 1e-2, f"{name}: removing the MSA averaging changed only {zero_err:.2e}: vacuous check"


@needs_source
def test_bf16_autocast_runs_and_stays_close_to_fp32():
    torch = pytest.importorskip("torch")
    from af3_ligo import engine
    from af3_ligo.runner import LigoRunner

    outs = {}
    for dtype in ("fp32", "bf16"):
        runner = LigoRunner(small_case("trunk", seq_len=16, dtype=dtype, weights="random", cycles=1, msa_rows=4))
        runner.setup()
        engine.run_pass(runner.model, runner.batch, dtype, "cpu")
        outs[dtype] = runner.capture.outputs["z_trunk"].float()
    err = ((outs["bf16"] - outs["fp32"]).abs().max() / outs["fp32"].abs().max()).item()
    assert 0 < err < 0.05  # bf16 really ran (not bit-identical) and stayed near fp32


@needs_source
def test_standalone_script_times_the_same_case(tmp_path):
    proc = subprocess.run([sys.executable, str(STANDALONE), "--preset", "small", "--tokens", "16", "--passes", "2",
                           "--device", "cpu", "--set", "cycles=1", "--set", "config.pairformer_stack.no_blocks=1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["engine_source_version"] == SOURCE.version
    assert len(result["pass_ms"]) == 2 and result["median_ms"] > 0 and result["msa_impl"] == "torch"
