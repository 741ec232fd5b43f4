"""The runner of the ``openfold3`` engine: one case, built once, timed pass by pass (imported only
where a case runs: the worker, or the host under ``af3 bench --in-process``).

Modes, with the model's own entry points (no submodule is called by hand):
- ``trunk``: ``OpenFold3.run_trunk(batch, num_cycles=recycles + 1, inplace_safe=True)``, what the
  forward calls first: input embedder, then per cycle the template embedder, MSA embedder and
  module, Pairformer; outputs s_input, s, z. No diffusion, no heads (not even the distogram).
- ``full``: ``OpenFold3.forward(batch)``, what ``predict_step`` calls: the trunk, the diffusion
  rollout (``steps`` steps, ``samples`` samples), the confidence and distogram heads. The
  confidence scores that ``predict_step`` computes afterwards from the logits (pTM, ipTM, ranking)
  are not part of a pass.
- ``toy``: ``full`` with 0 recycles, 2 steps, 1 sample: every component once.
Each pass runs under ``torch.inference_mode()`` (Lightning's predict loop) and, for bf16, autocast.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner, nonfinite_outputs

from af3_openfold3 import build
from af3_openfold3.settings import DEFAULTS, validate

#: the outputs a pass must leave finite, by mode
CHECKED = {"trunk": ("s_input", "s", "z"),
           "full": ("atom_positions_predicted", "plddt_logits", "pae_logits", "pde_logits", "distogram_logits"),
           "toy": ("atom_positions_predicted", "plddt_logits", "pae_logits", "pde_logits", "distogram_logits")}


class OpenFold3Runner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        settings = {**DEFAULTS, **self.case.settings}
        problems = validate(settings, self.case.device_type)  # the host checked; a hand-made Case was not
        if problems:
            raise CaseError("; ".join(problems))
        logging.getLogger("openfold3").setLevel(logging.WARNING)
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.mode = self.case.mode
        self.check_finite = bool(settings["check_finite"])
        import torch

        self._torch = torch
        self._matmul_precision = torch.get_float32_matmul_precision()  # prepare sets it (tf32); teardown restores
        try:
            built = build.prepare(settings, self.mode, self.case.seq_len, self.device)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None
        self.model, self.batch = built.model, built.batch
        # Filters after the build: importing the package puts a catch-all "once" filter in front.
        # The package wraps its fp32 attention in autocast(float32) and autocast("cuda"), which
        # torch declines with a warning on a CPU; the computation is the intended fp32 one.
        warnings.filterwarnings("ignore", module="pytorch_lightning")
        warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
        warnings.filterwarnings("ignore", message="CUDA is not available or torch_xla is imported")
        self.cycles = built.facts["recycles"] + 1
        self.bf16 = settings["dtype"] == "bf16"
        return built.facts

    def _autocast(self):
        torch = self._torch
        return torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self.bf16)

    def _forward(self) -> dict:
        """One pass; the outputs by name."""
        torch = self._torch
        with torch.inference_mode(), self._autocast():
            if self.mode == "trunk":
                s_input, s, z = self.model.run_trunk(dict(self.batch), num_cycles=self.cycles, inplace_safe=True)
                return {"s_input": s_input, "s": s, "z": z}
            _, out = self.model(dict(self.batch))  # the forward pops and re-keys its batch: a fresh dict
            return out

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
        if getattr(self, "_matmul_precision", None):  # matters under --in-process only
            self._torch.set_float32_matmul_precision(self._matmul_precision)
