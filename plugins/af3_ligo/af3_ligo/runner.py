"""The runner of the ``ligo`` engine: one case, built once, timed pass by pass (imported only where a
case runs: the worker, or the host under ``af3 bench --in-process``)."""
from __future__ import annotations

import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner, nonfinite_outputs

from af3_ligo import build
from af3_ligo.settings import DEFAULTS, check_seq_len, device_error, op_impls

# Ligo's code, run on current torch, warns on every pass about deprecated non-tuple indexing
# (triangular_multiplicative_update.py) and checkpoint's implicit use_reentrant; neither changes
# what runs. Silenced so the worker's log shows what matters.
_QUIET = (
    "Using a non-tuple sequence for multidimensional indexing",
    "torch.utils.checkpoint: the use_reentrant parameter",
    "None of the inputs have requires_grad=True",
)


class LigoRunner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        # The host sends every setting resolved; the defaults only matter when a test builds a Case
        # by hand.
        settings = {**DEFAULTS, **self.case.settings}
        # The host checked these at plan time (settings.validate); a Case built by hand was not.
        err = device_error(self.case.device_type, op_impls(settings), settings["dtype"]) \
            or check_seq_len(self.case.seq_len)
        if err:
            raise CaseError(err)
        for text in _QUIET:
            warnings.filterwarnings("ignore", message=text)
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.dtype = settings["dtype"]
        self.check_finite = bool(settings["check_finite"])
        try:
            built = build.prepare(settings, self.case.mode, self.case.seq_len, self.device)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None
        self.model, self.batch, self.capture = built.model, built.batch, built.capture

        import torch

        from af3_ligo import passes

        self._torch, self._passes = torch, passes
        self.module_times = None
        if settings["module_times"]:
            from af3_ligo.module_times import ModuleTimes

            self.module_times = ModuleTimes(self.model, self.device)
        return built.facts

    def _sync(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def step(self) -> dict[str, Any] | None:
        result = self._passes.run_pass(self.model, self.batch, self.dtype, self.device)
        self._sync()
        outputs = self._passes.outputs_of(result, self.capture)
        bad = nonfinite_outputs(outputs) if self.check_finite else []
        # Drop the outputs before the next pass so they do not add to its memory peak.
        del result, outputs
        if self.capture is not None:
            self.capture.outputs = {}
        if bad:
            raise NonFiniteOutput(f"non-finite values in {', '.join(bad)}")
        return self.module_times.collect() if self.module_times is not None else None

    def teardown(self) -> None:
        self.model = self.batch = self.capture = None
