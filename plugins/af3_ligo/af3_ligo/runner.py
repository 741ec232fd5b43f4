"""The worker-side runner of the ``ligo`` engine: one case, built once, timed pass by pass."""
from __future__ import annotations

import os
import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner

from af3_ligo import build, plugin, source
from af3_ligo.presets import DEFAULTS

# Ligo's code, run on current torch, warns on every pass about deprecated non-tuple indexing
# (triangular_multiplicative_update.py) and checkpoint's implicit use_reentrant; neither changes
# what runs. Silenced so the worker's log shows what matters.
_QUIET = (
    "Using a non-tuple sequence for multidimensional indexing",
    "torch.utils.checkpoint: the use_reentrant parameter",
    "None of the inputs have requires_grad=True",
)


def device_error(device_type: str, impl: str, dtype: str) -> str | None:
    """Why this device cannot run these choices, in one line; None when it can."""
    if device_type not in ("cpu", "cuda"):
        return f"the ligo plugin runs on cpu or cuda, not {device_type}"
    if impl == "seed":
        if device_type != "cuda":
            return ("msa_impl=seed is the repo's Triton kernel and needs a CUDA GPU; "
                    "use msa_impl=torch (or fused with TRITON_INTERPRET=1) on a CPU")
        if dtype != "fp32":
            return "msa_impl=seed runs in fp32 only: use dtype=fp32 or msa_impl=torch|fused"
    if impl == "fused" and device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return ("msa_impl=fused on a CPU runs the Triton kernel in Triton's interpreter: "
                "set TRITON_INTERPRET=1 (slow; for correctness checks, not timings)")
    return None


class LigoRunner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        # The host sends every setting resolved; the defaults only matter when a test or script
        # builds a Case by hand.
        settings = {**DEFAULTS, **self.case.settings}
        err = device_error(self.case.device_type, settings["msa_impl"], settings["dtype"]) \
            or plugin.check_seq_len(self.case.seq_len)
        if err:
            raise CaseError(err)
        for text in _QUIET:
            warnings.filterwarnings("ignore", message=text)
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.dtype = settings["dtype"]
        self.check_finite = bool(settings["check_finite"])
        try:
            built = build.prepare(settings, self.case.mode, self.case.seq_len, self.device)
        except (source.SourceNotFound, build.BuildError) as exc:
            raise CaseError(str(exc)) from None
        self.model, self.batch, self.capture = built.model, built.batch, built.capture

        import torch

        from af3_ligo import engine

        self._torch, self._engine = torch, engine
        return built.facts

    def _sync(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def step(self) -> dict[str, Any] | None:
        result = self._engine.run_pass(self.model, self.batch, self.dtype, self.device)
        self._sync()
        outputs = self._engine.outputs_of(result, self.capture)
        bad = self._engine.non_finite(outputs) if self.check_finite else []
        # Drop the outputs before the next pass so they do not add to its memory peak.
        del result, outputs
        if self.capture is not None:
            self.capture.outputs = {}
        if bad:
            raise NonFiniteOutput(f"non-finite values in {', '.join(bad)}")
        return None

    def teardown(self) -> None:
        self.model = self.batch = self.capture = None
