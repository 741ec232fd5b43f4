"""Protenix's real model on a CPU with the ``small`` preset: the trunk (what runs, finite outputs of
the released widths, the finiteness check) in this process, and the af3 command: listing, usage
errors, and trunk and full bench runs at 32 tokens in a worker.

Skipped with the reason when Protenix (``pip install --no-deps protenix==2.0.0`` plus the plugin's
``run`` extra; scripts/setup.sh does both) or what its model imports is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from af3core import Case, NonFiniteOutput

from af3_protenix import plugin
from af3_protenix.settings import DEFAULTS, SMALL

AVAILABILITY = plugin.check()
pytestmark = pytest.mark.skipif(not AVAILABILITY.ok, reason=f"Protenix cannot run here: {AVAILABILITY.reason}; "
                                                             f"{AVAILABILITY.fix}")
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "protenix" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-protenix distribution is not pip-installed (af3 finds plugins by entry point)",
)
# tf32=False leaves torch's global TF32 flag as it was in this process (other tests share it)
TINY = {**DEFAULTS, **SMALL, "msa_rows": 4, "tf32": False}


@pytest.fixture
def protenix_configs(monkeypatch):
    """Protenix's model config is the installed top-level package ``configs``; Ligo's source, which
    an earlier test of the same pytest process may have put on sys.path, has a ``configs`` package
    too and would shadow it. Workers never share a process; this test builds in this one, so it
    puts Protenix's first for its duration (sys.path and sys.modules come back after)."""
    from pathlib import Path

    import protenix

    site = str(Path(protenix.__file__).resolve().parent.parent)
    monkeypatch.setattr(sys, "path", [site] + [p for p in sys.path if p != site])
    for name in [n for n in sys.modules if n == "configs" or n.startswith("configs.")]:
        monkeypatch.delitem(sys.modules, name)


def test_trunk_runs_embedders_msa_and_pairformer_only_and_non_finite_outputs_fail(protenix_configs):
    """trunk: s and z of the released widths, finite; the Pairformer runs once per cycle; neither the
    diffusion module nor a head runs. A NaN parameter fails the pass with NonFiniteOutput."""
    from af3_protenix.runner import ProtenixRunner

    r = ProtenixRunner(Case(plugin="protenix", mode="trunk", seq_len=12, device="cpu", settings=TINY))
    facts = r.setup()
    calls = {name: [] for name in ("pairformer_stack", "msa_module", "template_embedder", "diffusion_module",
                                   "confidence_head", "distogram_head")}
    for name, seen in calls.items():
        getattr(r.model, name).register_forward_hook(lambda *a, seen=seen: seen.append(1))
    out = r._forward()
    assert out["s"].shape == (12, 384) and out["z"].shape == (12, 12, 128) and out["s_inputs"].shape == (12, 449)
    assert all(bool(out[k].isfinite().all()) for k in ("s_inputs", "s", "z"))
    assert {k: len(v) for k, v in calls.items()} == dict(pairformer_stack=SMALL["cycles"], msa_module=SMALL["cycles"],
                                                         template_embedder=SMALL["cycles"], diffusion_module=0,
                                                         confidence_head=0, distogram_head=0)
    assert facts["steps"] == 0 and facts["layernorm"] == "torch" and facts["tri_attention"] == "torch"
    assert facts["engine_source_version"] == f"protenix {metadata.version('protenix')}"
    assert facts["n_atoms"] == int(r.features["atom_to_token_idx"].shape[0]) > 12 * 4
    assert torch_equal(r._forward()["z"], out["z"])  # every pass reseeds: the same work, the same result
    next(r.model.pairformer_stack.parameters()).data.fill_(float("nan"))
    with pytest.raises(NonFiniteOutput, match="non-finite values in"):
        r.step()
    r.teardown()


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def af3(*args, cwd, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "af3core", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env)


@needs_entry_point
def test_af3_plugins_lists_protenix_available(tmp_path):
    proc = af3("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (entry,) = [e for e in json.loads(proc.stdout) if e["name"] == "protenix"]
    assert entry["available"] and entry["distribution"] == "af3-protenix"
    assert entry["source_version"] == f"protenix {metadata.version('protenix')}"
    assert entry["settings"]["tri_attention"]["choices"] == ["auto", "torch", "triattention", "cuequivariance",
                                                             "deepspeed"]


@needs_entry_point
@pytest.mark.parametrize("args, message", [
    (["--set", "pairformer_blocks=0"], "pairformer_blocks must be >= 1, got 0"),
    (["--set", "tri_attention=cuequivariance"], "tri_attention=cuequivariance needs a CUDA GPU"),
    (["--set", "dtype=fp16"], "expected one of fp32, bf16"),
    (["--set", "nosuch=1"], "unknown setting(s) nosuch"),
])
def test_bad_settings_are_one_line_usage_errors(tmp_path, args, message):
    proc = af3("bench", "--plugin", "protenix", "--device", "cpu", "--out", str(tmp_path / "out"), *args,
               cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "protenix.jsonl").exists()


@needs_entry_point
@pytest.mark.parametrize("mode, extra", [("trunk", []), ("full", ["--set", "steps=3"])])
def test_af3_bench_runs_protenix_in_a_worker(tmp_path, mode, extra):
    proc = af3("bench", "--plugin", "protenix", "--preset", "small", "--mode", mode, "--seq-len", "32",
               "--passes", "1", "--device", "cpu", *extra, "--out", str(tmp_path / "out"), "--plain", "--no-plot",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "protenix.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["ok"] and rows[0]["mode"] == mode and rows[0]["preset"] == "small"
    info = rows[0]["info"]
    assert rows[0]["engine_source_version"] == info["engine_source_version"] == \
        f"protenix {metadata.version('protenix')}"
    assert info["pairformer_blocks"] == SMALL["pairformer_blocks"] and info["n_params"] > 1e7
    assert info["steps"] == (3 if mode == "full" else 0) and info["dtype"] == "fp32"
    assert (info["tri_attention"], info["tri_multiplicative"], info["layernorm"]) == ("torch", "torch", "torch")
    assert info["kernels"] == "attention torch, multiplication torch, LayerNorm torch"
    assert rows[0]["settings"]["check_finite"] is True and rows[0]["elapsed_ms"] > 0  # ok: outputs were finite


BLOCK_BIOTITE = """import sys
class _NoBiotite:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "biotite":
            raise ImportError("biotite is blocked by this test")
sys.meta_path.insert(0, _NoBiotite())
"""


@needs_entry_point
def test_the_model_runs_without_biotite(tmp_path):
    # Protenix's data pipeline imports biotite, its model does not: a GPU machine needs no biotite
    # wheel for it (docs/PROTENIX.md). A sitecustomize on PYTHONPATH makes importing biotite fail in
    # the host and the worker alike.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_BIOTITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"),
                                                                         os.environ.get("PYTHONPATH")]))}
    blocked = subprocess.run([sys.executable, "-c", "import biotite"], capture_output=True, text=True, env=env)
    assert "blocked by this test" in blocked.stderr
    proc = af3("bench", "--plugin", "protenix", "--preset", "small", "--mode", "full", "--seq-len", "32",
               "--passes", "1", "--device", "cpu", "--set", "steps=2", "--out", str(tmp_path / "out"), "--plain",
               "--no-plot", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "protenix.jsonl").read_text().splitlines()]
    assert row["ok"] and row["mode"] == "full"
