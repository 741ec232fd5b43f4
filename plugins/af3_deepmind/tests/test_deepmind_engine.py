"""DeepMind's real AF3 graph on the CPU at 16-32 tokens, small preset: through the af3 command (a
worker per case, and ``--in-process``) and through the runner directly.

Each run compiles the real model with XLA: trunk takes about 20-40 s on two cores, full about a
minute (marked slow). Skipped with the reason when the source or its JAX stack is absent.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from af3core.source import SourceNotFound

from af3_deepmind import source

try:
    SRC = source.locate()
except SourceNotFound:
    SRC = None
MISSING_JAX = [m for m in ("jax", "haiku", "tokamax") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.skipif(SRC is None, reason="DeepMind's AlphaFold 3 source is absent: set AF3_DEEPMIND_SRC or "
                       "clone github.com/google-deepmind/alphafold3 into third_party/alphafold3_deepmind"),
    pytest.mark.skipif(bool(MISSING_JAX), reason=f"DeepMind's JAX stack is absent (missing: "
                       f"{', '.join(MISSING_JAX)}; pip install jax dm-haiku tokamax)"),
]
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "deepmind" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-deepmind distribution is not pip-installed (af3 finds plugins by entry point)",
)

FACTS = ("engine_source_version", "n_params", "attention", "backend", "jax_version", "recycles", "msa_rows",
         "standins", "env_XLA_PYTHON_CLIENT_PREALLOCATE")


def _bench(tmp_path: Path, mode: str, passes: int = 2, *extra: str) -> tuple[list[dict], dict]:
    """The JSONL rows and meta.json of ``af3 bench`` of one small-preset case at 32 tokens."""
    out = tmp_path / f"out-{mode}{''.join(extra)}"
    env = dict(os.environ)
    if SRC.origin != source.SOURCE.env_var and SRC.path is not None:
        env[source.SOURCE.env_var] = str(SRC.path)  # found through ./third_party: the run's cwd is elsewhere
    proc = subprocess.run(
        [sys.executable, "-m", "af3core", "bench", "--plugin", "deepmind", "--mode", mode, "--preset", "small",
         "--seq-len", "32", "--device", "cpu", "--passes", str(passes), "--out", str(out), "--plain",
         "--no-plot", *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "deepmind.jsonl").read_text().splitlines()]
    return rows, json.loads((out / "meta.json").read_text())


def _check_rows(rows: list[dict], mode: str, passes: int) -> dict:
    # The plugin warms up once by default: its first execution is recorded but kept apart.
    assert [(r["warmup"], r["pass_index"]) for r in rows] == [(True, 0)] + [(False, i) for i in range(passes)]
    assert rows[0]["first_execution"] is True and rows[1]["first_execution"] is False
    for row in rows:
        assert row["ok"] is True and row["error"] == ""
        assert row["mode"] == mode and row["preset"] == "small" and row["seq_len"] == 32
        assert row["elapsed_ms"] > 0 and row["compile_ms"] > 0 and math.isfinite(row["elapsed_ms"])
        assert row["engine_source_version"] == SRC.version
        assert row["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    info = rows[0]["info"]
    for key in FACTS:
        assert info.get(key) is not None, key
    assert info["engine_source_version"] == SRC.version
    assert (info["backend"], info["attention"], info["recycles"], info["msa_rows"]) == ("cpu", "xla", 1, 16)
    assert rows[0]["settings"]["diffusion_steps"] == 4 and rows[0]["settings"]["templates"] == 0
    return info


@needs_entry_point
def test_trunk_32_tokens_small_preset_in_a_worker_and_in_process(tmp_path):
    rows, meta = _bench(tmp_path, "trunk")
    assert meta["in_process"] is False
    info = _check_rows(rows, "trunk", 2)
    # The trunk's parameters are a strict subset of the full model's 368M.
    assert 100_000_000 < info["n_params"] < 300_000_000
    assert info["diffusion_steps"] is None and info["samples"] is None
    # The same case without worker or pipe (the harness-vs-bare-loop cross-check): the same
    # settings and the same facts about what was built.
    inproc, meta = _bench(tmp_path, "trunk", 2, "--in-process")
    assert meta["in_process"] is True
    same = _check_rows(inproc, "trunk", 2)
    assert inproc[0]["settings"] == rows[0]["settings"]
    timing = ("batch_ms", "params_ms")  # how long building took, not what was built
    assert {k: v for k, v in same.items() if k not in timing} == {k: v for k, v in info.items() if k not in timing}


@pytest.mark.slow
@needs_entry_point
def test_full_32_tokens_small_preset(tmp_path):
    rows, _ = _bench(tmp_path, "full")
    info = _check_rows(rows, "full", 2)
    assert info["n_params"] > 300_000_000
    assert (info["diffusion_steps"], info["samples"]) == (4, 1)


def test_nonfinite_output_fails_the_pass():
    """A NaN in the parameters must surface as a failed pass naming the outputs, not a time."""
    import jax
    import numpy as np

    from af3core import Case, NonFiniteOutput, devices
    from af3_deepmind.runner import DeepMindRunner
    from af3_deepmind.settings import PRESETS, SETTINGS

    settings = {k: s.default for k, s in SETTINGS.items()}
    settings.update(PRESETS["small"], recycles=0)
    old = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    # On the machine's best device: in a test process that may already hold JAX's GPU backend, a
    # CPU case cannot make the CPU the default any more (workers can: each is a fresh process).
    device = "cuda" if devices.gpu_count() else "cpu"
    runner = DeepMindRunner(Case(plugin="deepmind", mode="trunk", seq_len=16, device=device, settings=settings))
    try:
        runner.setup()
        params = runner._built.params
        module = next(m for m in params if m.endswith("single_activations"))
        poisoned = np.array(params[module]["weights"], dtype=np.float32)
        poisoned[0, 0] = np.nan
        params[module]["weights"] = jax.device_put(poisoned.astype(params[module]["weights"].dtype))
        runner.compile()
        with pytest.raises(NonFiniteOutput, match="single"):
            runner.step()
    finally:
        runner.teardown()
        if old is not None:
            os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = old
