"""The harness runner for kernel cases (``af3 bench --plugin kernels``), one case per worker;
kernel-agnostic: the kernel's own part is its KernelCase (registry.py says how to add one).

A case is one kernel, implementation, dtype and shape, in one direction (the case's mode): ``fwd``
times the forward without autograd, ``bwd`` the backward alone (the forward runs untimed before
each repetition), ``fwdbwd`` both. ``case.seq_len`` is the kernel's size (R for msa_pwa).
Out-of-memory errors are left to surface: the host's ``--until-oom`` sweep uses them to find the
largest size that fits.
Setting ``timing``: ``events`` (CUDA events around each Python call, launch costs included),
``graph`` (replays of one captured call, GPU time only; CUDA and fwd/fwdbwd only, else a
CaseError) or ``auto`` (graph where it can, else events); every row records the one used.
The floor uses the rates of the GPU at hand (floors.py), recorded as ``floor_rates``; on a CPU the
floor is the H100's and no ``fraction_of_floor`` is given.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner

from af3_kernels import floors, registry

CPU_MAX_REPS = 3  # the CPU path (Triton interpreter) is a smoke test, not a benchmark


class KernelRunner(Runner):
    framework = "torch"

    def __init__(self, case):
        super().__init__(case)
        self.settings = {**registry.defaults(), **case.settings}
        s = self.settings
        self.kernel = s["kernel"]
        self.impl = s["impl"]
        self.dtype_name = s["dtype"]
        self.reps = int(s["reps"])
        self.flush = bool(s["flush"])
        self.check = bool(s["check"])
        self.direction = case.mode
        self.on_cuda = case.device_type == "cuda"
        self.timing = registry.resolve_timing(s["timing"], case.device_type, case.mode)
        self._peak = None

    # -- setup -----------------------------------------------------------------------------

    def _validate(self):
        """The plan-time checks again (a second line of defence), plus what only a case knows."""
        if self.direction not in registry.DIRECTIONS:
            raise CaseError(f"mode must be fwd, bwd or fwdbwd, not {self.direction!r}")
        if self.case.device_type not in ("cpu", "cuda"):
            raise CaseError(f"kernel cases run on cpu or cuda, not {self.case.device}")
        problems = registry.validate(self.settings, self.case.device_type)
        if int(self.case.seq_len) < 1:
            problems.append("--seq-len must be at least 1")
        if self.timing == "graph" and self.direction == "bwd":
            # The forward that bwd runs untimed before each repetition cannot sit outside a graph
            # that replays the backward on its saved tensors.
            problems.append("timing=graph supports modes fwd and fwdbwd, not bwd")
        if problems:
            raise CaseError("; ".join(problems))
        self.spec = registry.kernel(self.kernel)
        if self.impl in self.spec.triton_impls and importlib.util.find_spec("triton") is None:
            raise CaseError(f"impl={self.impl} needs triton, which is not installed")

    def setup(self) -> dict[str, Any]:
        self._validate()
        if self.impl in self.spec.triton_impls and not self.on_cuda:
            # Before triton is imported: the kernels then run in Triton's numpy interpreter.
            os.environ.setdefault("TRITON_INTERPRET", "1")
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if self.on_cuda else "cpu")
        self.kcase = registry.load_case(self.spec)(self.settings, int(self.case.seq_len), self.device)
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[self.dtype_name]
        generator = torch.Generator(self.device).manual_seed(0)
        self.inputs = self.kcase.make_inputs(dtype, self.direction != "fwd", generator)
        self.implementation = self.kcase.implementation(self.impl, self.inputs, self.direction)
        if self.implementation.inputs is not None:  # the implementation's own layout
            self.inputs = self.implementation.inputs
        self.fn = self.implementation.fn
        self._out = None
        self.rates = self._rates()
        self.floor = self.kcase.floor(self.direction, self.rates)
        return {
            "kernel": self.kernel, "impl": self.impl, "direction": self.direction,
            **self.kcase.facts(),
            "floor_ms": self.floor.ms, "floor_bound": self.floor.bound, "floor_bytes": self.floor.bytes,
            "floor_flops": self.floor.flops, "floor_rates": self.rates.to_dict(),
            "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1" and self.impl in self.spec.triton_impls,
            "timing": self.timing,
            **self.implementation.facts,
        }

    def _rates(self) -> floors.Rates:
        """The floor's rates: the table's for this GPU, else its measured copy bandwidth with the
        H100's compute rates; on a CPU the H100's (the floor is recorded, no fraction of it)."""
        if not self.on_cuda:
            return floors.H100_SXM
        name = self.torch.cuda.get_device_name(self.device)
        rates = floors.rates_for_gpu(name)
        if rates is None:
            from af3_kernels.timing import copy_bandwidth

            rates = floors.measured_rates(name, copy_bandwidth(self.device))
        return rates

    # -- the timed work ----------------------------------------------------------------------

    def _forward(self):
        return self.fn(*self.inputs.args)

    def _grads(self, out):
        return self.torch.autograd.grad(out, self.inputs.grad_args, self.inputs.dout)

    def _call(self):
        if self.direction == "fwd":
            with self.torch.no_grad():
                return self._forward()
        if self.direction == "fwdbwd":
            return self._grads(self._forward())
        return self._grads(self._out)  # bwd: the forward ran in _before

    def _before(self):
        if self.implementation.before is not None:
            self.implementation.before()
        if self.direction == "bwd":
            self._out = self._forward()

    def compile(self):
        self._before()
        self._call()  # Triton / Inductor compilation and autotuning happen here
        self._out = None
        if self.on_cuda:
            self.torch.cuda.synchronize()
        facts = self._check_error() if self.check else {}
        if self.on_cuda:
            # The peak of one clean call: inputs plus what the implementation allocates (the L2
            # flush buffer comes after, and the check's slices are freed).
            torch = self.torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            self._before()
            result = self._call()
            torch.cuda.synchronize()
            self._peak = torch.cuda.max_memory_allocated()
            facts["impl_extra_peak_bytes"] = self._peak - base
            del result
            self._out = None
        self._flusher = None
        if self.on_cuda and self.flush:
            from af3_kernels.timing import L2Flusher

            self._flusher = L2Flusher(self.device)
        return facts  # the host stores it as every row's compile_info

    def _check_error(self) -> dict[str, Any]:
        """The forward's output: finite (else the case fails, unless the implementation is known
        to leave garbage), and the kernel's accuracy figures against float64."""
        if self.implementation.before is not None:
            self.implementation.before()
        with self.torch.no_grad():
            out = self._forward()
            finite = bool(self.torch.isfinite(out).all())
            if not finite and self.implementation.must_be_finite:
                raise NonFiniteOutput(f"{self.impl} produced non-finite values")
            facts = {"output_finite": finite, **self.kcase.check(out, self.inputs)}
        del out
        return facts

    def step(self):
        from af3_kernels import timing

        if self.on_cuda and self.timing == "graph":
            times = timing.time_cuda_graph(self._call, self.reps, before=self._before, flush=self._flusher)
        elif self.on_cuda:
            times = timing.time_cuda(self._call, self.reps, before=self._before, flush=self._flusher)
        else:
            times = timing.time_cpu(self._call, min(self.reps, CPU_MAX_REPS), before=self._before)
        self._out = None
        elapsed = timing.median(times)
        row = {"elapsed_ms": elapsed, "min_ms": min(times), "reps": len(times),
               "floor_ms": self.floor.ms, "floor_bound": self.floor.bound, "timing": self.timing}
        # The floor's rates describe a GPU: on a CPU the fraction would not mean anything.
        row["fraction_of_floor"] = self.floor.ms / elapsed if self.on_cuda else None
        return row

    def peak_memory(self) -> dict[str, Any]:
        out = super().peak_memory()
        if self._peak is not None:
            out["framework_peak_whole_case_bytes"] = out.get("framework_peak_bytes")
            out["framework_peak_bytes"] = int(self._peak)
            out["framework_peak_note"] = "one clean call: inputs + implementation (no L2 flush buffer)"
        return out
