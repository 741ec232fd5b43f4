"""What a kernel provides to the plugin: the interface of a kernel's folder (see registry.py for how
to add one). Light: no torch, no triton; the types named in strings are torch's and floors'.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from af3core import Setting

DTYPES = ("bf16", "fp32", "fp16")

#: ``--set variant=``, shared by the kernels that have variants (one flat namespace of settings):
#: each kernel takes its own and resolves "auto" to its first; its validate refuses the others'.
KERNEL_VARIANTS = {
    "evo_attn": ("tri_start", "tri_end", "msa_row", "msa_col", "single"),
    "tri_mul": ("outgoing", "incoming"),
}
VARIANT = Setting("auto", "which variant: " + "; ".join(f"{k}: {' / '.join(v)}" for k, v in KERNEL_VARIANTS.items())
                  + " (auto: each kernel's first)",
                  choices=("auto", *(v for vs in KERNEL_VARIANTS.values() for v in vs)))


def resolve_variant(kernel: str, value: str) -> str:
    """The variant ``value`` names for ``kernel`` ("auto": its first)."""
    return KERNEL_VARIANTS[kernel][0] if value == "auto" else value


#: ``--set precision=`` for kernels whose fp32 products are plain GEMMs (tri_mul, transition): exact
#: ("auto", "ieee") or TF32 (torch's matmul precision "high"); the split precisions are refused
GEMM_PRECISIONS = ("auto", "ieee", "tf32")


def gemm_precision(kernel: str, value: str) -> tuple[str, str | None]:
    """(the precision such a kernel runs, why ``value`` is refused or None)."""
    if value not in GEMM_PRECISIONS:
        return "ieee", f"{kernel} supports precision {', '.join(GEMM_PRECISIONS)}, not {value}"
    return ("tf32" if value == "tf32" else "ieee"), None


#: implementations whose kernels need a CUDA GPU (they do not run in Triton's interpreter)
CUDA_ONLY_IMPLS = {"liger": "Liger-Kernel's Triton kernels", "cueq": "cuEquivariance's CUDA kernels"}


def cuda_only_problem(settings: Mapping[str, Any], device_type: str) -> str | None:
    """Why the chosen impl cannot run on ``device_type``, or None."""
    impl = settings.get("impl")
    if impl in CUDA_ONLY_IMPLS and device_type != "cuda":
        return f"impl={impl} runs {CUDA_ONLY_IMPLS[impl]}, which need a CUDA GPU (not Triton's interpreter)"
    return None


def variant_problem(kernel: str, value: str) -> str | None:
    """Why ``value`` is not a variant of ``kernel``, or None."""
    if value == "auto" or value in KERNEL_VARIANTS[kernel]:
        return None
    return f"variant={value} is not a variant of {kernel} ({', '.join(KERNEL_VARIANTS[kernel])})"


@dataclass(frozen=True)
class KernelSpec:
    """The light half of a kernel's description: enough to register, document and validate it."""

    name: str  # the value of --set kernel=
    description: str  # one line
    case: str  # "module:Class" of its KernelCase, imported only in the worker
    impls: Mapping[str, str]  # implementation name -> one line of help; the first is the usual one
    triton_impls: Sequence[str] = ()  # implementations that need triton (CPU: Triton's interpreter)
    dtypes: Sequence[str] = DTYPES
    settings: Mapping[str, Setting] = field(default_factory=dict)  # the kernel's own --set keys
    # Plan-time checks of the merged settings for a device type ("cpu", "cuda"): problems, as text.
    validate: Callable[[Mapping[str, Any], str], list[str]] | None = None


@dataclass
class Inputs:
    """The tensors of one case: ``fn(*args)`` is the call timed; the backward computes the
    gradients of ``grad_args`` for the output gradient ``dout``."""

    args: tuple
    grad_args: tuple = ()
    dout: Any = None


@dataclass
class Implementation:
    """One implementation, ready to call on the case's inputs."""

    fn: Callable[..., Any]  # fn(*inputs.args) -> output tensor
    facts: dict[str, Any] = field(default_factory=dict)  # recorded in every row (versions, paths...)
    # run untimed before each repetition (e.g. restore an input the implementation overwrites)
    before: Callable[[], None] | None = None
    # a non-finite output fails the case; False: recorded only (a foreign kernel's known defect)
    must_be_finite: bool = True
    # the implementation's own inputs, when it takes another layout than the case's (copies made
    # untimed at setup): the runner then calls fn(*inputs.args) and differentiates with respect to
    # inputs.grad_args with inputs.dout instead of the case's; check() receives these inputs
    inputs: Inputs | None = None


class KernelCase:
    """The heavy half of a kernel's description: one case (settings, size, device), in the worker.

    The runner calls::

        case = Class(settings, size, device)   # settings: every plugin setting, defaults filled;
                                               # size: --seq-len; device: a torch.device
        inputs = case.make_inputs(dtype, grad, generator)
        impl = case.implementation(name, inputs, direction)
        case.floor(direction, rates)           # a floors.Floor, at the GPU's rates
        case.facts()                           # the shape, "auto" settings as resolved here
        case.check(out, inputs)                # on the first call's output: accuracy facts

    Raise ``af3core.CaseError`` for a problem the user can fix (a missing source...).
    """

    def __init__(self, settings: Mapping[str, Any], size: int, device: Any):
        self.settings = settings
        self.size = size
        self.device = device

    def facts(self) -> dict[str, Any]:
        """Recorded in every row: the shape and the value every "auto" setting resolved to."""
        return {}

    def make_inputs(self, dtype: Any, grad: bool, generator: Any) -> Inputs:
        """Random inputs of the case's shape in ``dtype`` (requiring grad when ``grad``)."""
        raise NotImplementedError

    def implementation(self, name: str, inputs: Inputs, direction: str) -> Implementation:
        """Implementation ``name`` (one of the spec's impls) for these inputs and direction."""
        raise NotImplementedError

    def floor(self, direction: str, rates: Any) -> Any:
        """The least time of ``direction`` at ``rates`` (a floors.Rates): a floors.Floor."""
        raise NotImplementedError

    def check(self, out: Any, inputs: Inputs) -> dict[str, Any]:
        """The forward output's error against float64 (and the same-dtype reference's, beside it)."""
        return {}
