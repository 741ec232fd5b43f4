"""One benchmark case of the fused LayerNorm -> Linear (the runner's KernelCase; worker only).

Inputs: x [B, N, N, k] (or [B, N, k] with ln_rows=single) and LnLinearParams.random(k, out_dim).
Implementations behind ``fn(x)``: fused (function.py), torch (the eager reference), compile
(torch.compile of it), liger (Liger-Kernel's LayerNorm then F.linear; CUDA).
"""
from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from af3core import CaseError

from af3_kernels import floors
from af3_kernels.kernel import Implementation, Inputs, KernelCase, gemm_precision
from af3_kernels.ln_linear.reference import LnLinearParams, ln_linear_reference

CHECK_ROWS = 4096  # rows checked against float64
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
LIGER_VERSION = "0.8.5"


def ln_linear_floor(direction: str, M: int, k: int, n: int, dtype: str, precision: str,
                    rates: floors.Rates) -> floors.Floor:
    """Forward: x read, out written (e*M*(k+n) bytes; the normalised rows stay on chip), one product
    of 2*M*k*n flops. Backward: dout and x read, dx written (e*M*(n+2k)), three products' worth
    (dx's and dW's, each 2*M*k*n). fwdbwd: both."""
    e = _ELEMENT_BYTES[dtype]
    fwd = (e * M * (k + n), 2.0 * M * k * n)
    bwd = (e * M * (n + 2 * k), 4.0 * M * k * n)
    nbytes, flops = {"fwd": fwd, "bwd": bwd, "fwdbwd": (fwd[0] + bwd[0], fwd[1] + bwd[1])}[direction]
    return floors.floor(nbytes, flops, 0, dtype, precision, rates)


def _liger(p: LnLinearParams):
    try:
        from liger_kernel.ops.layer_norm import LigerLayerNormFunction
    except Exception as exc:  # noqa: BLE001 - not installed, or a torch/triton it does not accept
        raise CaseError(f"impl=liger: cannot import liger_kernel ({exc}); fix: pip install "
                        f"liger-kernel=={LIGER_VERSION} (or pip install 'af3-kernels[anchors]')") from None
    return lambda x: F.linear(LigerLayerNormFunction.apply(x, p.ln_w, p.ln_b, p.eps), p.w, p.b)


class LnLinearCase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.B, self.N = int(s["B"]), int(size)
        self.k, self.n, self.bias = int(s["pair_dim"]), int(s["out_dim"]), bool(s["bias"])
        self.pair = s["ln_rows"] == "pair"
        self.dtype_name = s["dtype"]
        self.precision, _ = gemm_precision("ln_linear", s["precision"])  # spec.validate refused the others

    @property
    def rows(self) -> int:
        return self.B * self.N * (self.N if self.pair else 1)

    def facts(self) -> dict[str, Any]:
        return {"shape": {"B": self.B, "N": self.N, "rows": self.rows, "k": self.k, "n": self.n, "bias": self.bias},
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        mk = dict(device=self.device, generator=generator)
        shape = (self.B, self.N, self.N, self.k) if self.pair else (self.B, self.N, self.k)
        x = torch.randn(shape, dtype=dtype, **mk).requires_grad_(grad)
        self._params = LnLinearParams.random(self.k, self.n, self.bias, dtype=dtype, **mk)
        for t in self._params.tensors():
            t.requires_grad_(grad)
        out_shape = (*shape[:-1], self.n)
        return Inputs(args=(x,), grad_args=(x, *self._params.tensors()) if grad else (),
                      dout=torch.randn(out_shape, dtype=dtype, **mk) if grad else None)

    def implementation(self, name, inputs, direction) -> Implementation:
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        p = self._params
        facts = {"torch_matmul": "tf32" if self.precision == "tf32" else "fp32"}
        if name == "fused":
            from af3_kernels.ln_linear.function import ln_linear

            precision = self.precision
            return Implementation(lambda x: ln_linear(x, p.ln_w, p.ln_b, p.w, p.b, p.eps, precision), facts)
        reference = functools.partial(ln_linear_reference, p=p)
        if name == "torch":
            return Implementation(reference, facts)
        if name == "compile":
            return Implementation(torch.compile(reference, dynamic=False), facts)
        if name == "liger":
            if self.device.type != "cuda":
                raise CaseError("impl=liger runs Liger-Kernel's Triton LayerNorm, which needs a CUDA GPU "
                                "(it does not run in Triton's interpreter)")
            return Implementation(_liger(p), {**facts, "liger_kernel": LIGER_VERSION})
        raise CaseError(f"ln_linear has no impl {name!r}")

    def floor(self, direction, rates) -> floors.Floor:
        return ln_linear_floor(direction, self.rows, self.k, self.n, self.dtype_name, self.precision, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        (x,) = inputs.args
        rows = x.reshape(-1, self.k)[:CHECK_ROWS]
        with torch.no_grad():
            ref64 = ln_linear_reference(rows.double(), self._params.to(torch.float64))
            err = (out.reshape(-1, self.n)[:CHECK_ROWS].double() - ref64).abs().max().item()
            ref_err = (ln_linear_reference(rows, self._params).double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"the first {len(rows)} rows vs float64"}
