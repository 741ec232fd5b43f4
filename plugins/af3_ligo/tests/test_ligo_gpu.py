"""GPU checks of the ``ligo`` engine plugin (skipped without CUDA or without Ligo's source).

    pytest -m gpu plugins/af3_ligo/tests/test_ligo_gpu.py -v -s

- the harness's median for the paper trunk at 256 tokens agrees within 3% with a bare loop, the
  same case run by ``af3 bench --in-process`` (the same runner in one process: no worker, no pipe)
  in the same session;
- the implementations give the same trunk output at 256 tokens with re-randomised weights:
  ``msa_impl=fused``, ``tri_attn_impl=fused`` and ``kernels=af3`` must in fp32, and ``kernels=af3``
  in bf16 must stay as close to fp32 as the engine's own bf16; ``msa_impl=seed`` is reported (its
  known defect can make it differ, see docs/LIGO.md) rather than asserted.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from af3core.source import SourceNotFound

from af3_ligo.source import SOURCE

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

try:
    SRC = SOURCE.locate()
except SourceNotFound:
    SRC = None

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(SRC is None, reason="Ligo's source is absent: set AF3_LIGO_SRC or clone "
                       "github.com/Ligo-Biosciences/AlphaFold3 into third_party/alphafold3_ligo"),
]


def _median_ms(tmp_path, *extra: str) -> float:
    """``af3 bench`` of the paper trunk at 256 tokens, 5 passes; the summary's median."""
    out = tmp_path / ("in-process" if "--in-process" in extra else "worker")
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "ligo", "--preset", "paper",
                           "--mode", "trunk", "--seq-len", "256", "--passes", "5", "--device", "cuda",
                           "--out", str(out), "--plain", "--no-plot", *extra],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env=dict(os.environ, AF3_LIGO_SRC=str(SRC.root)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok", row
    return float(row["median_ms"])


@pytest.mark.timing
def test_harness_median_agrees_with_a_bare_loop_within_3_percent(tmp_path):
    bare_ms = _median_ms(tmp_path, "--in-process")
    harness_ms = _median_ms(tmp_path)
    print(f"\nbare loop (--in-process) {bare_ms:.1f} ms, harness {harness_ms:.1f} ms")
    assert abs(harness_ms - bare_ms) / bare_ms < 0.03


def test_implementations_agree_in_the_model():
    script = """
import json, torch
from af3core import Case
from af3_ligo import passes
from af3_ligo.runner import LigoRunner
from af3_ligo.settings import DEFAULTS, SMALL

def trunk(dtype="fp32", **extra):
    s = {**DEFAULTS, **SMALL, **extra, "dtype": dtype, "weights": "random", "msa_rows": 64, "cycles": 1}
    r = LigoRunner(Case(plugin="ligo", mode="trunk", seq_len=256, device="cuda", settings=s))
    r.setup()
    torch.cuda.empty_cache()
    passes.run_pass(r.model, r.batch, dtype, "cuda")
    return {k: v.float().cpu() for k, v in r.capture.outputs.items()}

ref = trunk()
rel = lambda x, y: ((x - y).abs().max() / y.abs().max()).item()
runs = {"msa_fused": trunk(msa_impl="fused"), "seed": trunk(msa_impl="seed"),
        "tri_attn_fused": trunk(tri_attn_impl="fused"), "af3": trunk(kernels="af3"),
        "torch_bf16": trunk("bf16"), "af3_bf16": trunk("bf16", kernels="af3")}
from af3core import cuequivariance_error
if cuequivariance_error() is None:  # the public kernel in the engine, where it loads
    runs.update(cueq=trunk(tri_mul_impl="cueq"), cueq_bf16=trunk("bf16", tri_mul_impl="cueq"))
print(json.dumps({name: {k: rel(o[k], ref[k]) for k in ref} for name, o in runs.items()}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TRITON_ALLOW_NON_CONSTEXPR_GLOBALS="1", AF3_LIGO_SRC=str(SRC.root)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\nrelative max error against the torch implementations in fp32:", result)
    # fp32: TF32 on both sides (the yaml's matmul_precision "high"), summed in other orders:
    # agreement to ~1e-3 relative; 1e-2 leaves room for the 48 blocks' growth.
    for name in ("msa_fused", "tri_attn_fused", "af3", "cueq"):
        if name in result:
            assert max(result[name].values()) < 1e-2, (name, result[name])
    # bf16: the engine's own bf16 (autocast) already differs from fp32 by bf16 rounding; on af3
    # kernels it must stay within twice that (the kernels round q, k, v, p to bf16 as cuBLAS does).
    for name in ("af3_bf16", "cueq_bf16"):
        for key, err in result.get(name, {}).items():
            assert err < 2 * result["torch_bf16"][key] + 1e-3, (name, key, result[name], result["torch_bf16"])
    if max(result["seed"].values()) >= 1e-2:
        pytest.xfail(f"seed kernel differs from torch by {result['seed']}: known defect (it accumulates into "
                     "an uninitialised torch.empty output buffer), see docs/LIGO.md")
