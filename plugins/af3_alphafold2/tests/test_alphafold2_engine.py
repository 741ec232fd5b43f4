"""DeepMind's real AlphaFold 2 graph (model_1_ptm, 48 Evoformer blocks) on the CPU at 32 residues,
small preset, through the af3 command (a worker per case): one trunk and one full pass.

The two cases run as two concurrent ``af3 bench`` processes (tracing and XLA compilation are mostly
single-threaded, so on two cores they overlap): about 40-60 s on a 2-core machine. Skipped with
the reason when the source or its JAX stack is absent.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from importlib import metadata
from types import SimpleNamespace

import pytest

from af3core.source import SourceNotFound

from af3_alphafold2 import source

try:
    SRC = source.locate()
except SourceNotFound:
    SRC = None
MISSING_JAX = [m for m in ("jax", "haiku", "ml_collections") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.skipif(SRC is None, reason="DeepMind's AlphaFold 2 source is absent: set AF2_SRC or clone "
                       "github.com/google-deepmind/alphafold into third_party/alphafold2"),
    pytest.mark.skipif(bool(MISSING_JAX), reason=f"AlphaFold 2's JAX stack is absent (missing: "
                       f"{', '.join(MISSING_JAX)}; pip install jax dm-haiku ml-collections)"),
    pytest.mark.skipif(
        not any(ep.name == "alphafold2" for ep in metadata.entry_points(group="af3bench")),
        reason="the af3-alphafold2 distribution is not pip-installed (af3 finds plugins by entry point)",
    ),
]
MODES = ("trunk", "full")
FACTS = ("engine_source_version", "n_params", "backend", "jax_version", "recycles", "msa_rows", "extra_msa_rows",
         "evoformer_blocks", "subbatch_size", "clip_keywords_patched", "env_XLA_PYTHON_CLIENT_PREALLOCATE")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``af3 bench`` of the small preset at 32 residues, one pass, trunk and full side by side."""
    tmp = tmp_path_factory.mktemp("af2")
    env = dict(os.environ)
    if SRC.origin != source.SOURCE.env_var:
        env[source.SOURCE.env_var] = str(SRC.path)  # found through ./third_party: the run's cwd is elsewhere
    procs = {}
    for mode in MODES:
        procs[mode] = subprocess.Popen(
            [sys.executable, "-m", "af3core", "bench", "--plugin", "alphafold2", "--mode", mode, "--preset", "small",
             "--seq-len", "32", "--device", "cpu", "--passes", "1", "--warmup", "0", "--out", str(tmp / mode),
             "--plain", "--no-plot"],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    results = {}
    for mode, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        rows_file = tmp / mode / "alphafold2.jsonl"
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
        results[mode] = SimpleNamespace(rc=proc.returncode, output=out, rows=rows)
    return results


def _check(run, mode: str) -> dict:
    assert run.rc == 0, run.output[-3000:]
    (row,) = run.rows
    assert row["ok"] is True and row["error"] == "", row.get("traceback")  # ok: outputs were finite
    assert (row["mode"], row["preset"], row["seq_len"], row["warmup"]) == (mode, "small", 32, False)
    assert math.isfinite(row["elapsed_ms"]) and row["elapsed_ms"] > 0
    assert row["compile_ms"] > 0 and row["compile_info"]["xla_compile_ms"] > 0
    assert row["engine_source_version"] == SRC.version and row["first_execution"] is True
    info = row["info"]
    for key in FACTS:
        assert info.get(key) is not None, key
    assert (info["backend"], info["recycles"], info["feature_leading_dim"]) == ("cpu", 0, 1)
    assert (info["msa_rows"], info["extra_msa_rows"], info["templates"]) == (4, 16, 0)
    assert info["evoformer_blocks"] == 48 and info["model_config"] == "model_1_ptm"
    return info


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_small_preset_32_residues_one_finite_pass(runs, mode):
    info = _check(runs[mode], mode)
    if mode == "trunk":
        assert 80_000_000 < info["n_params"] < 92_000_000 and info["structure_layers"] is None
    else:
        assert info["n_params"] > 92_000_000 and info["structure_layers"] == 8
