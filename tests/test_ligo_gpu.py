"""GPU checks of the ``ligo`` engine plugin (skipped without CUDA or without Ligo's source).

    pytest -m gpu tests/test_ligo_gpu.py -v -s

- the harness's median for the paper trunk at 256 tokens agrees within 3% with a bare loop
  (``plugins/af3_ligo/scripts/standalone_timing.py``) run in the same session;
- the three MSA implementations give the same trunk output at 256 tokens with re-randomised
  weights: ``fused`` must; ``seed`` is reported (its known defect can make it differ, see
  docs/LIGO.md) rather than asserted.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from af3_ligo import source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STANDALONE = ROOT / "plugins" / "af3_ligo" / "scripts" / "standalone_timing.py"

try:
    source.locate()
    NO_SOURCE = None
except source.SourceNotFound as exc:
    NO_SOURCE = str(exc)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(NO_SOURCE is not None, reason=f"Ligo's source is absent: {NO_SOURCE}"),
]


def test_harness_median_agrees_with_a_bare_loop_within_3_percent(tmp_path):
    passes = "5"
    bare = subprocess.run([sys.executable, str(STANDALONE), "--preset", "paper", "--mode", "trunk", "--tokens", "256",
                           "--passes", passes, "--device", "cuda"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert bare.returncode == 0, bare.stderr[-3000:]
    bare_ms = json.loads(bare.stdout.strip().splitlines()[-1])["median_ms"]
    out = tmp_path / "run"
    bench = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "ligo", "--preset", "paper",
                            "--mode", "trunk", "--seq-len", "256", "--passes", passes, "--device", "cuda",
                            "--out", str(out), "--plain", "--no-plot"],
                           capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    with open(out / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok", row
    harness_ms = float(row["median_ms"])
    print(f"\nbare loop {bare_ms:.1f} ms, harness {harness_ms:.1f} ms")
    assert abs(harness_ms - bare_ms) / bare_ms < 0.03


def test_msa_implementations_agree_in_the_model():
    script = """
import json, torch
from af3core import Case
from af3_ligo.presets import DEFAULTS, SMALL
from af3_ligo.runner import LigoRunner
from af3_ligo import engine

def trunk(impl):
    s = {**DEFAULTS, **SMALL, "msa_impl": impl, "weights": "random", "msa_rows": 64, "cycles": 1}
    r = LigoRunner(Case(plugin="ligo", mode="trunk", seq_len=256, device="cuda", settings=s))
    r.setup()
    torch.cuda.empty_cache()
    engine.run_pass(r.model, r.batch, "fp32", "cuda")
    return {k: v.float().cpu() for k, v in r.capture.outputs.items()}

ref = trunk("torch")
rel = lambda x, y: ((x - y).abs().max() / y.abs().max()).item()
print(json.dumps({impl: {k: rel(o[k], ref[k]) for k in ref} for impl, o in
                  (("fused", trunk("fused")), ("seed", trunk("seed")))}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=dict(os.environ, TRITON_ALLOW_NON_CONSTEXPR_GLOBALS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\nrelative max error against msa_impl=torch:", result)
    # TF32 on both sides (the yaml's matmul_precision "high"): agreement to ~1e-3 relative
    assert max(result["fused"].values()) < 1e-2
    if max(result["seed"].values()) >= 1e-2:
        pytest.xfail(f"seed kernel differs from torch by {result['seed']}: known defect (it accumulates into "
                     "an uninitialised torch.empty output buffer), see docs/LIGO.md")
