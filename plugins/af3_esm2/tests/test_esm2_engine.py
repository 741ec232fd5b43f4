"""ESM-2's real model (fair-esm) on a CPU: the final representations' shape and finiteness, the
tokens (BOS, residues, EOS), the 35M model's parameter count, int8 weights when torchao is here, a
NaN parameter failing the pass, and the af3 command with a worker at 8M and 100 residues.

Skipped with the reason when fair-esm or torch is absent (``pip install fair-esm==2.0.0``;
scripts/setup.sh installs it).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import metadata

import pytest

from af3core import Case, CaseError, NonFiniteOutput

from af3_esm2 import plugin
from af3_esm2.settings import DEFAULTS, torchao_installed

pytestmark = pytest.mark.skipif(not plugin.check().ok, reason=f"fair-esm is not installed here: {plugin.FIX}")
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "esm2" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-esm2 distribution is not pip-installed (af3 finds plugins by entry point)",
)


def runner(mode="embed", seq_len=100, **settings):
    from af3_esm2.runner import ESM2Runner

    r = ESM2Runner(Case(plugin="esm2", mode=mode, seq_len=seq_len, device="cpu",
                        settings={**DEFAULTS, "size": "8M", **settings}))
    return r, r.setup()


def test_embed_gives_finite_final_representations_of_shape_batch_by_l_plus_2_by_width():
    r, facts = runner(seq_len=37, batch=3)
    rep = r.forward()
    assert tuple(rep.shape) == (3, 37 + 2, 320) and bool(rep.isfinite().all())
    assert rep.dtype.is_floating_point and float(rep.std()) > 0
    toks = r.tokens
    assert tuple(toks.shape) == (3, 39) and bool((toks[:, 0] == 0).all()) and bool((toks[:, -1] == 2).all())
    assert bool(((toks[:, 1:-1] >= 4) & (toks[:, 1:-1] <= 23)).all())  # the 20 standard amino acids
    assert facts["layers"] == 6 and facts["tokens_per_sequence"] == 39 and facts["n_params"] == 7_512_474
    extra = r.step()
    assert extra["ms_per_100_residues"] == pytest.approx(extra["elapsed_ms"] / (3 * 37) * 100)
    assert extra["residues_per_s"] == pytest.approx(3 * 37 / (extra["elapsed_ms"] / 1e3))


def test_toy_runs_one_layer_and_bf16_casts_the_model():
    r, facts = runner("toy", seq_len=20, dtype="bf16")
    assert facts["layers"] == 1 and len(r.model.layers) == 1
    rep = r.forward()
    assert str(rep.dtype) == "torch.bfloat16" and tuple(rep.shape) == (1, 22, 320) and bool(rep.isfinite().all())


def test_the_35m_model_has_the_released_parameter_count():
    from af3_esm2.model import SIZES, build_model, expected_params, n_params

    model, _ = build_model("35M")
    n = n_params(model)
    assert n == expected_params(12, 480, 20) == 33_501_394  # ~35M: the released esm2_t12_35M_UR50D
    assert 33e6 < n < 36e6 and len(model.layers) == SIZES["35M"].layers and model.embed_dim == 480


def test_seeds_change_the_parameters():
    a, _ = runner(seq_len=16, seed=0)
    b, _ = runner(seq_len=16, seed=1)
    b.tokens = a.tokens
    assert not bool((a.forward() == b.forward()).all())


def test_non_finite_outputs_fail_the_pass():
    r, _ = runner(seq_len=16)
    r.model.emb_layer_norm_after.weight.data.fill_(float("nan"))
    with pytest.raises(NonFiniteOutput, match="final representations"):
        r.step()


def test_fp16_on_a_cpu_is_a_case_error():
    with pytest.raises(CaseError, match="fp16 needs a CUDA device"):
        runner(dtype="fp16")


@pytest.mark.skipif(not torchao_installed(), reason="torchao is not installed here (pip install torchao==0.18.0)")
def test_int8_weights_quantise_every_linear_and_stay_close():
    ref, _ = runner(seq_len=30)
    q, facts = runner(seq_len=30, weights="int8")
    assert facts["torchao_version"] and type(q.model.layers[0].fc1.weight).__name__ != "Parameter"
    a, b = ref.forward(), q.forward()
    assert bool(b.isfinite().all()) and float((a - b).abs().max()) < 0.1 * float(a.abs().max())


@needs_entry_point
def test_af3_bench_runs_esm2_in_a_worker_with_the_per_residue_figures(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "af3core", "bench", "--plugin", "esm2", "--seq-len", "100",
                           "--passes", "3", "--warmup", "0", "--device", "cpu", "--set", "size=8M",
                           "--out", str(tmp_path / "out"), "--plain", "--no-plot"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "esm2.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["ok"] for r in rows)
    for r in rows:
        assert r["mode"] == "embed" and r["seq_len"] == 100 and r["info"]["size"] == "8M"
        assert r["engine_source_version"].startswith("fair-esm ")
        assert r["ms_per_100_residues"] == pytest.approx(r["elapsed_ms"])  # batch 1 x 100 residues
        assert r["residues_per_s"] == pytest.approx(100 / (r["elapsed_ms"] / 1e3))
        assert r["ms_per_sequence"] == pytest.approx(r["elapsed_ms"]) and r["wall_ms"] >= r["elapsed_ms"]
    (summary,) = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert summary["status"] == "ok" and float(summary["ms_per_100_residues"]) > 0
    assert float(summary["residues_per_s"]) == pytest.approx(100 / (float(summary["median_ms"]) / 1e3), rel=1e-6)
    from af3_esm2 import target  # the roadmap check reads the same summary

    assert target.main([str(tmp_path / "out"), "--ms", "1e9"]) == 0 and target.main([str(tmp_path / "out"), "--ms", "0"]) == 1
