"""The runner of the ``esm2`` engine: one case, built once, timed pass by pass (imported only where a
case runs: the worker, or the host under ``af3 bench --in-process``).

Modes:
- ``embed`` (default): the model's forward with ``repr_layers=[last]``, as ``esm``'s
  ``extract.py`` asks for embeddings: every layer, the final layer norm, the LM head (the forward
  always computes logits); the final representations ``[batch, L + 2, embed_dim]`` must be finite.
- ``toy``: the same at one layer, for smoke tests.

Each pass runs under ``torch.inference_mode()`` and is timed by the runner itself: CUDA events
around the forward on a GPU, a wall clock on a CPU. That time is the pass's ``elapsed_ms`` (the
harness keeps its own wall clock, which also holds the finiteness check, as ``wall_ms``), and each
pass reports ``ms_per_sequence``, ``ms_per_100_residues`` (elapsed / (batch x L) x 100, L in
residues) and ``residues_per_s``; summary.csv gets their medians.
"""
from __future__ import annotations

import time
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner

from af3_esm2 import build
from af3_esm2.settings import DEFAULTS, validate


def figures(elapsed_ms: float, batch: int, n_residues: int) -> dict[str, float]:
    """The per-pass figures from the pass's time: latency per sequence and per 100 residues,
    throughput in residues per second (BOS and EOS not counted)."""
    residues = batch * n_residues
    return {
        "elapsed_ms": elapsed_ms,
        "ms_per_sequence": elapsed_ms / batch,
        "ms_per_100_residues": elapsed_ms / residues * 100.0,
        "residues_per_s": residues / (elapsed_ms / 1e3) if elapsed_ms > 0 else float("inf"),
    }


class ESM2Runner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        settings = {**DEFAULTS, **self.case.settings}
        problems = validate(settings, self.case.device_type)  # the host checked; a hand-made Case was not
        if problems:
            raise CaseError("; ".join(problems))
        if self.case.mode not in ("embed", "toy"):
            raise CaseError(f"the esm2 plugin has modes embed and toy, not {self.case.mode}")
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.check_finite = bool(settings["check_finite"])
        try:
            built = build.prepare(settings, self.case.mode, self.case.seq_len, self.device)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None
        self.model, self.tokens, self.repr_layer = built.model, built.tokens, built.repr_layer
        self.batch, self.n_residues = int(settings["batch"]), int(self.case.seq_len)
        import torch

        self._torch = torch
        return built.facts

    def forward(self):
        """One forward pass; the final representations ``[batch, L + 2, embed_dim]``."""
        with self._torch.inference_mode():
            out = self.model(self.tokens, repr_layers=[self.repr_layer])
        return out["representations"][self.repr_layer]

    def _timed_forward(self):
        torch = self._torch
        if self.device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            rep = self.forward()
            end.record()
            end.synchronize()
            return rep, start.elapsed_time(end)
        t0 = time.perf_counter()
        rep = self.forward()
        return rep, (time.perf_counter() - t0) * 1e3

    def step(self) -> dict[str, Any]:
        rep, elapsed_ms = self._timed_forward()
        if self.check_finite and not bool(self._torch.isfinite(rep).all()):
            raise NonFiniteOutput("non-finite values in the final representations")
        del rep
        return figures(elapsed_ms, self.batch, self.n_residues)

    def teardown(self) -> None:
        self.model = self.tokens = None
