"""Ligo's real model on a CPU at 16-32 tokens with the ``small`` preset: the three modes, the MSA
implementations, bf16, the finiteness check, and the af3 command with a worker and ``--in-process``.

Skipped with the reason when Ligo's source (``AF3_LIGO_SRC`` or ``third_party/alphafold3_ligo``)
or PyTorch is absent.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from importlib import metadata

import pytest

from af3core import Case, NonFiniteOutput
from af3core.source import SourceNotFound

from af3_ligo.runner import LigoRunner
from af3_ligo.settings import DEFAULTS, SMALL
from af3_ligo.source import SOURCE

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")
from af3_ligo import passes  # noqa: E402 - imports torch

try:
    SRC = SOURCE.locate()
except SourceNotFound:
    SRC = None
pytestmark = pytest.mark.skipif(SRC is None, reason="Ligo's source is absent: set AF3_LIGO_SRC or clone "
                                "github.com/Ligo-Biosciences/AlphaFold3 into third_party/alphafold3_ligo")
needs_entry_point = pytest.mark.skipif(
    not any(ep.name == "ligo" for ep in metadata.entry_points(group="af3bench")),
    reason="the af3-ligo distribution is not pip-installed (af3 finds plugins by entry point)",
)


def small_case(mode: str, seq_len: int = 32, **settings) -> Case:
    return Case(plugin="ligo", mode=mode, seq_len=seq_len, device="cpu",
                settings={**DEFAULTS, **SMALL, **settings})


def count_denoiser_calls(model) -> list:
    """The sampler calls ``self.forward`` (hooks do not fire): count through an instance wrapper."""
    calls, dm = [], model.diffusion_module
    inner = dm.forward

    def forward(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    dm.forward = forward
    return calls


def test_torch_impl_matches_the_repo_module_without_its_expansion():
    """The ``torch`` choice computes what Ligo's naive module computes (which expands v to S x R x R)."""
    from af3_ligo.ligo_import import import_model
    from af3_ligo.msa import TorchPairWeightedAveraging

    import_model(SRC.root)
    naive_cls = sys.modules["src.models.msa_module"].MSAWeightedAveragingNaive
    g = torch.Generator().manual_seed(1)
    B, S, R, H, C = 1, 3, 7, 2, 5
    v, gate = torch.randn(B, S, R, H, C, generator=g), torch.randn(B, S, R, H, C, generator=g)
    b = torch.randn(B, R, R, H, generator=g)
    b[:, :, 5:] -= 1e8  # masked columns, as Ligo adds inf * (mask - 1)
    want = naive_cls(H, C)(v, b, gate, S, R)
    got = TorchPairWeightedAveraging()(v, b, gate, S, R)
    assert got.shape == (B, S, R, H * C)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_trunk_runs_the_trunk_and_samples_nothing():
    runner = LigoRunner(small_case("trunk"))
    facts = runner.setup()
    assert facts["engine_source_version"] == SRC.version != "unknown"
    assert facts["msa_impl"] == "torch" and facts["msa_modules_swapped"] == 1
    assert facts["pairformer_blocks"] == 2 and facts["c_token"] == 64 and facts["n_params"] > 100_000
    assert facts["use_deepspeed_evo_attention"] is False
    denoiser_calls = count_denoiser_calls(runner.model)
    runner.compile()
    assert runner.step() is None
    out = passes.run_pass(runner.model, runner.batch, "fp32", "cpu")
    s, z = runner.capture.outputs["s_trunk"], runner.capture.outputs["z_trunk"]
    assert s.shape == (1, 32, 64) and z.shape == (1, 32, 32, 32)
    assert out["sampled_positions"].numel() == 0 and denoiser_calls == []
    assert bool(torch.isfinite(z).all())


def test_module_times_split_a_pass_by_kind_of_module():
    runner = LigoRunner(small_case("trunk", seq_len=16, module_times=True))
    runner.setup()
    runner.compile()
    t0 = time.perf_counter()
    figures = runner.step()
    wall_ms = (time.perf_counter() - t0) * 1e3
    for group in ("tri_attn", "tri_mul", "transition", "pairformer", "msa_module", "attention_pair_bias"):
        assert figures[f"ms_{group}"] > 0, group
    # nested groups count their own time; the MSA module and the templates hold triangle ops too
    outer = figures["ms_pairformer"] + figures["ms_msa_module"] + figures.get("ms_template", 0.0)
    assert figures["ms_tri_attn"] + figures["ms_tri_mul"] < outer < wall_ms
    assert "ms_diffusion" not in figures  # the trunk samples nothing
    assert runner.step().keys() == figures.keys()  # each pass its own sums


def test_full_runs_the_configured_number_of_diffusion_steps():
    runner = LigoRunner(small_case("full", diffusion_steps=4, samples=2))
    facts = runner.setup()
    assert (facts["diffusion_steps"], facts["samples"], facts["cycles"]) == (4, 2, 2)
    calls = count_denoiser_calls(runner.model)
    runner.compile()
    assert len(calls) == 3  # steps 1..n-1 each call the denoiser once (the forward hard-codes 200)
    out = passes.run_pass(runner.model, runner.batch, "fp32", "cpu")
    pos = out["sampled_positions"]
    assert pos.shape == (1, 2, 128, 3) and bool(torch.isfinite(pos).all())
    assert out["distogram_logits"].shape == (1, 32, 32, 64)


def test_non_finite_outputs_fail_the_pass():
    runner = LigoRunner(small_case("trunk", cycles=1))
    runner.setup()
    with torch.no_grad():
        norm = next(m for m in runner.model.pairformer.modules() if isinstance(m, torch.nn.LayerNorm))
        norm.weight.fill_(math.nan)
    with pytest.raises(NonFiniteOutput, match="non-finite values in .*_trunk"):
        runner.step()
    runner.check_finite = False  # what check_finite=false sets: the pass is timed regardless
    assert runner.step() is None


FUSED_CHOICES = {"msa": {"msa_impl": "fused"}, "tri_attn": {"tri_attn_impl": "fused"},
                 "tri_mul": {"tri_mul_impl": "fused"}, "transition": {"transition_impl": "fused"},
                 "af3": {"kernels": "af3"}, "af3_ln_linear": {"kernels": "af3", "ln_linear_impl": "fused"}}
ZEROED = ("msa", "tri_attn", "tri_mul", "transition")


@pytest.mark.skipif(importlib.util.find_spec("af3_kernels") is None,
                    reason="af3-kernels is not installed (pip install -e plugins/af3_kernels)")
def test_fused_ops_give_the_same_model_output():
    """Each op on af3 kernels (msa_impl, tri_attn_impl, tri_mul_impl, transition_impl = fused, and
    kernels=af3 for all) against
    the torch implementations: re-randomised weights (the repo zero-initialises many output
    projections), 16 tokens, 4 MSA rows, on the GPU when there is one; without one the kernels run in
    Triton's interpreter in a fresh process (it must see TRITON_INTERPRET=1 before triton is first
    imported). Runs with each op's output replaced by zeros show the comparison can fail."""
    script = textwrap.dedent("""
        import json, sys, torch
        from af3core import Case
        from af3_ligo import passes
        from af3_ligo.runner import LigoRunner
        from af3_ligo.settings import DEFAULTS, SMALL
        DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
        CHOICES, ZEROED = json.loads(sys.argv[1]), json.loads(sys.argv[2])

        class ZeroMSA(torch.nn.Module):
            def forward(self, v, b, g, *rest):
                return torch.zeros_like(g).flatten(-2)

        def zero_update(x, *args, **kwargs):
            return torch.zeros_like(x)

        def trunk(extra, zero=None):
            s = {**DEFAULTS, **SMALL, **extra, "weights": "random", "msa_rows": 4, "cycles": 1}
            r = LigoRunner(Case(plugin="ligo", mode="trunk", seq_len=16, device=DEVICE, settings=s))
            r.setup()
            for m in r.model.modules():
                if zero == "msa" and type(m).__name__ == "MSAPairWeightedAveraging":
                    m.msa = ZeroMSA()
                if zero == "tri_attn" and type(m).__name__.startswith("TriangleAttention"):
                    m.forward = zero_update
                if zero == "tri_mul" and type(m).__name__.startswith("TriangleMultiplication"):
                    m.forward = zero_update
                if zero == "transition" and type(m).__name__ == "Transition":
                    m.forward = zero_update
            passes.run_pass(r.model, r.batch, "fp32", DEVICE)
            return {k: v.double().cpu() for k, v in r.capture.outputs.items()}

        ref = trunk({})
        rel = lambda x, y: ((x - y).abs().max() / y.abs().max()).item()
        result = {name: {k: rel(o[k], ref[k]) for k in ref} for name, o in
                  [(name, trunk(extra)) for name, extra in CHOICES.items()]
                  + [("zero_" + op, trunk({}, zero=op)) for op in ZEROED]}
        print(json.dumps(result))
    """)
    env = dict(os.environ, AF3_LIGO_SRC=str(SRC.root))
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(FUSED_CHOICES), json.dumps(ZEROED)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\nrelative max error against the torch implementations:", result)
    # CPU: 1e-4. CUDA: 1e-3; the H200 gave 3.0e-4 on s_trunk for msa_impl=fused (2026-12-03): the
    # fp32 GPU paths (cuBLAS, the fused kernels) sum in other orders than the CPU, and the trunk's
    # LayerNorms amplify it; still 10x below what removing either op changes.
    tolerance = 1e-3 if torch.cuda.is_available() else 1e-4
    for choice in FUSED_CHOICES:
        for name, err in result[choice].items():
            assert err < tolerance, f"{choice}: {name} differs from torch by {err:.2e} (relative)"
    for op in ZEROED:
        for name, err in result["zero_" + op].items():
            assert err > 1e-2, f"removing {op} changed {name} by only {err:.2e}: vacuous check"


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    outs = {}
    for dtype in ("fp32", "bf16"):
        runner = LigoRunner(small_case("trunk", seq_len=16, dtype=dtype, weights="random", cycles=1, msa_rows=4))
        runner.setup()
        passes.run_pass(runner.model, runner.batch, dtype, "cpu")
        outs[dtype] = runner.capture.outputs["z_trunk"].float()
    err = ((outs["bf16"] - outs["fp32"]).abs().max() / outs["fp32"].abs().max()).item()
    assert 0 < err < 0.05  # bf16 really ran (not bit-identical) and stayed near fp32


# --- through the af3 command: a worker per case, and --in-process ----------------------------------

def _bench(tmp_path, *extra: str) -> tuple[list[dict], dict]:
    """The JSONL rows and meta.json of ``af3 bench`` of one small case (16 tokens, 1 cycle, 1 block)."""
    out = tmp_path / ("in-process" if "--in-process" in extra else "worker")
    proc = subprocess.run(
        [sys.executable, "-m", "af3core", "bench", "--plugin", "ligo", "--preset", "small", "--mode", "trunk",
         "--seq-len", "16", "--passes", "2", "--device", "cpu", "--set", "cycles=1",
         "--set", "config.pairformer_stack.no_blocks=1", "--out", str(out), "--plain", "--no-plot", *extra],
        cwd=tmp_path, env=dict(os.environ, AF3_LIGO_SRC=str(SRC.root)), capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "ligo.jsonl").read_text().splitlines()]
    return rows, json.loads((out / "meta.json").read_text())


@needs_entry_point
def test_a_worker_and_in_process_run_the_same_case(tmp_path):
    """``--in-process`` is the harness-vs-bare-loop cross-check: the same runner without worker or
    pipe. Both must give rows of the same case, the same settings and the same facts."""
    worker, worker_meta = _bench(tmp_path)
    inproc, inproc_meta = _bench(tmp_path, "--in-process")
    assert (worker_meta["in_process"], inproc_meta["in_process"]) == (False, True)
    for rows in (worker, inproc):
        assert [(r["pass_index"], r["warmup"], r["ok"]) for r in rows] == [(0, False, True), (1, False, True)]
        assert all(r["elapsed_ms"] > 0 and r["compile_ms"] > 0 for r in rows)
    assert worker[0]["settings"] == inproc[0]["settings"]
    assert worker[0]["settings"]["config.pairformer_stack.no_blocks"] == 1  # a --set string, typed by the yaml
    assert worker[0]["info"] == inproc[0]["info"]
    assert worker[0]["info"]["engine_source_version"] == SRC.version and worker[0]["info"]["pairformer_blocks"] == 1
    assert worker[0]["worker_pid"] != inproc[0]["worker_pid"]



@pytest.mark.skipif(importlib.util.find_spec("af3_kernels") is None,
                    reason="af3-kernels is not installed (pip install -e plugins/af3_kernels)")
def test_cuequivariance_triangle_multiplication_refuses_what_cannot_run(monkeypatch):
    """tri_mul_impl=cueq on a model: where cuEquivariance does not load, every module is left as it
    is and the error says why, with the fix (the GPU test compares its outputs when it loads)."""
    from af3_ligo import kernels, tri_mul

    runner = LigoRunner(small_case("trunk", cycles=1))
    runner.setup()
    forwards = [m.forward for m in runner.model.modules() if type(m).__name__.startswith("TriangleMultiplicat")]
    monkeypatch.setattr("af3_kernels.tri_mul.cueq.cuequivariance_error", lambda: "cuequivariance-torch is not installed")
    with pytest.raises(kernels.FusedUnavailable, match="tri_mul_impl=cueq: cuEquivariance does not load: "
                                                       "cuequivariance-torch is not installed; fix: pip install"):
        tri_mul.install(runner.model, "cueq", "ieee")
    assert forwards and forwards == [m.forward for m in runner.model.modules()
                                     if type(m).__name__.startswith("TriangleMultiplicat")]
