"""The contract between the worker and a plugin's runner (imported only inside the worker).

The worker calls, in order::

    runner = RunnerClass(case)      # cheap
    info = runner.setup()           # build model and inputs (timed as setup_ms, not compile)
    runner.compile()                # first call: lowering, XLA/Triton compilation, warm-up (compile_ms)
    for i in range(case.warmup):    # optional warm-up passes, recorded but left out of statistics
        runner.step()
    for i in range(case.passes):    # at least; --min-time and --max-noise may ask for more
        extra = runner.step()       # one steady-state pass; must synchronise the device itself
    runner.peak_memory()            # the framework's own peak figures
    runner.teardown()

``step`` is timed by the worker with a wall clock around the call. A runner that times itself more
precisely (CUDA events over many repetitions, as the kernel benchmarks do) returns
``{"elapsed_ms": ...}`` and that figure becomes the pass's time; the wall time is kept as ``wall_ms``.
Any other keys in the returned dict are stored in the pass's row. Raising fails that pass only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class CaseError(Exception):
    """A user-facing problem with a case (bad setting for this device, source missing...).

    The worker reports its message without a traceback.
    """


class NonFiniteOutput(Exception):
    """An engine's output contained NaN or Inf: the pass failed."""


def nonfinite_outputs(outputs: Any, keys: Any = None) -> list[str]:
    """Names of the tensors among ``outputs[keys]`` (default: every key) that hold NaN or Inf, one
    device reduction each; keys that are absent, and values that are no tensor (anything without
    ``isfinite``) or empty, are skipped. For a runner's ``step``: ``raise NonFiniteOutput`` with them."""
    names = list(outputs) if keys is None else [k for k in keys if k in outputs]
    return [k for k in names if hasattr(outputs[k], "isfinite") and outputs[k].numel()
            and not bool(outputs[k].isfinite().all())]


@dataclass
class Case:
    plugin: str
    mode: str
    seq_len: int
    device: str  # "cpu", "cuda", "cuda:1", "mps"
    passes: int = 3
    warmup: int = 0  # untimed-for-statistics passes between compile and the timed passes
    preset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    # Adaptive pass count (af3core.stopping): after ``passes``, go on until the timed passes add up
    # to ``min_time_s``, then, with ``max_noise``, until the median's relative 95% half-interval is at
    # most ``max_noise`` or the timed passes add up to ``max_time_s``.
    min_time_s: float = 0.0
    max_noise: float | None = None
    max_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Case":
        return cls(**d)

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


class Runner:
    """Base class for plugin runners. Subclasses override ``setup`` and ``step``."""

    #: name of the framework whose allocator the runner uses: "torch", "jax" or ""
    framework: str = ""

    def __init__(self, case: Case):
        self.case = case

    def setup(self) -> dict[str, Any]:
        """Build the model and inputs. Return facts worth recording (engine version, param count...)."""
        return {}

    def compile(self) -> dict[str, Any] | None:
        """The first, compiling call. Default: one ``step``."""
        return self.step()

    def step(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def peak_memory(self) -> dict[str, Any]:
        """Framework peak bytes; the default asks torch or jax depending on ``framework``."""
        from af3core import memory

        return memory.framework_peak(self.framework, self.case.device)

    def teardown(self) -> None:
        pass


def is_oom(exc: BaseException) -> bool:
    """Whether an exception means the device (or host) ran out of memory, for any framework."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc)
    lowered = text.lower()
    return (
        name == "OutOfMemoryError"
        or "RESOURCE_EXHAUSTED" in text
        or "out of memory" in lowered
        or "CUDA_ERROR_OUT_OF_MEMORY" in text
        or "can't allocate memory" in lowered  # torch's CPU allocator (DefaultCPUAllocator)
        or "cannot allocate memory" in lowered  # ENOMEM as the C library words it
    )
