"""``module_times=true``: where a pass spends its time, per kind of module (triangle attention,
triangle multiplication, Transition...), for the row of every pass.

Forward hooks record a CUDA event (a wall clock on a CPU) before and after each call of the
modules in :data:`GROUPS`; after the pass has synchronised, the per-group sums become the pass's
``ms_<group>`` figures (and the summary's medians of them). Nested groups each count their own time
(``ms_pairformer`` includes ``ms_tri_attn``). Events cost a few microseconds per call: thousands per
pass of a paper trunk, well under 1% of it; the figures without the setting are the ones to quote.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import torch
from torch import nn

#: figure name -> the Ligo class names (any base class of the module) it covers
GROUPS = {
    "tri_attn": ("TriangleAttention",),
    "tri_mul": ("BaseTriangleMultiplicativeUpdate",),
    "transition": ("Transition",),
    "attention_pair_bias": ("AttentionPairBias",),
    "msa_pwa": ("MSAPairWeightedAveraging",),
    "outer_product_mean": ("OuterProductMean",),
    "msa_module": ("MSAModule",),
    "pairformer": ("PairformerStack",),
    "template": ("TemplateEmbedder",),
    "diffusion": ("DiffusionModule",),
}


def _group_of(module: nn.Module) -> str | None:
    names = {cls.__name__ for cls in type(module).__mro__}
    return next((group for group, classes in GROUPS.items() if names.intersection(classes)), None)


class ModuleTimes:
    """Hooks on every module of a group; :meth:`collect` returns and resets one pass's sums."""

    def __init__(self, model: nn.Module, device: str):
        self.cuda = device.startswith("cuda")
        self.spans: list[tuple[str, Any, Any]] = []
        self.handles = []
        for module in model.modules():
            group = _group_of(module)
            if group is not None:
                self.handles.append(module.register_forward_pre_hook(self._pre(group)))
                self.handles.append(module.register_forward_hook(self._post()))
        self._open: list[tuple[str, Any]] = []

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _pre(self, group: str):
        def hook(module, args):
            self._open.append((group, self._now()))
        return hook

    def _post(self):
        def hook(module, args, output):
            group, start = self._open.pop()
            self.spans.append((group, start, self._now()))
        return hook

    def collect(self) -> dict[str, float]:
        """``ms_<group>`` sums of the pass just run (the device must be synchronised)."""
        sums: dict[str, float] = defaultdict(float)
        for group, start, end in self.spans:
            sums[group] += start.elapsed_time(end) if self.cuda else (end - start) * 1e3
        self.spans.clear()
        self._open.clear()
        return {f"ms_{group}": round(ms, 3) for group, ms in sums.items()}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
