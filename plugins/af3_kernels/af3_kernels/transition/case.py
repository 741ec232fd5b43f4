"""One benchmark case of the Transition (the runner's KernelCase; worker only).

Inputs: x [B, N, N, c] (N = --seq-len, c = pair_dim) and TransitionParams.random with hidden width
expansion * c. Implementations behind ``fn(x)``: fused (function.py), torch (the
eager reference), compile (torch.compile of it).
"""
from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from af3core import CaseError

from af3_kernels import floors
from af3_kernels.kernel import Implementation, Inputs, KernelCase, gemm_precision
from af3_kernels.ln_linear.case import LIGER_VERSION
from af3_kernels.transition.reference import TransitionParams, transition_reference

CHECK_ROWS = 4096  # rows checked against float64
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def transition_floor(direction: str, M: int, c: int, n: int, dtype: str, precision: str,
                     rates: floors.Rates) -> floors.Floor:
    """Forward: x read and out written (e*2*M*c bytes; the activation never leaves the chip),
    3 products of 2*M*c*n*c flops each. bf16, N = 768 (M = 589,824), c = 128, n = 4 on an H200:
    bytes 302 MB -> 70 us; 116 GFLOP -> 147 us (tensor-bound). Backward: x and dout read, dx
    written (e*3*M*c), 6 products (the activation's gradient, dxn's two, the three weights'); a
    backward that recomputes a and b does 2 more, which the floor does not count. fwdbwd: both."""
    e = _ELEMENT_BYTES[dtype]
    product = 2.0 * M * c * n * c
    fwd, bwd = (e * 2 * M * c, 3 * product), (e * 3 * M * c, 6 * product)
    nbytes, flops = {"fwd": fwd, "bwd": bwd, "fwdbwd": (fwd[0] + bwd[0], fwd[1] + bwd[1])}[direction]
    return floors.floor(nbytes, flops, 0, dtype, precision, rates)


def _liger(p: TransitionParams):
    """Liger-Kernel's pieces of a SwiGLU MLP: its LayerNorm, torch's linears, its fused SiLU-times."""
    try:
        from liger_kernel.ops.layer_norm import LigerLayerNormFunction
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
    except Exception as exc:  # noqa: BLE001 - not installed, or a torch/triton it does not accept
        raise CaseError(f"impl=liger: cannot import liger_kernel ({exc}); fix: pip install "
                        f"liger-kernel=={LIGER_VERSION} (or pip install 'af3-kernels[anchors]')") from None

    def fn(x):
        xn = LigerLayerNormFunction.apply(x, p.ln_w, p.ln_b, p.eps)
        return F.linear(LigerSiLUMulFunction.apply(F.linear(xn, p.w1), F.linear(xn, p.w2)), p.w3)

    return fn


class TransitionCase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.B, self.N = int(s["B"]), int(size)
        self.c, self.n = int(s["pair_dim"]), int(s["expansion"])
        self.dtype_name = s["dtype"]
        self.precision, _ = gemm_precision("transition", s["precision"])  # spec.validate refused the others

    def facts(self) -> dict[str, Any]:
        return {"shape": {"B": self.B, "N": self.N, "c": self.c, "hidden": self.n * self.c},
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        mk = dict(device=self.device, generator=generator)
        x = torch.randn((self.B, self.N, self.N, self.c), dtype=dtype, **mk).requires_grad_(grad)
        self._params = TransitionParams.random(self.c, self.n, dtype=dtype, **mk)
        for t in self._params.tensors():
            t.requires_grad_(grad)
        grad_args = (x, *self._params.tensors()) if grad else ()
        return Inputs(args=(x,), grad_args=grad_args, dout=torch.randn_like(x) if grad else None)

    def implementation(self, name, inputs, direction) -> Implementation:
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        params = self._params
        facts = {"torch_matmul": "tf32" if self.precision == "tf32" else "fp32"}
        if name == "fused":
            from af3_kernels.transition.function import transition

            precision = self.precision
            return Implementation(lambda x: transition(x, params, precision), facts)
        reference = functools.partial(transition_reference, p=params)
        if name == "torch":
            return Implementation(reference, facts)
        if name == "compile":
            return Implementation(torch.compile(reference, dynamic=False), facts)
        if name == "liger":
            return Implementation(_liger(params), {**facts, "liger_kernel": LIGER_VERSION})
        raise CaseError(f"transition has no impl {name!r}")

    def floor(self, direction, rates) -> floors.Floor:
        return transition_floor(direction, self.B * self.N * self.N, self.c, self.n, self.dtype_name,
                                self.precision, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        (x,) = inputs.args
        rows = x.reshape(-1, self.c)[:CHECK_ROWS]
        with torch.no_grad():
            ref64 = transition_reference(rows.double(), self._params.to(torch.float64))
            err = (out.reshape(-1, self.c)[:CHECK_ROWS].double() - ref64).abs().max().item()
            ref_err = (transition_reference(rows, self._params).double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"the first {len(rows)} rows vs float64"}
