"""From resolved settings to a ready model and synthetic batch on the device: the runner's ``setup``.

Errors a user can fix are :class:`BuildError`; the runner turns them into CaseError. torch and
Ligo's code are imported inside :func:`prepare` only.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Mapping

from af3core.source import LocatedSource, SourceNotFound

from af3_ligo import config as ligo_config
from af3_ligo import source
from af3_ligo.settings import op_impls

DEEPSPEED_KEY = "config.globals.use_deepspeed_evo_attention"


class BuildError(Exception):
    """A setting this machine or this source cannot honour (the runner reports it as a CaseError)."""


@dataclass
class Built:
    model: Any
    batch: dict
    capture: Any  # modes.TrunkCapture in trunk mode, else None
    facts: dict[str, Any]


def model_config(src: LocatedSource, settings: Mapping[str, Any]) -> ligo_config.AttrDict:
    overrides = {k: v for k, v in settings.items() if k.startswith(ligo_config.PREFIX)}
    have_deepspeed = importlib.util.find_spec("deepspeed") is not None
    # The yaml turns DeepSpeed's Evoformer attention on; it raises without DeepSpeed installed.
    overrides.setdefault(DEEPSPEED_KEY, have_deepspeed)
    if ligo_config.parse_value(str(overrides[DEEPSPEED_KEY]).lower()) is True and not have_deepspeed:
        raise BuildError(f"{DEEPSPEED_KEY}=true needs DeepSpeed, which is not installed")
    try:
        return ligo_config.build_config(source.config_file(src.root), overrides)
    except (KeyError, ValueError) as exc:
        raise BuildError(f"model config: {exc}") from None


def prepare(settings: Mapping[str, Any], mode: str, n_tokens: int, device: str) -> Built:
    """Build the model and synthetic batch for one case. ``settings`` holds every plugin setting."""
    try:
        src = source.SOURCE.locate()
    except SourceNotFound as exc:
        raise BuildError(str(exc)) from None  # the reason and the fix
    cfg = model_config(src, settings)
    impls = op_impls(settings)
    impl = impls["msa_impl"]
    if impl == "seed":
        # The repo's kernel declares a plain global (INF) that Triton >= 3.6 rejects at compile
        # time unless this is set; it must be in the environment before the kernel compiles.
        os.environ["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = "1"

    import torch
    import torch._dynamo  # noqa: F401 - the repo's unconditional checkpoint() imports it lazily (seconds) on the first pass

    from af3_ligo import batch as batch_mod
    from af3_ligo import kernels, ligo_import, modes, msa, transition, tri_attn, tri_mul
    from af3_ligo import model as model_mod

    try:
        model_module = ligo_import.import_model(src.root)
    except ligo_import.LigoImportError as exc:
        raise BuildError(str(exc)) from None
    if impl == "seed" and not ligo_import.seed_kernel_available():
        raise BuildError("msa_impl=seed needs triton (pip install triton)")

    seed = int(settings["seed"])
    torch.manual_seed(seed)
    model = model_mod.build_model(model_module, cfg, device)
    if settings["weights"] == "random":
        model_mod.rerandomise_(model, seed=seed)
    try:
        op_facts = msa.install(model, impl)
        # the fused kernels' fp32 dots follow the matmul precision the repo's config set (msa.fused_precision)
        op_facts.update(tri_attn.install(model, impls["tri_attn_impl"], msa.fused_precision(),
                                         settings.get("ln_linear_impl", "torch")))
        for op, module in (("tri_mul_impl", tri_mul), ("transition_impl", transition)):
            op_facts.update(module.install(model, impls[op], msa.fused_precision()))
    except kernels.FusedUnavailable as exc:
        raise BuildError(str(exc)) from None
    capture = modes.configure_mode(model, mode, int(settings["diffusion_steps"]), int(settings["samples"]))
    cycles = 1 if mode == "toy" else int(settings["cycles"])
    batch = batch_mod.synthetic_batch(n_tokens, int(settings["msa_rows"]), cycles, device, seed=seed)

    facts: dict[str, Any] = {
        "engine_source_version": src.version,
        "engine_source": str(src.root),
        "n_params": model_mod.n_params(model),
        "dtype": settings["dtype"],
        "weights": settings["weights"],
        "msa_rows": int(settings["msa_rows"]),
        "cycles": cycles,
        # what the sampler actually ran (0: trunk mode samples nothing)
        "diffusion_steps": {"full": int(settings["diffusion_steps"]), "toy": 2}.get(mode, 0),
        "samples": {"full": int(settings["samples"]), "toy": 1}.get(mode, 0),
        "n_atoms": n_tokens * batch_mod.ATOMS_PER_TOKEN,
        "torch_version": torch.__version__,
        **op_facts,
        **ligo_config.summary(cfg),
    }
    if impl == "seed":
        facts["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = "1"
    return Built(model, batch, capture, facts)
