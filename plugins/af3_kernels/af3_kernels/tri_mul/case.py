"""One benchmark case of the triangle multiplicative update (the runner's KernelCase; worker only).

Inputs: the pair tensor z [B, N, N, c] (N = --seq-len, c = pair_dim), the module's parameters
(TriMulParams.random: unit-scale weights, hidden h = tri_hidden) and with mask=true a random pair
mask keeping 80%. The implementations, behind one call ``fn(z, mask)``:

fused    this package's forward (function.py); forward only
torch    the eager reference (reference.py)
compile  torch.compile of that reference
"""
from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from af3core import CaseError

from af3_kernels import floors
from af3_kernels.kernel import Implementation, Inputs, KernelCase, gemm_precision, resolve_variant
from af3_kernels.tri_mul.reference import TriMulParams, tri_mul_reference

CHECK_ROWS = 8  # output rows i checked against float64
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def tri_mul_floor(direction: str, B: int, N: int, c: int, h: int, dtype: str, precision: str,
                  mask: bool, rates: floors.Rates) -> floors.Floor:
    """Forward: the contraction's 2*N^3*h flops plus the projections' 2*N^2*c*(4h + c) and
    2*N^2*h*c, on the tensor cores; bytes: z read and the update written, e*2*N^2*c, plus a byte
    mask (a, b and x can stay on chip in an ideal kernel). For bf16 at N = 768, c = h = 128 on an
    H200: 126 GFLOP -> 160 us; bytes 302 MB -> 70 us. Backward: twice the forward's products (each
    has an input and a weight gradient), z and the update's gradient read and z's written
    (e*3*N^2*c); fwdbwd: both."""
    e = _ELEMENT_BYTES[dtype]
    nn_ = B * N * N
    flops = 2.0 * nn_ * N * h + 2.0 * nn_ * c * (4 * h + c) + 2.0 * nn_ * h * c
    mask_bytes = nn_ if mask else 0
    fwd, bwd = (e * 2 * nn_ * c + mask_bytes, flops), (e * 3 * nn_ * c + mask_bytes, 2 * flops)
    nbytes, total = {"fwd": fwd, "bwd": bwd, "fwdbwd": (fwd[0] + bwd[0], fwd[1] + bwd[1])}[direction]
    return floors.floor(nbytes, total, 0, dtype, precision, rates)


def _cueq(p: TriMulParams, variant: str, facts: dict) -> Implementation:
    """cuEquivariance's fused update (:mod:`af3_kernels.tri_mul.cueq`) with this case's parameters."""
    from af3_kernels.tri_mul import cueq

    try:
        version = cueq.load(p.h, p.c)
    except cueq.CueqUnavailable as exc:
        raise CaseError(f"impl=cueq: {exc}") from None
    # stacked once for a forward; per call where gradients must reach the parameters through the stacking
    stacked = None if any(t.requires_grad for t in p.tensors()) else cueq.weights(p)
    return Implementation(lambda z, mask: cueq.tri_mul_cueq(z, mask, stacked or cueq.weights(p), variant),
                          {**facts, "cuequivariance_torch": version})


class TriMulCase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.variant = resolve_variant("tri_mul", s["variant"])
        self.B, self.N = int(s["B"]), int(size)
        self.c, self.h = int(s["pair_dim"]), int(s["tri_hidden"])
        self.use_mask = bool(s["mask"])
        self.dtype_name = s["dtype"]
        # fp32: "tf32" runs the GEMMs in TF32 (torch's matmul precision "high"), else exact fp32
        self.precision, _ = gemm_precision("tri_mul", s["precision"])  # spec.validate refused the others

    def facts(self) -> dict[str, Any]:
        return {"variant": self.variant, "shape": {"B": self.B, "N": self.N, "c": self.c, "h": self.h},
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        mk = dict(device=self.device, generator=generator)
        z = torch.randn((self.B, self.N, self.N, self.c), dtype=dtype, **mk).requires_grad_(grad)
        params = TriMulParams.random(self.c, self.h, dtype=dtype, **mk)
        for t in params.tensors():
            t.requires_grad_(grad)
        mask = None
        if self.use_mask:  # keep 80% of pairs, as padding would
            mask = (torch.rand((self.B, self.N, self.N), **mk) < 0.8).to(dtype)
        dout = torch.randn_like(z) if grad else None
        self._params = params
        grad_args = (z, *params.tensors()) if grad else ()
        return Inputs(args=(z, mask), grad_args=grad_args, dout=dout)

    def implementation(self, name, inputs, direction) -> Implementation:
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        params, variant = self._params, self.variant
        facts = {"torch_matmul": "tf32" if self.precision == "tf32" else "fp32"}
        if name == "fused":
            from af3_kernels.tri_mul.function import projection, tri_mul

            weight, bias = projection(params)  # kept, as an engine module would keep its weights
            precision = self.precision

            def fused(z, mask):
                return tri_mul(z, mask, params, variant, precision, weight, bias)

            return Implementation(fused, facts)
        reference = functools.partial(tri_mul_reference, p=params, variant=variant)
        if name == "torch":
            return Implementation(reference, facts)
        if name == "compile":
            return Implementation(torch.compile(reference, dynamic=False), facts)
        if name == "cueq":
            return _cueq(params, variant, facts)
        raise CaseError(f"tri_mul has no impl {name!r}")

    def floor(self, direction, rates) -> floors.Floor:
        return tri_mul_floor(direction, self.B, self.N, self.c, self.h, self.dtype_name, self.precision,
                             self.use_mask, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        """Output rows i < CHECK_ROWS against float64 (they need all of a and b, but only those rows
        of x), beside the same-dtype eager error."""
        z, mask = inputs.args
        rows = min(self.N, CHECK_ROWS)
        with torch.no_grad():
            ref64 = _reference_rows(z.double(), None if mask is None else mask.double(),
                                    self._params.to(torch.float64), self.variant, rows)
            err = (out[:, :rows].double() - ref64).abs().max().item()
            same = _reference_rows(z, mask, self._params, self.variant, rows)
            ref_err = (same.double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"rows i<{rows} vs float64"}


def _reference_rows(z, mask, p: TriMulParams, variant: str, rows: int) -> torch.Tensor:
    """tri_mul_reference(...)[:, :rows] without the other rows of the contraction."""
    zn = F.layer_norm(z, (p.c,), p.ln_in_w, p.ln_in_b, p.eps_in)
    m = 1.0 if mask is None else mask.unsqueeze(-1).to(zn.dtype)
    a = m * torch.sigmoid(F.linear(zn, p.a_g_w, p.a_g_b)) * F.linear(zn, p.a_p_w, p.a_p_b)
    b = m * torch.sigmoid(F.linear(zn, p.b_g_w, p.b_g_b)) * F.linear(zn, p.b_p_w, p.b_p_b)
    if variant == "outgoing":
        x = torch.einsum("bikc,bjkc->bijc", a[:, :rows], b)
    else:
        x = torch.einsum("bkic,bkjc->bijc", a[:, :, :rows], b)
    x = F.layer_norm(x, (p.h,), p.ln_out_w, p.ln_out_b, p.eps_out)
    return torch.sigmoid(F.linear(zn[:, :rows], p.g_w, p.g_b)) * F.linear(x, p.z_w, p.z_b)
