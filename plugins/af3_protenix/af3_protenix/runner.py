"""The runner of the ``protenix`` engine: one case, built once, timed pass by pass (imported only
where a case runs: the worker, or the host under ``af3 bench --in-process``).

Modes, with the model's own entry points (no submodule is called by hand):
- ``trunk``: what ``Protenix.forward(mode="inference")`` runs first: ``generate_relp`` and
  ``update_input_feature_dict`` (the atom-pair blocks), then ``get_pairformer_output`` with
  ``N_cycle`` cycles, in-place, the forward's chunk size: input embedder, then per cycle the
  template embedder, MSA module and Pairformer; outputs s_inputs, s, z. No diffusion, no heads.
- ``full``: ``Protenix.forward(input_feature_dict, None, None, mode="inference",
  mc_dropout_apply_rate=0.4)``, what ``InferenceRunner.predict`` calls: the trunk, the diffusion
  rollout (``steps`` steps, ``samples`` samples, the shared-variable cache), the distogram head's
  contact probabilities, the confidence head and the summary confidences.
- ``toy``: ``full`` with 1 cycle, 2 steps, 1 sample: every component once.
Each pass runs under ``torch.no_grad()`` (``predict``) and, for bf16, ``torch.autocast`` to bfloat16
(``predict`` autocasts on CUDA only; on a CPU this plugin autocasts the CPU, where Protenix's
``skip_amp`` does not apply). The model draws random numbers in a pass (the MSA depth of every cycle,
whether MC dropout applies, the diffusion noise): each pass reseeds torch and ``random`` with
``seed``, so every pass does the same work.
"""
from __future__ import annotations

import logging
import random
import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner, nonfinite_outputs

from af3_protenix import build
from af3_protenix.settings import DEFAULTS, validate

#: the outputs a pass must leave finite, by mode
_FULL = ("coordinate", "contact_probs", "plddt", "pae", "pde", "resolved")
CHECKED = {"trunk": ("s_inputs", "s", "z"), "full": _FULL, "toy": _FULL}
#: ``configs.mc_dropout_apply_rate``, what InferenceRunner.predict passes
MC_DROPOUT_APPLY_RATE = 0.4


class ProtenixRunner(Runner):
    framework = "torch"

    def setup(self) -> dict[str, Any]:
        settings = {**DEFAULTS, **self.case.settings}
        problems = validate(settings, self.case.device_type)  # the host checked; a hand-made Case was not
        if problems:
            raise CaseError("; ".join(problems))
        self.device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.mode = self.case.mode
        self.seed = int(settings["seed"])
        self.check_finite = bool(settings["check_finite"])
        import torch

        self._torch = torch
        self._allow_tf32 = torch.backends.cuda.matmul.allow_tf32  # Protenix sets it; teardown restores
        try:
            built = build.prepare(settings, self.mode, self.case.seq_len, self.device)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None
        logging.getLogger("protenix").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
        self.model, self.features = built.model, built.features
        self.bf16 = settings["dtype"] == "bf16"
        return built.facts

    def _autocast(self):
        torch = self._torch
        return torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self.bf16)

    def _forward(self) -> dict:
        """One pass; the outputs by name."""
        torch = self._torch
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        model = self.model
        features = dict(self.features)  # the forward adds keys and deletes the MSA and templates: a fresh dict
        with torch.no_grad(), self._autocast():
            if self.mode == "trunk":
                from protenix.model.protenix import update_input_feature_dict

                features = model.relative_position_encoding.generate_relp(features)
                features = update_input_feature_dict(features)
                n_token = features["residue_index"].shape[-1]
                chunk = (model._get_dynamic_chunk_size(n_token) if model.configs.infer_setting.dynamic_chunk_size
                         else model.configs.infer_setting.chunk_size)
                s_inputs, s, z = model.get_pairformer_output(
                    features, N_cycle=model.N_cycle, inplace_safe=True, chunk_size=chunk,
                    mc_dropout=random.random() < MC_DROPOUT_APPLY_RATE)
                return {"s_inputs": s_inputs, "s": s, "z": z}
            pred, _, _ = model(input_feature_dict=features, label_full_dict=None, label_dict=None, mode="inference",
                               mc_dropout_apply_rate=MC_DROPOUT_APPLY_RATE)
            return pred

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
        self.model = self.features = None
        if hasattr(self, "_allow_tf32"):  # matters under --in-process only
            self._torch.backends.cuda.matmul.allow_tf32 = self._allow_tf32
