"""The kernels of the ``kernels`` plugin, and how to add one. Light: no torch, no triton.

Adding a kernel
===============
A kernel is a folder (a package) ``af3_kernels/<name>/`` plus ONE line in ``SPEC_MODULES`` below.
``msa_pwa/`` is the example to copy. The interface is in ``kernel.py``. The folder holds:

``spec.py``, light: it must import neither torch nor triton (the plugin registers from it)::

    SPEC = KernelSpec(
        name="trimul",                                   # --set kernel=trimul
        description="triangle multiplication (AF3 Alg. 12); --seq-len is N",
        case="af3_kernels.trimul.case:TrimulCase",       # imported in the worker only
        impls={"fused": "this package's Triton kernel", "torch": "eager reference"},
        triton_impls=("fused",),                         # need triton; on a CPU: its interpreter
        settings={"D": Setting(128, "pair channels")},   # the kernel's own --set keys
        validate=validate,                               # (settings, device_type) -> problems
    )

``case.py``: the ``KernelCase`` subclass named by ``SPEC.case`` (it may import torch): the case's
    facts (shape, "auto" settings resolved), its inputs, each implementation behind one call
    ``fn(*inputs.args)``, the floor (bytes moved and arithmetic done, priced by ``floors.floor``)
    and the accuracy check of the forward against float64.
the kernel, its reference and a tuning script, in modules of the folder's choosing; tests in
``plugins/af3_kernels/tests/test_<name>.py``; GPU cases in ``plugins/af3_kernels/suite.txt``.

Then ``af3 bench --plugin kernels --set kernel=<name> --set impl=...`` runs it through the shared
runner (``runner.py``), which does everything kernel-agnostic: the direction (``--mode`` fwd, bwd,
fwdbwd), the timing (CUDA events or CUDA-graph replays, ``timing.py``), the L2 flush, the peak
memory of one clean call, the floor's rates for the GPU at hand (``floors.py``) and the rows.

Settings. The plugin's settings are the generic ones (``GENERIC_SETTINGS``: kernel, impl, dtype,
reps, timing, flush, check) plus every kernel's own, in one flat namespace (``--set S=128``). Two
kernels may declare the same name only with the same default and choices (checked when the plugin
registers). ``validate`` checks the generic settings, then calls the chosen kernel's validate with
all settings; its problems stop the run before any worker starts (the runner repeats the checks).
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from af3core import Setting

from af3_kernels.kernel import DTYPES, KernelCase, KernelSpec

#: One line per kernel: the module holding its ``SPEC``.
SPEC_MODULES = (
    "af3_kernels.msa_pwa.spec",
    "af3_kernels.evo_attn.spec",
    "af3_kernels.tri_mul.spec",
    "af3_kernels.transition.spec",
    "af3_kernels.ln_linear.spec",
    "af3_kernels.simplicial.spec",
)

TIMINGS = ("auto", "events", "graph")
DIRECTIONS = ("fwd", "bwd", "fwdbwd")


def _load_specs() -> dict[str, KernelSpec]:
    specs = {}
    for module in SPEC_MODULES:
        spec = importlib.import_module(module).SPEC
        if spec.name in specs:
            raise ValueError(f"two kernels are named {spec.name!r}")
        specs[spec.name] = spec
    return specs


#: name -> KernelSpec, in SPEC_MODULES order
KERNELS: dict[str, KernelSpec] = _load_specs()


def kernel(name: str) -> KernelSpec:
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r} (kernels: {', '.join(KERNELS)})") from None


def load_case(spec: KernelSpec) -> type[KernelCase]:
    """The KernelCase class of ``spec`` (imports the kernel's heavy modules: worker only)."""
    module, _, cls = spec.case.partition(":")
    return getattr(importlib.import_module(module), cls)


def _impl_help() -> str:
    parts = [f"{name}: " + ", ".join(f"{i} ({h})" for i, h in spec.impls.items()) for name, spec in KERNELS.items()]
    return "implementation; " + "; ".join(parts)


def _generic_settings() -> dict[str, Setting]:
    impls = tuple(dict.fromkeys(i for spec in KERNELS.values() for i in spec.impls))
    return {
        "kernel": Setting(next(iter(KERNELS)), "which kernel: " + "; ".join(
            f"{name} = {spec.description}" for name, spec in KERNELS.items()), choices=tuple(KERNELS)),
        "impl": Setting(impls[0], _impl_help(), choices=impls),
        "dtype": Setting("bf16", "element type of the kernel's tensors", choices=DTYPES),
        "reps": Setting(100, "timed repetitions per pass (median reported); at most 3 on CPU"),
        "timing": Setting("auto", "events: CUDA events around each Python call (launch costs included); "
                                  "graph: replays of one call captured in a CUDA graph (GPU time only; "
                                  "fwd and fwdbwd, CUDA only); auto: graph on CUDA for fwd and fwdbwd, "
                                  "events for bwd and on a CPU", choices=TIMINGS),
        "flush": Setting(True, "flush the L2 cache before each repetition (untimed)"),
        "check": Setting(True, "record the forward's max abs error against float64"),
    }


GENERIC_SETTINGS: dict[str, Setting] = _generic_settings()


def plugin_settings() -> dict[str, Setting]:
    """The generic settings, then each kernel's own; a name two kernels declare differently raises."""
    merged = dict(GENERIC_SETTINGS)
    owner = {key: "the plugin" for key in merged}
    for spec in KERNELS.values():
        for key, setting in spec.settings.items():
            if key in merged and (merged[key].default, merged[key].choices) != (setting.default, setting.choices):
                raise ValueError(f"kernel {spec.name} declares setting {key!r} unlike {owner[key]} "
                                 f"(default {merged[key].default!r}, choices {merged[key].choices})")
            merged.setdefault(key, setting)
            owner.setdefault(key, f"kernel {spec.name}")
    return merged


def defaults() -> dict[str, Any]:
    return {key: s.default for key, s in plugin_settings().items()}


def resolve_timing(timing: str, device_type: str, direction: str) -> str:
    """"auto": CUDA-graph replays on a CUDA GPU for fwd and fwdbwd, CUDA events for bwd (its
    untimed forward cannot sit outside the graph). On a CPU every timing is the wall clock around
    each call, and rows say "wall"."""
    if device_type != "cuda":
        return "wall"
    if timing != "auto":
        return timing
    return "graph" if direction != "bwd" else "events"


def validate(settings: Mapping[str, Any], device_type: str) -> list[str]:
    """Plan-time checks (the plugin's ``validate``): the generic settings, then the kernel's own."""
    name = settings.get("kernel")
    if name not in KERNELS:
        return [f"unknown kernel {name!r} (kernels: {', '.join(KERNELS)})"]
    spec = KERNELS[name]
    problems = []
    impl = settings.get("impl")
    if impl not in spec.impls:
        problems.append(f"kernel {name} has no impl {impl!r} (impls: {', '.join(spec.impls)})")
    if settings.get("dtype") not in spec.dtypes:
        problems.append(f"kernel {name} takes dtype {', '.join(spec.dtypes)}, not {settings.get('dtype')!r}")
    if settings.get("timing") not in TIMINGS:
        problems.append(f"timing must be one of {', '.join(TIMINGS)}, not {settings.get('timing')!r}")
    if int(settings.get("reps", 1)) < 1:
        problems.append("reps must be at least 1")
    if settings.get("timing") == "graph" and device_type != "cuda":
        problems.append("timing=graph replays a CUDA graph: it needs a CUDA GPU (use timing=events or auto)")
    if spec.validate is not None:
        problems += spec.validate(settings, device_type)
    return problems
