"""One benchmark case of 2-simplicial attention (the runner's KernelCase; worker only).

Inputs: q, k1, k2, v1, v2 [B, n, H, d], standard normal (n = --seq-len, H = heads, d = head_dim),
so the logits have unit standard deviation. Implementations behind ``fn(q, k1, k2, v1, v2)``:
fused (function.py: the Triton forward, and its backward under autograd), torch (the eager
reference), compile (torch.compile of it), lucidrains (PyPI simplicial-attention's Triton forward; CUDA, bf16, d <= 64, windowed).
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from af3core import CaseError

from af3_kernels import floors
from af3_kernels.kernel import Implementation, Inputs, KernelCase, gemm_precision
from af3_kernels.simplicial.reference import simplicial_reference, triples
from af3_kernels.simplicial.spec import ANCHOR, ANCHOR_FIX, ANCHOR_MODULE

#: queries checked against float64 (the last ones: full windows); the full variant's reference
#: holds n * n logits per query and head, so it checks fewer
CHECK_QUERIES = {"windowed": 256, "full": 16}
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def simplicial_floor(direction: str, B: int, n: int, H: int, d: int, variant: str, w1: int, w2: int,
                     dtype: str, precision: str, rates: floors.Rates) -> floors.Floor:
    """Per allowed triple (i, j, k): the forward's logit (2d flops) and its share of p V2 (2d) on
    the tensor cores and one exponential; the backward's recomputed logit, dP = (dO * V1) V2^T,
    dA K2, dA^T (q * K1), p V2 and p^T (dO * V1) (6 x 2d) and one exponential. DRAM: the forward
    reads q, k1, k2, v1, v2 and writes out (6 B n H d elements); the backward reads the five, dO and
    out and writes five gradients (12). The per-(i, j) elementwise products run on the FMA units
    and are not counted. bf16 forward, n = 8192, d = 128, w1 = 512, w2 = 32, H = 4 on an H200:
    5.2e8 triples -> 2.66e11 flops -> 337 us (tensor-bound); exps 133 us; bytes 50 MB -> 12 us."""
    flops_per, elements, exps_per = {"fwd": (4, 6, 1), "bwd": (12, 12, 1), "fwdbwd": (16, 18, 2)}[direction]
    t = B * H * triples(n, variant, w1, w2)
    return floors.floor(elements * B * n * H * d * _ELEMENT_BYTES[dtype], flops_per * d * t, float(exps_per * t),
                        dtype, precision, rates)


class SimplicialCase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.B, self.n, self.H, self.d = int(s["B"]), int(size), int(s["heads"]), int(s["head_dim"])
        self.variant = s["simplicial_variant"]
        self.w1, self.w2 = int(s["w1"]), int(s["w2"])
        self.dtype_name = s["dtype"]
        self.precision, _ = gemm_precision("simplicial", s["precision"])  # spec.validate refused the others

    def _kwargs(self) -> dict[str, Any]:
        return {"variant": self.variant, "w1": self.w1, "w2": self.w2}

    def facts(self) -> dict[str, Any]:
        windows = {"w1": min(self.w1, self.n), "w2": min(self.w2, self.n)} if self.variant == "windowed" else {}
        return {"shape": {"B": self.B, "n": self.n, "H": self.H, "d": self.d, **windows},
                "layout": "[B, n, H, d]", "simplicial_variant": self.variant,
                "triples": self.B * self.H * triples(self.n, self.variant, self.w1, self.w2),
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        mk = dict(device=self.device, generator=generator, dtype=dtype)
        ts = tuple(torch.randn((self.B, self.n, self.H, self.d), **mk).requires_grad_(grad) for _ in range(5))
        return Inputs(args=ts, grad_args=ts if grad else (), dout=torch.randn_like(ts[0]) if grad else None)

    def implementation(self, name, inputs, direction) -> Implementation:
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        facts = {"torch_matmul": "tf32" if self.precision == "tf32" else "fp32"}
        kw = self._kwargs()
        if name == "fused":
            from af3_kernels.simplicial.function import simplicial_attention

            precision = self.precision
            return Implementation(lambda *x: simplicial_attention(*x, precision=precision, **kw), facts)
        reference = functools.partial(simplicial_reference, **kw)
        if name == "torch":
            return Implementation(reference, facts)
        if name == "compile":
            return Implementation(torch.compile(reference, dynamic=False), facts)
        if name == ANCHOR:
            return self._anchor(direction)
        raise CaseError(f"simplicial has no impl {name!r}")

    def _anchor(self, direction) -> Implementation:
        if direction != "fwd":
            raise CaseError(f"impl={ANCHOR} is benchmarked forward only: use --mode fwd")
        if self.device.type != "cuda" or self.variant != "windowed" or self.d > 64 or self.dtype_name != "bf16":
            raise CaseError(f"impl={ANCHOR} needs CUDA, bf16, head_dim <= 64 and the windowed variant")
        try:
            import importlib
            from importlib.metadata import version

            module = importlib.import_module(ANCHOR_MODULE)
            release = version("simplicial-attention")
        except ImportError as e:
            raise CaseError(f"impl={ANCHOR}: cannot import {ANCHOR_MODULE} ({e}); fix: {ANCHOR_FIX}") from None
        w1, w2 = self.w1, self.w2

        def call(q, k1, k2, v1, v2):
            with torch.no_grad():
                return module.sliding_two_simplicial_attn(q, (k1, k2), (v1, v2), w1=w1, w2=w2, causal=True)

        return Implementation(call, {"simplicial_attention": release})

    def floor(self, direction, rates) -> floors.Floor:
        return simplicial_floor(direction, self.B, self.n, self.H, self.d, self.variant, self.w1, self.w2,
                                self.dtype_name, self.precision, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        m = min(self.n, CHECK_QUERIES[self.variant])
        rows = (self.n - m, self.n)
        with torch.no_grad():
            ref64 = simplicial_reference(*(t.detach().double() for t in inputs.args), rows=rows, **self._kwargs())
            got = out.detach()[:, rows[0]:rows[1]].double()
            err = (got - ref64).abs().max().item()
            same = simplicial_reference(*(t.detach() for t in inputs.args), rows=rows, **self._kwargs())
            ref_err = (same.double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"the last {m} queries (every batch and head) vs float64"}
