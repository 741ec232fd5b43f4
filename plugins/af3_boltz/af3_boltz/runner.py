"""The runner of the ``boltz`` engine: one case, built once, timed pass by pass (imported only where a
case runs: the worker, or the host under ``af3 bench --in-process``).

Modes, with the model's own switches (no submodule is called by hand):
- ``trunk``: ``skip_run_structure`` and no confidence: input embedding, templates, MSA module and
  Pairformer with the recycles, the distogram head; outputs s, z, the distogram.
- ``full``: the call ``Boltz2.predict_step`` makes: the trunk, diffusion sampling with ``steps``
  steps and ``samples`` samples, the confidence head (with ``confidence``).
- ``toy``: ``full`` with 0 recycles, 2 steps, 1 sample: every component once.
Each pass runs under ``torch.inference_mode()`` and, for bf16, autocast (Lightning's bf16-mixed).
"""
from __future__ import annotations

import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner, nonfinite_outputs

from af3_boltz import build
from af3_boltz.settings import DEFAULTS, validate

#: the outputs a pass must leave finite, by mode
CHECKED = {"trunk": ("s", "z", "pdistogram"),
           "full": ("sample_atom_coords", "pdistogram", "plddt", "pae"),
           "toy": ("sample_atom_coords", "pdistogram", "plddt", "pae")}


class BoltzRunner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        settings = {**DEFAULTS, **self.case.settings}
        problems = validate(settings, self.case.device_type)  # the host checked; a hand-made Case was not
        if problems:
            raise CaseError("; ".join(problems))
        warnings.filterwarnings("ignore", module="pytorch_lightning")
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.mode = self.case.mode
        self.check_finite = bool(settings["check_finite"])
        try:
            built = build.prepare(settings, self.mode, self.case.seq_len, self.device)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None
        self.model, self.batch = built.model, built.batch
        self.recycles = 0 if self.mode == "toy" else int(settings["recycles"])
        self.bf16 = settings["dtype"] == "bf16"
        import torch

        self._torch = torch
        return built.facts

    def _autocast(self):
        torch = self._torch
        return torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self.bf16)

    def _forward(self) -> dict:
        model, torch = self.model, self._torch
        with torch.inference_mode(), self._autocast():
            if self.mode == "trunk":
                model.skip_run_structure, model.confidence_prediction = True, False
                return model(self.batch, recycling_steps=self.recycles)
            pa = model.predict_args
            model.skip_run_structure = False
            model.confidence_prediction = bool(model.hparams.get("confidence_prediction", True))
            return model(self.batch, recycling_steps=self.recycles, num_sampling_steps=pa["sampling_steps"],
                         diffusion_samples=pa["diffusion_samples"], max_parallel_samples=pa["max_parallel_samples"],
                         run_confidence_sequentially=True)

    def step(self) -> dict[str, Any] | None:
        out = self._forward()
        if self.device == "cuda":
            self._torch.cuda.synchronize()
        bad = nonfinite_outputs(out, CHECKED[self.mode]) if self.check_finite else []
        del out
        if bad:
            raise NonFiniteOutput(f"non-finite values in {', '.join(bad)}")
        return None

    def teardown(self) -> None:
        self.model = self.batch = None
