"""The DeepMind AF3 plugin: source discovery, stand-ins, settings and the synthetic batch.

Fast tests (no XLA compilation). Those needing DeepMind's source or its JAX stack skip with the
reason when either is absent; the engine runs themselves are in test_deepmind_engine.py.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from importlib import metadata

import pytest

import af3core.source
from af3core.provenance import COMMIT_MARKER
from af3core.source import SourceNotFound

from af3_deepmind import plugin, source, standins
from af3_deepmind.settings import DEFAULT_SHARD_SPEC, PRESETS, SETTINGS, parse_shard_spec, validate


def _source_or_none():
    try:
        return source.locate()
    except SourceNotFound:
        return None


SRC = _source_or_none()
MISSING_JAX = [m for m in ("jax", "haiku", "tokamax") if importlib.util.find_spec(m) is None]
needs_source = pytest.mark.skipif(SRC is None, reason="DeepMind's AlphaFold 3 source is absent: set "
                                  "AF3_DEEPMIND_SRC or clone github.com/google-deepmind/alphafold3 into "
                                  "third_party/alphafold3_deepmind")
needs_jax = pytest.mark.skipif(bool(MISSING_JAX), reason=f"DeepMind's JAX stack is absent (missing: "
                               f"{', '.join(MISSING_JAX)}; pip install jax dm-haiku tokamax)")


def _settings(**overrides):
    values = {k: s.default for k, s in SETTINGS.items()}
    values.update(PRESETS["small"])
    values.update(overrides)
    return values


# --- finding the source -------------------------------------------------------------------------

@pytest.fixture
def no_source_anywhere(monkeypatch, tmp_path):
    """No env var, no third_party folder with the source, no installed package."""
    monkeypatch.delenv(source.SOURCE.env_var, raising=False)
    monkeypatch.setattr(af3core.source, "third_party_dirs", lambda: [tmp_path / "third_party"])
    monkeypatch.setattr(source, "_installed_package", lambda: False)


def fake_checkout(root, commit: str | None = "abc1234"):
    """The one file the plugin looks for, in a checkout's src/, with the commit marker of an exported tree."""
    (root / "src" / "alphafold3" / "model").mkdir(parents=True)
    (root / "src" / "alphafold3" / "model" / "model.py").write_text("")
    if commit:
        (root / COMMIT_MARKER).write_text(commit + "\n")
    return root


def test_missing_source_is_unavailable_with_the_fix(no_source_anywhere):
    availability = plugin.check()
    assert not availability.ok
    assert "was not found" in availability.reason and "no importable alphafold3" in availability.reason
    assert "AF3_DEEPMIND_SRC" in availability.fix
    assert "github.com/google-deepmind/alphafold3" in availability.fix and "c0f97ed" in availability.fix


def test_env_var_pointing_nowhere_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv(source.SOURCE.env_var, str(tmp_path))
    monkeypatch.setattr(source, "_installed_package", lambda: True)  # a set variable is never bypassed
    availability = plugin.check()
    assert not availability.ok and str(tmp_path) in availability.reason and "AF3_DEEPMIND_SRC" in availability.fix


def test_env_var_accepts_a_checkout_or_its_src(monkeypatch, tmp_path):
    fake_checkout(tmp_path)
    for given in (tmp_path, tmp_path / "src"):
        monkeypatch.setenv(source.SOURCE.env_var, str(given))
        found = source.locate()
        assert found.path == (tmp_path / "src").resolve()
        assert found.origin == "AF3_DEEPMIND_SRC" and found.version == "git:abc1234"


def test_third_party_checkout_is_found_and_versioned(no_source_anywhere, tmp_path):
    checkout = fake_checkout(tmp_path / "third_party" / "alphafold3_deepmind", commit=None)
    assert source.locate().version == "unknown"  # no .git, no marker, no version.py
    (checkout / "src" / "alphafold3" / "version.py").write_text("__version__ = '3.0.4'\n")
    found = source.locate()
    assert (found.path, found.origin, found.version) == ((checkout / "src").resolve(), "third_party", "version:3.0.4")


def test_installed_package_is_the_last_resort(no_source_anywhere, monkeypatch):
    monkeypatch.setattr(source, "_installed_package", lambda: True)
    found = source.locate()
    assert found.path is None and found.origin == "installed package" and found.version.startswith("package:")


def test_runner_without_source_raises_a_case_error(no_source_anywhere, monkeypatch):
    from af3core import Case, CaseError
    from af3_deepmind.runner import DeepMindRunner

    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # setup writes it; restore after
    runner = DeepMindRunner(Case(plugin="deepmind", mode="trunk", seq_len=32, device="cpu", settings=_settings()))
    with pytest.raises(CaseError, match="AF3_DEEPMIND_SRC"):
        runner.setup()


@pytest.mark.skipif(
    not any(ep.name == "deepmind" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-deepmind distribution is not pip-installed (its entry point is how af3 finds it)",
)
def test_bench_without_source_exits_2_with_the_message(tmp_path):
    env = dict(os.environ, AF3_DEEPMIND_SRC=str(tmp_path / "nowhere"))
    proc = subprocess.run(
        [sys.executable, "-m", "af3core", "bench", "--plugin", "deepmind", "--device", "cpu", "--seq-len", "32",
         "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "AF3_DEEPMIND_SRC" in proc.stderr and "c0f97ed" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- stand-ins ----------------------------------------------------------------------------------

@pytest.fixture
def fake_off_path(monkeypatch, tmp_path):
    """OFF_PATH_MODULES replaced by: a real stdlib module, an absent one, and a broken one."""
    pkg = tmp_path / "af3bench_broken_mod"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import af3bench_dependency_that_is_absent\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = {"json": "stdlib", "af3bench_absent_mod": "absent", "af3bench_broken_mod": "broken"}
    yield names
    for name in list(sys.modules):
        if name.split(".")[0] in ("af3bench_absent_mod", "af3bench_broken_mod"):
            del sys.modules[name]
    standins._FINDER.roots.discard("af3bench_absent_mod")


def test_standin_only_for_absent_modules(fake_off_path, monkeypatch):
    import json

    monkeypatch.setattr(standins, "OFF_PATH_MODULES", {k: v for k, v in fake_off_path.items() if k != "af3bench_broken_mod"})
    report = standins.install()
    assert report["json"] == "real" and sys.modules["json"] is json and not standins.is_standin(json)
    assert report["af3bench_absent_mod"].startswith("stand-in")
    assert standins.is_standin(sys.modules["af3bench_absent_mod"])


def test_standin_raises_when_used_but_imports_and_annotates(fake_off_path, monkeypatch):
    monkeypatch.setattr(standins, "OFF_PATH_MODULES", {"af3bench_absent_mod": "absent"})
    standins.install()
    from af3bench_absent_mod.sub import Thing  # submodules and names resolve

    assert (Thing | None) is not None  # annotations at import time work
    assert not isinstance(1, Thing)  # type checks answer "no", they do not call anything

    class Sub(Thing):  # and so do base classes
        pass

    with pytest.raises(standins.StandInCalled):
        Thing()
    with pytest.raises(standins.StandInCalled):
        Sub()
    with pytest.raises(standins.StandInCalled):
        Thing.method(1)
    with pytest.raises(standins.StandInCalled):
        list(Thing)


def test_present_but_broken_module_is_an_error_not_a_standin(fake_off_path, monkeypatch):
    monkeypatch.setattr(standins, "OFF_PATH_MODULES", {"af3bench_broken_mod": "broken"})
    with pytest.raises(standins.BrokenModule, match="af3bench_broken_mod is installed but fails to import"):
        standins.install()
    assert "af3bench_broken_mod" not in sys.modules


@needs_source
@needs_jax
def test_real_modules_are_never_shadowed():
    from af3_deepmind import build

    _, report, _ = build.import_source()
    for name in standins.OFF_PATH_MODULES:
        # Whether the module is installed, asked of sys.path itself (past sys.modules and the
        # stand-ins' finder): installed means the real module, absent means a stand-in.
        parent = name.rpartition(".")[0]
        installed = importlib.machinery.PathFinder.find_spec(
            name, sys.modules[parent].__path__ if parent else None) is not None
        module = sys.modules[name]
        assert (report[name] == "real") == (not standins.is_standin(module)), name
        # (A stand-in installed by an earlier build in this process is reported as just "stand-in".)
        if not installed:
            assert standins.is_standin(module) and report[name].startswith("stand-in"), name
        elif report[name] != "real":  # present but its data is not: only the CCD name sets read data
            assert name.endswith("chemical_component_sets"), report[name]
        else:
            assert getattr(module, "__file__", None), name
    # The model's own packages are always real.
    import alphafold3.model.model as model

    assert not standins.is_standin(sys.modules["alphafold3"]) and model.__file__.endswith("model.py")


# --- settings -----------------------------------------------------------------------------------

def test_shard_spec_parsing():
    assert parse_shard_spec(DEFAULT_SHARD_SPEC) == ((2048, None), (None, 1024))
    assert parse_shard_spec("2048:none, 3072:1024, none:512") == ((2048, None), (3072, 1024), (None, 512))
    with pytest.raises(ValueError):
        parse_shard_spec("2048:none")  # no unbounded last entry
    with pytest.raises(ValueError):
        parse_shard_spec("2048")


@pytest.mark.parametrize("device_type, attention, ok", [
    ("cpu", "auto", True), ("cpu", "xla", True), ("cpu", "xla_chunked", True), ("cpu", "triton", False),
    ("cpu", "cudnn", False), ("cuda", "auto", True), ("cuda", "triton", True), ("cuda", "cudnn", True),
    ("mps", "triton", False),
])
def test_attention_needs_cuda_except_xla(device_type, attention, ok):
    errors = validate(_settings(attention=attention), device_type)
    assert (errors == []) == ok, errors
    if not ok:
        assert "needs a CUDA GPU" in errors[0] and "xla, xla_chunked" in errors[0]


@pytest.mark.parametrize("key, value", [("diffusion_steps", 0), ("samples", 0), ("msa_rows", 0),
                                        ("msa_pad_rows", 0), ("recycles", -1), ("templates", -1), ("seed", -1),
                                        ("seed", 1 << 32)])
def test_counts_out_of_range_are_refused(key, value):
    assert validate(_settings(recycles=0, templates=0), "cpu") == []  # the lowest legal values pass
    errors = validate(_settings(**{key: value}), "cpu")
    assert errors and all(key in e for e in errors), errors


def test_inconsistent_msa_rows_and_bad_shard_spec_are_refused():
    (err,) = validate(_settings(msa_rows=32, msa_pad_rows=16), "cpu")
    assert "msa_pad_rows" in err
    (err,) = validate(_settings(pair_transition_shard_spec="10:none"), "cpu")
    assert "unbounded" in err


@needs_source
@needs_jax
def test_default_preset_is_deepminds_inference_configuration():
    from af3_deepmind import build

    build.import_source()
    from alphafold3.model import model, model_config
    from alphafold3.model.pipeline import pipeline

    config, pipe, glob = model.Model.Config(), pipeline.WholePdbPipeline.Config(), model_config.GlobalConfig()
    default = PRESETS["default"]
    assert default["recycles"] == config.num_recycles == 10
    assert default["diffusion_steps"] == config.heads.diffusion.eval.steps == 200
    assert default["samples"] == config.heads.diffusion.eval.num_samples == 5
    assert default["msa_rows"] == config.evoformer.num_msa == 1024
    assert default["msa_pad_rows"] == pipe.msa_crop_size == 16384
    assert default["templates"] == pipe.max_templates == 4
    assert glob.bfloat16 == "all" and default["bf16"] is True
    assert parse_shard_spec(default["pair_transition_shard_spec"]) == tuple(glob.pair_transition_shard_spec)
    assert glob.flash_attention_implementation == "triton"


@needs_source
@needs_jax
def test_config_carries_the_settings():
    from af3_deepmind import build

    build.import_source()
    from af3_deepmind import model as model_mod

    config = model_mod.make_config(
        "full", _settings(recycles=3, diffusion_steps=7, samples=2, msa_rows=8, bf16=False,
                          pair_transition_shard_spec="none:256"), "xla_chunked")
    assert config.num_recycles == 3 and config.heads.diffusion.eval.steps == 7
    assert config.heads.diffusion.eval.num_samples == 2 and config.evoformer.num_msa == 8
    assert config.global_config.bfloat16 == "none"
    assert tuple(config.global_config.pair_transition_shard_spec) == ((None, 256),)
    assert config.global_config.flash_attention_implementation == "xla_chunked"
    toy = model_mod.make_config("toy", _settings(), "xla")
    assert toy.evoformer.pairformer.num_layer == 2 and config.evoformer.pairformer.num_layer == 48


# --- the synthetic batch ------------------------------------------------------------------------

@needs_source
@needs_jax
def test_batch_has_the_pipeline_shapes():
    from af3_deepmind import build

    build.import_source()
    import numpy as np

    from af3_deepmind.batch import BatchSpec, make_batch

    spec = BatchSpec(num_tokens=33, msa_pad_rows=40, msa_depth=24, templates=2, seed=1)
    batch = make_batch(spec)
    assert spec.num_atoms == 800  # 33 * 24 = 792, rounded up to the 32-atom query block
    assert batch["msa"].shape == (40, 33) and batch["msa"].dtype == np.int8
    assert batch["msa_mask"][:24].all() and not batch["msa_mask"][24:].any()
    assert int(batch["num_alignments"]) == 24
    assert np.allclose(batch["profile"].sum(-1), 1.0)
    assert batch["template_atom_positions"].shape == (2, 33, 24, 3) and not batch["template_atom_mask"].any()
    assert batch["ref_pos"].shape == (33, 24, 3) and batch["ref_mask"].sum() == batch["pred_dense_atom_mask"].sum()
    assert batch["seq_mask"].all() and batch["is_protein"].all() and int(batch["seq_length"]) == 33
    assert batch["queries_to_keys:gather_idxs"].shape == (800 // 32, 128)
    assert not any(v.dtype == object for v in batch.values())
    again = make_batch(spec)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)  # seeded: every run folds the same input


def test_gpu_only_attention_on_cpu_is_a_case_error(monkeypatch):
    from af3core import Case, CaseError
    from af3_deepmind.runner import DeepMindRunner

    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    for choice in ("triton", "cudnn"):
        runner = DeepMindRunner(
            Case(plugin="deepmind", mode="trunk", seq_len=32, device="cpu", settings=_settings(attention=choice))
        )
        with pytest.raises(CaseError, match="needs a GPU"):
            runner.setup()
