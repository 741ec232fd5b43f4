"""The AlphaFold 2 plugin: discovery, source discovery, settings and the synthetic features.

Fast tests (no XLA compilation). Those needing DeepMind's AlphaFold 2 source or its JAX stack skip
with the reason when either is absent; the engine runs themselves are in test_alphafold2_engine.py.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from types import SimpleNamespace

import pytest

import af3core.source
from af3core.provenance import COMMIT_MARKER
from af3core.source import SourceNotFound

from af3_alphafold2 import plugin, source
from af3_alphafold2.settings import PRESETS, SETTINGS, check_seq_len, validate


def _source_or_none():
    try:
        return source.locate()
    except SourceNotFound:
        return None


SRC = _source_or_none()
MISSING_JAX = [m for m in ("jax", "haiku", "ml_collections") if importlib.util.find_spec(m) is None]
SKIP_SOURCE = ("DeepMind's AlphaFold 2 source is absent: set AF2_SRC or clone github.com/google-deepmind/alphafold "
               "into third_party/alphafold2")
needs_source = pytest.mark.skipif(SRC is None, reason=SKIP_SOURCE)
needs_jax = pytest.mark.skipif(bool(MISSING_JAX), reason=f"AlphaFold 2's JAX stack is absent (missing: "
                               f"{', '.join(MISSING_JAX)}; pip install jax dm-haiku ml-collections)")
installed = pytest.mark.skipif(
    not any(ep.name == "alphafold2" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-alphafold2 distribution is not pip-installed (af3 finds plugins by entry point)",
)


def _settings(**overrides):
    values = {k: s.default for k, s in SETTINGS.items()}
    values.update(PRESETS["small"])
    values.update(overrides)
    return values


def _af3(*args, env=None, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "af3core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


# --- discovery ----------------------------------------------------------------------------------

def test_registers_one_engine_with_both_modes():
    found = []
    plugin.register_plugins(register=found.append)
    (p,) = found
    assert p.name == "alphafold2" and p.kind == "engine" and p.modes == ("trunk", "full")
    assert p.runner == "af3_alphafold2.runner:AlphaFold2Runner" and p.default_preset == "small"
    assert set(p.presets) == {"small", "default"} and set(p.settings) == set(SETTINGS)


@installed
def test_af3_plugins_lists_it(tmp_path):
    proc = _af3("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"alphafold2"' in proc.stdout and "msa_rows" in proc.stdout


# --- finding the source -------------------------------------------------------------------------

@pytest.fixture
def no_source_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv(source.SOURCE.env_var, raising=False)
    monkeypatch.setattr(af3core.source, "third_party_dirs", lambda: [tmp_path / "third_party"])


def fake_checkout(root, commit: str | None = "abc1234"):
    """The files the plugin looks for, with the commit marker of an exported tree."""
    (root / "alphafold" / "model").mkdir(parents=True)
    for name in ("modules.py", "config.py"):
        (root / "alphafold" / "model" / name).write_text("")
    if commit:
        (root / COMMIT_MARKER).write_text(commit + "\n")
    return root


def test_missing_source_is_unavailable_with_the_fix(no_source_anywhere):
    availability = plugin.check()
    assert not availability.ok and "was not found" in availability.reason
    assert "AF2_SRC" in availability.fix
    assert "github.com/google-deepmind/alphafold" in availability.fix and "c77e5d2" in availability.fix


def test_env_var_pointing_nowhere_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("AF2_SRC", str(tmp_path))
    availability = plugin.check()
    assert not availability.ok and str(tmp_path) in availability.reason and "AF2_SRC" in availability.fix


def test_env_var_checkout_is_found_with_its_marker_commit(monkeypatch, tmp_path):
    fake_checkout(tmp_path)
    monkeypatch.setenv("AF2_SRC", str(tmp_path))
    found = source.locate()
    assert (found.path, found.origin, found.version) == (tmp_path.resolve(), "AF2_SRC", "git:abc1234")


def test_third_party_tree_without_commit_reports_its_package_version(no_source_anywhere, tmp_path):
    checkout = fake_checkout(tmp_path / "third_party" / "alphafold2", commit=None)
    assert source.locate().version == "unknown"
    (checkout / "alphafold" / "version.py").write_text("__version__ = '2.3.2'\n")
    found = source.locate()
    assert (found.path, found.origin, found.version) == (checkout.resolve(), "third_party", "version:2.3.2")


def test_runner_without_source_raises_a_case_error(no_source_anywhere, monkeypatch):
    from af3core import Case, CaseError
    from af3_alphafold2.runner import AlphaFold2Runner

    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # setup writes it; restore after
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", ""))  # likewise (CPU case)
    runner = AlphaFold2Runner(Case(plugin="alphafold2", mode="trunk", seq_len=32, device="cpu", settings=_settings()))
    with pytest.raises(CaseError, match="AF2_SRC"):
        runner.setup()


@installed
def test_bench_without_source_exits_2_with_the_message(tmp_path):
    env = dict(os.environ, AF2_SRC=str(tmp_path / "nowhere"))
    proc = _af3("bench", "--plugin", "alphafold2", "--device", "cpu", "--seq-len", "32", "--out",
                str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "AF2_SRC" in proc.stderr and "c77e5d2" in proc.stderr and "Traceback" not in proc.stderr


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("msa_rows", 0), ("extra_msa_rows", 0), ("recycles", -1), ("recycles", 65),
                                        ("templates", -1), ("subbatch_size", -1), ("seed", -1), ("seed", 1 << 32)])
def test_counts_out_of_range_are_refused(key, value):
    assert validate(_settings(recycles=0, templates=0, subbatch_size=0), "cpu") == []  # the lowest legal values
    errors = validate(_settings(**{key: value}), "cpu")
    assert errors and all(key in e for e in errors), errors


def test_presets_and_sizes():
    assert validate(_settings(), "cpu") == [] and validate({**_settings(), **PRESETS["default"]}, "cuda") == []
    assert check_seq_len(1) and check_seq_len(2) is None


@installed
@pytest.mark.parametrize("args, text", [
    (["--set", "msa_rows=0"], "msa_rows must be at least 1"),
    (["--set", "matmul_precision=bf16"], "matmul_precision"),
    (["--mode", "toy"], "toy"),
])
@needs_jax
def test_bad_settings_exit_2_with_one_line(tmp_path, args, text):
    # The plan checks availability first: a stub checkout stands in for the source (nothing runs).
    env = dict(os.environ, AF2_SRC=str(fake_checkout(tmp_path / "src")))
    proc = _af3("bench", "--plugin", "alphafold2", "--device", "cpu", "--seq-len", "32", "--out",
                str(tmp_path / "out"), *args, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.jsonl"))


@needs_source
@needs_jax
def test_default_preset_is_deepminds_model_1_ptm_inference_configuration():
    from af3_alphafold2 import build

    build.import_source()
    from alphafold.model import config

    cfg = config.model_config("model_1_ptm")
    default = PRESETS["default"]
    assert default["recycles"] == cfg.model.num_recycle == cfg.data.common.num_recycle == 3
    templates = cfg.data.eval.max_templates
    assert default["templates"] == templates == 4 and cfg.model.embeddings_and_evoformer.template.enabled
    # reduce_msa_clusters_by_max_templates: the template rows take 4 of the 512 clusters.
    assert cfg.data.common.reduce_msa_clusters_by_max_templates
    assert default["msa_rows"] == cfg.data.eval.max_msa_clusters - templates == 508
    assert default["extra_msa_rows"] == cfg.data.common.max_extra_msa == 5120
    assert default["subbatch_size"] == cfg.model.global_config.subbatch_size == 4
    assert cfg.model.embeddings_and_evoformer.evoformer_num_block == 48
    assert cfg.model.heads.structure_module.num_layer == 8
    assert cfg.model.heads.predicted_aligned_error.weight > 0  # the _ptm head
    assert "bfloat16" not in cfg.model.global_config  # the monomer graph is float32 only


@needs_source
@needs_jax
def test_config_carries_the_settings():
    from af3_alphafold2 import build

    build.import_source()
    from af3_alphafold2 import model as model_mod

    cfg = model_mod.make_config(_settings(recycles=2, msa_rows=8, extra_msa_rows=24, templates=3, subbatch_size=0))
    assert cfg.model.num_recycle == 2 and cfg.model.global_config.subbatch_size is None
    assert cfg.data.eval.max_msa_clusters == 11 and cfg.data.common.max_extra_msa == 24
    assert cfg.model.embeddings_and_evoformer.template.enabled
    off = model_mod.make_config(_settings(templates=0))
    assert not off.model.embeddings_and_evoformer.template.enabled and off.model.global_config.subbatch_size == 4


# --- the synthetic features ---------------------------------------------------------------------

@needs_source
@needs_jax
def test_features_have_the_eval_pipeline_shapes():
    from af3_alphafold2 import build

    build.import_source()
    import numpy as np

    from af3_alphafold2.features import FeatureSpec, make_features

    spec = FeatureSpec(num_res=33, recycles=2, msa_rows=10, extra_msa_rows=24, templates=4, seed=1)
    f = make_features(spec)
    assert all(v.shape[0] == 3 for v in f.values())  # every feature carries the recycles + 1 axis
    assert f["msa_feat"].shape == (3, 10, 33, 49) and f["target_feat"].shape == (3, 33, 22)
    assert f["extra_msa"].shape == (3, 24, 33) and f["extra_msa"].max() < 22
    assert f["template_all_atom_positions"].shape == (3, 4, 33, 37, 3) and not f["template_mask"].any()
    assert f["atom37_atom_exists"].shape == (3, 33, 37) and f["atom14_atom_exists"].shape == (3, 33, 14)
    assert f["seq_length"].shape == (3,) and int(f["seq_length"][0]) == 33
    assert np.array_equal(f["msa_feat"][0, 0, :, :23].argmax(-1), f["aatype"][0])  # row 0 is the query
    assert not np.array_equal(f["msa_feat"][0], f["msa_feat"][1])  # a fresh MSA sample per recycle
    assert np.allclose(f["msa_feat"][..., 25:48].sum(-1), 1.0, atol=1e-5)  # cluster profile
    # Every atom14 slot that exists maps to an atom37 slot that exists.
    a14, to37, a37 = f["atom14_atom_exists"][0], f["residx_atom14_to_atom37"][0], f["atom37_atom_exists"][0]
    assert (np.take_along_axis(a37, to37, -1)[a14 > 0] == 1).all()
    again = make_features(spec)
    assert all(np.array_equal(f[k], again[k]) for k in f)  # seeded: every run folds the same input


@needs_source
@needs_jax
def test_random_parameters_scale_by_fan_in_without_stack_axes():
    from af3_alphafold2 import build

    build.import_source()
    import numpy as np

    from af3_alphafold2 import model as model_mod
    from af3_alphafold2.features import FeatureSpec, make_features
    from af3core.jaxrun import count_haiku_params

    assert model_mod.stack_axes("alphafold/alphafold_iteration/evoformer/evoformer_iteration/pair_transition/transition1") == 1
    assert model_mod.stack_axes("a/template_pair_stack/__layer_stack_no_state/pair_transition/transition1") == 1
    assert model_mod.stack_axes("alphafold/alphafold_iteration/structure_module/initial_projection") == 0
    settings = _settings()
    cfg = model_mod.make_config(settings)
    params = model_mod.random_params("trunk", cfg, make_features(FeatureSpec(8, 0, 2, 2, 0)), seed=0)
    w = params["alphafold/alphafold_iteration/evoformer/evoformer_iteration/msa_transition/transition1"]["weights"]
    assert w.shape == (48, 256, 1024) and abs(float(w.std()) - 256 ** -0.5) < 0.1 * 256 ** -0.5
    assert count_haiku_params(params) > 80_000_000
    assert not any("structure_module" in m for m in params)  # trunk: a subset of the full model's names


# --- the runner ---------------------------------------------------------------------------------

def test_nonfinite_output_fails_the_pass():
    """A NaN in an output must surface as a failed pass naming the output, not as a time."""
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    from af3core import Case, NonFiniteOutput
    from af3_alphafold2.runner import AlphaFold2Runner
    from af3core.jaxrun import with_finite_flag

    runner = AlphaFold2Runner(Case(plugin="alphafold2", mode="trunk", seq_len=8, device="cpu", settings={}))
    runner._built = SimpleNamespace(params={"w": jnp.array([1.0, jnp.nan])}, key=jnp.zeros(2), batch={})
    runner._compiled = jax.jit(with_finite_flag(lambda p, k, b: {"pair": p["w"] * 2, "ids": jnp.arange(2)}))
    runner._executions = 0
    with pytest.raises(NonFiniteOutput, match="pair"):
        runner.step()
    runner._built.params["w"] = jnp.array([1.0, 2.0])
    assert runner.step() == {"first_execution": True}
