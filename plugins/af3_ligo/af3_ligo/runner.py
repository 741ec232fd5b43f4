"""The worker-side runner of the ``ligo`` engine: one case, built once, timed pass by pass."""
from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner

from af3_ligo import config as ligo_config
from af3_ligo import plugin, source

DEEPSPEED_KEY = "config.globals.use_deepspeed_evo_attention"

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

    def _check_device(self, impl: str, dtype: str) -> None:
        """Choices this device cannot run: one clear line each."""
        dev = self.case.device_type
        if dev not in ("cpu", "cuda"):
            raise CaseError(f"the ligo plugin runs on cpu or cuda, not {self.case.device}")
        if impl == "seed":
            if dev != "cuda":
                raise CaseError("msa_impl=seed is the repo's Triton kernel and needs a CUDA GPU; "
                                "use msa_impl=torch (or fused with TRITON_INTERPRET=1) on a CPU")
            if dtype != "fp32":
                raise CaseError("msa_impl=seed runs in fp32 only: use dtype=fp32 or msa_impl=torch|fused")
        if impl == "fused" and dev == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise CaseError("msa_impl=fused on a CPU runs the Triton kernel in Triton's interpreter: "
                            "set TRITON_INTERPRET=1 (slow; for correctness checks, not timings)")
        err = plugin.check_seq_len(self.case.seq_len)
        if err:
            raise CaseError(err)

    def setup(self) -> dict[str, Any]:
        s = {**{k: v.default for k, v in plugin.SETTINGS.items()}, **self.case.settings}
        impl, dtype, mode = s["msa_impl"], s["dtype"], self.case.mode
        self.dtype = dtype
        self._check_device(impl, dtype)
        try:
            src = source.locate()
        except source.SourceNotFound as exc:
            raise CaseError(str(exc)) from None

        overrides = {k: v for k, v in s.items() if k.startswith(ligo_config.PREFIX)}
        have_deepspeed = importlib.util.find_spec("deepspeed") is not None
        # The yaml turns DeepSpeed's Evoformer attention on; it raises without DeepSpeed installed.
        overrides.setdefault(DEEPSPEED_KEY, have_deepspeed)
        if ligo_config.parse_value(str(overrides[DEEPSPEED_KEY])) is True and not have_deepspeed:
            raise CaseError(f"{DEEPSPEED_KEY}=true needs DeepSpeed, which is not installed")
        try:
            cfg = ligo_config.build_config(src.config_file, overrides)
        except (KeyError, ValueError) as exc:
            raise CaseError(f"model config: {exc}") from None

        if impl == "seed":
            # The repo's kernel declares a plain global (INF) that Triton >= 3.6 rejects at compile
            # time unless this is set; it must be in the environment before the kernel compiles.
            os.environ["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = "1"
        for text in _QUIET:
            warnings.filterwarnings("ignore", message=text)

        import torch
        import torch._dynamo  # noqa: F401 - the repo's unconditional checkpoint() imports it lazily (seconds) on the first pass

        from af3_ligo import engine, ligo_import, msa

        try:
            model_module = ligo_import.import_model(src.root)
        except ligo_import.LigoImportError as exc:
            raise CaseError(str(exc)) from None
        if impl == "seed" and not ligo_import.seed_kernel_available():
            raise CaseError("msa_impl=seed needs triton (pip install triton)")

        device = "cuda" if self.case.device_type == "cuda" else "cpu"
        self.device = device
        torch.manual_seed(int(s["seed"]))
        model = engine.build_model(model_module, cfg, device)
        if s["weights"] == "random":
            engine.rerandomise_(model, seed=int(s["seed"]))
        try:
            msa_facts = msa.install(model, impl)
        except msa.FusedUnavailable as exc:
            raise CaseError(str(exc)) from None
        self.capture = engine.configure_mode(model, mode, int(s["diffusion_steps"]), int(s["samples"]))
        cycles = 1 if mode == "toy" else int(s["cycles"])
        self.batch = engine.synthetic_batch(self.case.seq_len, int(s["msa_rows"]), cycles, device, seed=int(s["seed"]))
        self.model = model
        self._engine = engine
        self._torch = torch

        facts: dict[str, Any] = {
            "engine_source_version": src.version,
            "engine_source": str(src.root),
            "n_params": engine.n_params(model),
            "dtype": dtype,
            "weights": s["weights"],
            "msa_rows": int(s["msa_rows"]),
            "cycles": cycles,
            "diffusion_steps": {"full": int(s["diffusion_steps"]), "toy": 2}.get(mode, 0),
            "samples": {"full": int(s["samples"]), "toy": 1}.get(mode, 0),
            "n_atoms": self.case.seq_len * engine.ATOMS_PER_TOKEN,
            "torch_version": torch.__version__,
            **msa_facts,
            **ligo_config.summary(cfg),
        }
        if impl == "seed":
            facts["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = "1"
        return facts

    def _sync(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()

    def step(self) -> dict[str, Any] | None:
        result = self._engine.run_pass(self.model, self.batch, self.dtype, self.device)
        self._sync()
        outputs = self._engine.outputs_of(result, self.capture)
        bad = self._engine.non_finite(outputs)
        # Drop the outputs before the next pass so they do not add to its memory peak.
        del result, outputs
        if self.capture is not None:
            self.capture.outputs = {}
        if bad:
            raise NonFiniteOutput(f"non-finite values in {', '.join(bad)}")
        return None

    def teardown(self) -> None:
        self.model = self.batch = None
