"""DeepMind's real AF3 graph on the CPU at 32 tokens, small preset, through the af3 command.

Each run compiles the real model with XLA: trunk takes about 20-30 s on two cores, full about a
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

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = ROOT / "plugins" / "af3_deepmind"
if importlib.util.find_spec("af3_deepmind") is None:
    sys.path.insert(0, str(PLUGIN_DIR))

from af3_deepmind import source  # noqa: E402

try:
    SRC = source.locate()
except source.SourceNotFound:
    SRC = None

pytestmark = [
    pytest.mark.skipif(
        SRC is None or not all(importlib.util.find_spec(m) for m in ("jax", "haiku", "tokamax")),
        reason="DeepMind's AlphaFold 3 source or its JAX stack (jax, dm-haiku, tokamax) is not available",
    ),
    pytest.mark.skipif(
        not any(ep.name == "deepmind" for ep in metadata.entry_points(group="af3bench")),
        reason="the af3-deepmind distribution is not pip-installed (af3 finds plugins by entry point)",
    ),
]

FACTS = ("engine_source_version", "n_params", "attention", "backend", "jax_version", "recycles", "msa_rows",
         "standins", "env_XLA_PYTHON_CLIENT_PREALLOCATE")


def _bench(tmp_path: Path, mode: str, passes: int = 2) -> list[dict]:
    out = tmp_path / f"out-{mode}"
    env = dict(os.environ)
    if SRC.origin != source.ENV_VAR and SRC.path is not None:
        env[source.ENV_VAR] = str(SRC.path)  # the worker runs in tmp_path, away from third_party/
    proc = subprocess.run(
        [sys.executable, "-m", "af3core", "bench", "--plugin", "deepmind", "--mode", mode, "--preset", "small",
         "--seq-len", "32", "--device", "cpu", "--passes", str(passes), "--out", str(out), "--plain",
         "--no-plot"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "deepmind.jsonl").read_text().splitlines()]


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


def test_trunk_32_tokens_small_preset(tmp_path):
    rows = _bench(tmp_path, "trunk")
    info = _check_rows(rows, "trunk", 2)
    # The trunk's parameters are a strict subset of the full model's 368M.
    assert 100_000_000 < info["n_params"] < 300_000_000
    assert info["diffusion_steps"] is None and info["samples"] is None


@pytest.mark.slow
def test_full_32_tokens_small_preset(tmp_path):
    rows = _bench(tmp_path, "full")
    info = _check_rows(rows, "full", 2)
    assert info["n_params"] > 300_000_000
    assert (info["diffusion_steps"], info["samples"]) == (4, 1)


def test_nonfinite_output_fails_the_pass():
    """A NaN in the parameters must surface as a failed pass naming the outputs, not a time."""
    import jax
    import numpy as np

    from af3core import Case, NonFiniteOutput
    from af3_deepmind.runner import DeepMindRunner
    from af3_deepmind.settings import PRESETS, SETTINGS

    settings = {k: s.default for k, s in SETTINGS.items()}
    settings.update(PRESETS["small"], recycles=0)
    old = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
    runner = DeepMindRunner(Case(plugin="deepmind", mode="trunk", seq_len=16, device="cpu", settings=settings))
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
