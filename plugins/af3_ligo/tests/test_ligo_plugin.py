"""The ``ligo`` plugin without running the model: the yaml config and its overrides, the settings'
plan-time checks, finding the source, and the errors a case gets before anything is built.

Most tests need nothing; the few that read the repo's own yaml skip when Ligo's source is absent.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import af3core.source
from af3core import Case, CaseError
from af3core.provenance import COMMIT_MARKER
from af3core.source import SourceNotFound

from af3_ligo import config as ligo_config
from af3_ligo import plugin, source
from af3_ligo.settings import DEFAULTS, SMALL, check_seq_len, op_impls, validate

try:
    SRC = source.SOURCE.locate()
except SourceNotFound:
    SRC = None
needs_source = pytest.mark.skipif(SRC is None, reason="Ligo's source is absent: set AF3_LIGO_SRC or "
                                  "clone github.com/Ligo-Biosciences/AlphaFold3 into third_party/alphafold3_ligo")


def small_case(mode: str, seq_len: int = 32, **settings) -> Case:
    return Case(plugin="ligo", mode=mode, seq_len=seq_len, device="cpu",
                settings={**DEFAULTS, **SMALL, **settings})


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


def test_override_values_must_be_of_the_yamls_kind(yaml_file):
    raw = ligo_config.load_raw(yaml_file)
    ok = {"config.c_token": "64", "config.msa_module.inf": "1e9", "config.msa_module.eps": 0,
          "config.blocks_per_ckpt": "null", "config.globals.use_deepspeed_evo_attention": "false",
          "config.msa_module.c_z": "not checked: an interpolation"}
    for key, value in ok.items():
        assert ligo_config.check_override(raw, key, value) is None, key
    bad = {"config.c_token": "abc", "config.pairformer_stack.no_blocks": "2.5", "config.msa_module.inf": "true",
           "config.globals.use_deepspeed_evo_attention": "1"}
    for key, value in bad.items():
        err = ligo_config.check_override(raw, key, value)
        assert err and key in err, (key, err)
    with pytest.raises(KeyError, match="an integer"):  # the worker's own check, for a case built by hand
        ligo_config.build_config(yaml_file, {"config.c_token": "abc"})


# --- settings: the plan-time checks (no source needed unless said) --------------------------------

@pytest.mark.parametrize("n, ok", [(32, True), (8, True), (256, True), (30, False), (0, False), (4, False)])
def test_token_counts_must_be_multiples_of_8(n, ok):
    err = check_seq_len(n)
    assert (err is None) == ok
    if not ok:
        assert "multiple of 8" in err


def test_validate_rejects_bad_combinations():
    assert validate({**DEFAULTS, **SMALL}, "cpu") == []
    errors = validate({**DEFAULTS, "msa_impl": "seed", "dtype": "bf16", "cycles": 0, "diffusion_steps": 1}, "cuda")
    assert len(errors) == 3 and sum("seed" in e for e in errors) == 1
    (err,) = validate({**DEFAULTS, "msa_impl": "seed"}, "cpu")
    assert "needs a CUDA GPU" in err
    assert validate({**DEFAULTS, "msa_impl": "seed"}, "cuda") == []
    (err,) = validate(DEFAULTS, "mps")
    assert "cpu or cuda" in err


@pytest.mark.parametrize("key, value", [("msa_rows", 0), ("cycles", 0), ("samples", 0), ("diffusion_steps", 1)])
def test_counts_out_of_range_are_refused(key, value):
    (err,) = validate({**DEFAULTS, key: value}, "cpu")
    assert key in err


@pytest.mark.parametrize("fused", [{"msa_impl": "fused"}, {"tri_attn_impl": "fused"}, {"tri_mul_impl": "fused"},
                                   {"transition_impl": "fused"}, {"kernels": "af3"}])
def test_fused_on_a_cpu_needs_the_triton_interpreter(monkeypatch, fused):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    (err,) = validate({**DEFAULTS, **fused}, "cpu")
    assert "TRITON_INTERPRET=1" in err
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert validate({**DEFAULTS, **fused}, "cpu") == []


def test_cuequivariance_triangle_multiplication_needs_a_cuda_gpu(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # no interpreter runs cuEquivariance's CUDA kernels
    (err,) = validate({**DEFAULTS, "tri_mul_impl": "cueq"}, "cpu")
    assert "tri_mul_impl=cueq" in err and "CUDA GPU" in err
    assert validate({**DEFAULTS, "tri_mul_impl": "cueq", "tri_attn_impl": "fused"}, "cuda") == []
    (err,) = validate({**DEFAULTS, "kernels": "af3", "tri_mul_impl": "cueq"}, "cuda")
    assert "tri_mul_impl=cueq" in err and "kernels=af3" in err


def test_kernels_af3_fuses_every_op_and_refuses_a_contrary_choice():
    assert op_impls({**DEFAULTS, "kernels": "af3"}) == dict.fromkeys(
        ("msa_impl", "tri_attn_impl", "tri_mul_impl", "transition_impl"), "fused")
    assert op_impls({**DEFAULTS, "tri_attn_impl": "fused"}) == {"msa_impl": "torch", "tri_attn_impl": "fused",
                                                               "tri_mul_impl": "torch", "transition_impl": "torch"}
    (err,) = validate({**DEFAULTS, "kernels": "af3", "msa_impl": "seed"}, "cuda")
    assert "msa_impl=seed" in err and "kernels=af3" in err
    assert validate({**DEFAULTS, "kernels": "af3", "msa_impl": "fused"}, "cuda") == []


@needs_source
def test_validate_checks_config_keys_against_the_repo_yaml():
    assert validate({**DEFAULTS, **SMALL, "config.diffusion_module.token_transformer_blocks": "3"}, "cpu") == []
    (err,) = validate({**DEFAULTS, "config.diffusion_module.token_transformer_blockz": 3}, "cpu")
    assert "no key" in err
    (err,) = validate({**DEFAULTS, "config.pairformer_stack.no_blocks": "two"}, "cpu")
    assert "an integer" in err


def test_config_keys_without_the_source_are_checked_for_their_form(monkeypatch, tmp_path):
    monkeypatch.setenv("AF3_LIGO_SRC", str(tmp_path))
    assert validate({**DEFAULTS, "config.anything.at_all": 3}, "cpu") == []
    (err,) = validate({**DEFAULTS, "cycels": 3}, "cpu")
    assert "unknown setting 'cycels'" in err


# --- finding the source ----------------------------------------------------------------------------

def fake_checkout(root: Path, commit: str = "abc1234") -> Path:
    for rel in (source.MODEL_FILE, source.CONFIG_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / COMMIT_MARKER).write_text(commit + "\n")
    return root


def test_source_is_found_in_a_third_party_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("AF3_LIGO_SRC", raising=False)
    monkeypatch.setattr(af3core.source, "third_party_dirs", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(SourceNotFound) as info:
        source.SOURCE.locate()
    assert "was not found" in info.value.reason and "AF3_LIGO_SRC" in info.value.reason
    assert "git clone https://github.com/Ligo-Biosciences/AlphaFold3" in info.value.fix
    assert "621531e" in info.value.fix
    checkout = fake_checkout(tmp_path / "b" / "alphafold3_ligo")
    found = source.SOURCE.locate()
    assert (found.root, found.origin, found.version) == (checkout.resolve(), "third_party", "git:abc1234")
    assert source.config_file(found.root) == checkout.resolve() / "configs" / "model" / "alphafold3.yaml"


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
