"""The harness runner for kernel cases (``af3 bench --plugin kernels``), one case per worker.

A case is one kernel, implementation, dtype and shape, in one direction (the case's mode):
``fwd`` times the forward without autograd, ``bwd`` the backward alone (the forward runs untimed
before each repetition), ``fwdbwd`` both. ``case.seq_len`` is R. Out-of-memory errors are left to
surface: the host's ``--until-oom`` sweep uses them to find the largest R that fits.
Setting ``timing``: ``events`` (CUDA events around each Python call, launch costs included) or
``graph`` (replays of one captured call, GPU time only; CUDA and fwd/fwdbwd only, else a CaseError).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner

from af3_kernels import floors
from af3_kernels.impls import IMPLS, TRITON_IMPLS

DTYPES = ("bf16", "fp32", "fp16")
PRECISIONS = ("ieee", "tf32x3", "tf32", "bf16x6", "bf16x3")
TIMINGS = ("events", "graph")
CHECK_ROWS, CHECK_SEQS = 32, 8  # the slice of (i, s) checked against float64: cheap at any R
CPU_MAX_REPS = 3  # the CPU path (Triton interpreter) is a smoke test, not a benchmark


class KernelRunner(Runner):
    framework = "torch"

    def __init__(self, case):
        super().__init__(case)
        s = case.settings
        self.kernel = s.get("kernel", "msa_pwa")
        self.impl = s.get("impl", "fused")
        self.dtype_name = s.get("dtype", "bf16")
        self.B, self.S, self.H, self.C = (int(s.get(k, d)) for k, d in (("B", 1), ("S", 128), ("H", 8), ("C", 8)))
        self.R = int(case.seq_len)
        self.use_mask = bool(s.get("mask", False))
        self.precision = s.get("precision", "ieee")
        self.p_mode = s.get("p_mode", "auto")
        self.reps = int(s.get("reps", 100))
        self.flush = bool(s.get("flush", True))
        self.timing = s.get("timing", "events")
        self.check = bool(s.get("check", True))
        self.direction = case.mode
        self.on_cuda = case.device_type == "cuda"
        self._peak = None

    # -- setup -----------------------------------------------------------------------------

    def _validate(self):
        if self.kernel != "msa_pwa":
            raise CaseError(f"unknown kernel {self.kernel!r}: only msa_pwa exists so far")
        if self.impl not in IMPLS:
            raise CaseError(f"impl must be one of {', '.join(IMPLS)}, not {self.impl!r}")
        if self.dtype_name not in DTYPES:
            raise CaseError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype_name!r}")
        if self.precision not in PRECISIONS:
            raise CaseError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.direction not in ("fwd", "bwd", "fwdbwd"):
            raise CaseError(f"mode must be fwd, bwd or fwdbwd, not {self.direction!r}")
        if min(self.B, self.S, self.R, self.H, self.C) < 1:
            raise CaseError("B, S, R (seq-len), H and C must all be at least 1")
        if self.case.device_type not in ("cpu", "cuda"):
            raise CaseError(f"kernel cases run on cpu or cuda, not {self.case.device}")
        if self.timing not in TIMINGS:
            raise CaseError(f"timing must be one of {', '.join(TIMINGS)}, not {self.timing!r}")
        if self.timing == "graph" and self.case.device_type != "cuda":
            raise CaseError("timing=graph replays a CUDA graph: it needs a CUDA GPU (use timing=events)")
        if self.timing == "graph" and self.direction == "bwd":
            # The forward that bwd runs untimed before each repetition cannot sit outside a graph
            # that replays the backward on its saved tensors.
            raise CaseError("timing=graph supports modes fwd and fwdbwd, not bwd")
        if (self.impl in TRITON_IMPLS or self.impl == "seed") and importlib.util.find_spec("triton") is None:
            raise CaseError(f"impl={self.impl} needs triton, which is not installed")
        if self.impl == "seed" and not self.on_cuda:
            raise CaseError("impl=seed (Ligo's Triton kernel) needs a CUDA GPU")
        if self.impl == "seed" and self.dtype_name != "fp32":
            raise CaseError("impl=seed (Ligo's Triton kernel) supports fp32 only")

    def setup(self) -> dict[str, Any]:
        self._validate()
        if self.impl in TRITON_IMPLS and not self.on_cuda:
            # Before triton is imported: the kernels then run in Triton's numpy interpreter.
            os.environ.setdefault("TRITON_INTERPRET", "1")
        import torch

        from af3_kernels import impls

        self.torch = torch
        self.device = torch.device("cuda" if self.on_cuda else "cpu")
        # The torch/compile fp32 paths: TF32 matmuls for the tf32 precisions; exact fp32 for ieee and
        # the bf16x* splits (PyTorch has no split-bf16 matmul: they are compared with exact fp32).
        torch.backends.cuda.matmul.allow_tf32 = self.precision.startswith("tf32")
        try:
            self.fn, facts = impls.make(self.impl, precision=self.precision, p_mode=self.p_mode)
        except FileNotFoundError as exc:
            raise CaseError(str(exc)) from None
        self.dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[self.dtype_name]
        self.gen = torch.Generator(self.device).manual_seed(0)
        B, S, R, H, C = self.B, self.S, self.R, self.H, self.C
        grad = self.direction != "fwd"
        mk = dict(device=self.device, dtype=self.dtype, generator=self.gen)
        self.v = torch.randn((B, S, R, H, C), **mk).requires_grad_(grad)
        self.g = torch.randn((B, S, R, H, C), **mk).requires_grad_(grad)
        self.b = torch.randn((B, R, R, H), **mk).requires_grad_(grad)
        self.mask = None
        if self.use_mask:  # keep 80% of pairs, as a padded complex would
            self.mask = torch.rand((B, R, R), device=self.device, generator=self.gen) < 0.8
        self.dout = torch.randn((B, S, R, H * C), **mk) if grad else None
        self._out = None
        floor = floors.msa_pwa_floor(self.direction, B, S, R, H, C, self.dtype_name, self.precision, self.use_mask)
        self.floor = floor
        facts = {
            "kernel": self.kernel, "impl": self.impl, "direction": self.direction,
            "shape": {"B": B, "S": S, "R": R, "H": H, "C": C},
            "floor_ms": floor.ms, "floor_bound": floor.bound, "floor_bytes": floor.bytes,
            "floor_flops": floor.flops, "floor_device": floors.FLOOR_DEVICE,
            "fp32_precision": self.precision if self.dtype_name == "fp32" else None,
            "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1" and self.impl in TRITON_IMPLS,
            "timing": self.timing,
            **facts,
        }
        if self.impl == "seed":
            facts["TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"] = os.environ.get("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS")
            facts["seed_note"] = "Ligo's kernel overwrites b in backward; b is refilled untimed per repetition"
        return facts

    # -- the timed work ----------------------------------------------------------------------

    def _refill_bias(self):
        """Ligo's seed kernel writes softmax(b) into its saved b during backward: restore b."""
        if self.impl == "seed" and self.direction != "fwd":
            with self.torch.no_grad():
                self.b.normal_(generator=self.gen)

    def _forward(self):
        return self.fn(self.v, self.b, self.g, self.mask)

    def _grads(self, out):
        return self.torch.autograd.grad(out, (self.v, self.b, self.g), self.dout)

    def _call(self):
        if self.direction == "fwd":
            with self.torch.no_grad():
                return self._forward()
        if self.direction == "fwdbwd":
            return self._grads(self._forward())
        return self._grads(self._out)  # bwd: the forward ran in _before

    def _before(self):
        self._refill_bias()
        if self.direction == "bwd":
            self._out = self._forward()

    def _sync(self):
        if self.on_cuda:
            self.torch.cuda.synchronize()

    def compile(self):
        self._before()
        self._call()  # Triton / Inductor compilation and autotuning happen here
        self._out = None
        self._sync()
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
        # The floor uses H100 rates: elsewhere the fraction would not mean anything.
        row["fraction_of_floor"] = self.floor.ms / elapsed if self.on_cuda else None
        return row

    def peak_memory(self) -> dict[str, Any]:
        out = super().peak_memory()
        if self._peak is not None:
            out["framework_peak_whole_case_bytes"] = out.get("framework_peak_bytes")
            out["framework_peak_bytes"] = int(self._peak)
            out["framework_peak_note"] = "one clean call: inputs + implementation (no L2 flush buffer)"
        return out

    # -- accuracy --------------------------------------------------------------------------

    def _check_error(self) -> dict[str, Any]:
        """Forward error on a slice of rows against float64, beside the same-dtype eager error.

        Only CHECK_ROWS rows i and CHECK_SEQS rows s: the float64 work stays small at any R, so
        the check can never be what runs out of memory in an R sweep.
        """
        torch = self.torch
        from af3_kernels.reference import masked_logits

        self._refill_bias()
        with torch.no_grad():
            out = self._forward()
            finite = bool(torch.isfinite(out).all())
            if not finite and self.impl != "seed":
                raise NonFiniteOutput(f"{self.impl} produced non-finite values")
            # The seed kernel accumulates into its uninitialised output buffer: record, don't fail.
            k, sk = min(self.R, CHECK_ROWS), min(self.S, CHECK_SEQS)
            mask = None if self.mask is None else self.mask[:, :k]

            def sliced(dtype):
                # Rows i < k of the output depend only on rows i < k of the bias.
                b = self.b[:, :k].to(dtype)
                logits = masked_logits(b, mask) if mask is not None else b
                w = torch.softmax(logits, dim=2)
                y = torch.einsum("bijh,bsjhc->bsihc", w, self.v[:, :sk].to(dtype))
                o = torch.sigmoid(self.g[:, :sk, :k].to(dtype)) * y
                return o.reshape(self.B, sk, k, self.H * self.C)

            ref64 = sliced(torch.float64)
            err = (out[:, :sk, :k].double() - ref64).abs().max().item()
            ref_err = (sliced(self.dtype).double() - ref64).abs().max().item()
        del out
        return {"output_finite": finite, "max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"rows i<{k}, s<{sk} vs float64"}
