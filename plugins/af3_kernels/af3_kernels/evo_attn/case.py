"""One benchmark case of Evoformer attention (the runner's KernelCase; worker only).

Inputs in the variant's layout (reference.py), N = --seq-len, H = heads, D = head_dim, S = rows:
q, k, v (and the gate g with gate=true) [B, N, N, H, D] for tri_start / tri_end, [B, S, N, H, D] for
msa_row / msa_col, [B, N, H, D] for single; the bias [B, H, L, L] of std bias_scale (none for
msa_col); with mask=true a random mask (80% kept) of q.shape[:-2]. The implementations, behind one
call ``fn(q, k, v, bias, mask, g)`` (the anchors: their own layouts, anchors.py):

fused    this package's Triton kernel (function.py)
torch    the eager reference (reference.py): einsum, softmax, einsum
compile  torch.compile of that reference
sdpa, trifast, cueq   anchors.py
"""
from __future__ import annotations

import functools
from typing import Any

import torch

from af3core import CaseError

from af3_kernels import floors
from af3_kernels.evo_attn import anchors
from af3_kernels.evo_attn.reference import evo_attention_reference, reference_rows, rows_view
from af3_kernels.evo_attn.spec import anchor_missing
from af3_kernels.kernel import Implementation, Inputs, KernelCase, resolve_variant

CHECK_ROWS = 4  # rows of the rows view checked against float64: B*4*H*L*L float64 at most
_ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def shape_of(variant: str, B: int, N: int, S: int) -> tuple[int, int]:
    """(R, L): rows sharing the bias, and the length each attends over."""
    return {"tri_start": (N, N), "tri_end": (N, N), "msa_row": (S, N), "msa_col": (N, S), "single": (1, N)}[variant]


def evo_attn_floor(direction: str, B: int, R: int, L: int, H: int, D: int, dtype: str, precision: str,
                   bias: bool, mask: bool, gate: bool, rates: floors.Rates) -> floors.Floor:
    """Floor of Evoformer attention for ``direction`` in fwd, bwd, fwdbwd; e = element bytes,
    X = B*R*L*H*D (the size of q), P = B*R*H*L*L (the logits: N^3*H for triangle attention).

    fwd: exps P (one per logit); tensor flops 4*P*D (Q K^T and P V, 2*P*D each); bytes
        e*(4X + B*H*L*L) (q, k, v read, out written, the bias read) + B*R*L (a byte mask) + e*X
        (gate read). For bf16 triangle attention at D = 32 the exps bound it: H200, N = 384, H = 4:
        exps 226M / 3.9e12/s = 58 us; tensor 29.0 GFLOP / 790e12 = 37 us; bytes 152 MB / 4.3e12 = 35 us.
    bwd: P rebuilt once (P exps), five products (Q K^T, dO V^T, P^T dO, dS^T Q, dS K): 10*P*D flops,
        2.5x the forward's; bytes e*(8X + 2*B*H*L*L) (q, k, v, out, dout read; dq, dk, dv written;
        bias read, dbias written) + the mask + e*2X (gate read, its gradient written).
    fwdbwd as one unit: 14*P*D flops (3.5x the forward's), 2P exps, bytes e*(8X + 2*B*H*L*L)
        (nothing read twice, out written once) + mask + gate. At N = 384 above: tensor-bound,
        101.5 GFLOP -> 128 us (exps 116 us).
    fp32 dots run at the precision's rate (floors.math_rate: FMA for ieee).
    """
    e = _ELEMENT_BYTES[dtype]
    X = B * R * L * H * D
    P = B * R * H * L * L
    bias_bytes = e * B * H * L * L if bias else 0
    mask_bytes = B * R * L if mask else 0
    if direction == "fwd":
        nbytes, flops, exps = e * 4 * X + bias_bytes + (e * X if gate else 0), 4.0 * P * D, P
    elif direction == "bwd":
        nbytes, flops, exps = e * 8 * X + 2 * bias_bytes + (2 * e * X if gate else 0), 10.0 * P * D, P
    elif direction == "fwdbwd":
        nbytes, flops, exps = e * 8 * X + 2 * bias_bytes + (2 * e * X if gate else 0), 14.0 * P * D, 2 * P
    else:
        raise ValueError(f"direction must be fwd, bwd or fwdbwd, not {direction!r}")
    return floors.floor(nbytes + mask_bytes, flops, exps, dtype, precision, rates)


def resolve_precision(precision: str) -> str:
    """"auto" is exact fp32 ("ieee") for this kernel; the others as given."""
    return "ieee" if precision == "auto" else precision


class EvoAttnCase(KernelCase):
    def __init__(self, settings, size, device):
        super().__init__(settings, size, device)
        s = settings
        self.variant = resolve_variant("evo_attn", s["variant"])
        self.B, self.H, self.D, self.S = (int(s[k]) for k in ("B", "heads", "head_dim", "rows"))
        self.N = int(size)
        self.R, self.L = shape_of(self.variant, self.B, self.N, self.S)
        self.use_mask, self.use_gate = bool(s["mask"]), bool(s["gate"])
        self.bias_scale = float(s["bias_scale"])
        self.has_bias = self.variant != "msa_col"
        self.dtype_name = s["dtype"]
        self.precision = resolve_precision(s["precision"])
        self._to_rows = None

    def facts(self) -> dict[str, Any]:
        shape = {"B": self.B, "N": self.N, "H": self.H, "D": self.D, "R": self.R, "L": self.L}
        if self.variant in ("msa_row", "msa_col"):
            shape["S"] = self.S
        return {"variant": self.variant, "shape": shape, "bias": self.has_bias, "gate": self.use_gate,
                "bias_scale": self.bias_scale,
                # the fp32 dots' precision; 16-bit inputs multiply in their own dtype
                "precision": self.precision if self.dtype_name == "fp32" else None}

    def _shape(self) -> tuple[int, ...]:
        B, N, H, D, S = self.B, self.N, self.H, self.D, self.S
        if self.variant in ("tri_start", "tri_end"):
            return (B, N, N, H, D)
        if self.variant in ("msa_row", "msa_col"):
            return (B, S, N, H, D)
        return (B, N, H, D)

    def make_inputs(self, dtype, grad, generator) -> Inputs:
        shape = self._shape()
        mk = dict(device=self.device, dtype=dtype, generator=generator)
        q, k, v = (torch.randn(shape, **mk).requires_grad_(grad) for _ in range(3))
        g = torch.randn(shape, **mk).requires_grad_(grad) if self.use_gate else None
        bias = None
        if self.has_bias:
            bias = (torch.randn((self.B, self.H, self.L, self.L), **mk) * self.bias_scale).requires_grad_(grad)
        mask = None
        if self.use_mask:  # keep 80%, as padding would
            mask = torch.rand(shape[:-2], device=self.device, generator=generator) < 0.8
        dout = torch.randn(shape, **mk) if grad else None
        grad_args = tuple(x for x in (q, k, v, bias, g) if x is not None) if grad else ()
        self._inputs = Inputs(args=(q, k, v, bias, mask, g), grad_args=grad_args, dout=dout)
        return self._inputs

    def implementation(self, name, inputs, direction) -> Implementation:
        variant, precision = self.variant, self.precision
        self._to_rows = functools.partial(rows_view, variant=variant)
        # the torch/compile fp32 paths: TF32 matmuls for the tf32 precisions, exact fp32 otherwise
        torch.backends.cuda.matmul.allow_tf32 = precision.startswith("tf32")
        if name == "fused":
            from af3_kernels.evo_attn.function import evo_attention

            def fused(q, k, v, bias, mask, g):
                return evo_attention(q, k, v, bias, mask, g, variant=variant, precision=precision)

            return Implementation(fused, {"layout": "in place (the variant's layout, strided rows view)"})
        reference = functools.partial(evo_attention_reference, variant=variant)
        if name == "torch":
            return Implementation(reference, {"torch_matmul": self._torch_matmul()})
        if name == "compile":
            return Implementation(torch.compile(reference, dynamic=False), {"torch_matmul": self._torch_matmul()})
        if name in anchors.ANCHORS:
            fix = anchor_missing(name)
            if fix is not None:
                raise CaseError(f"impl={name}: its package is not installed; fix: {fix}")
            impl, self._to_rows = anchors.ANCHORS[name](inputs, variant)
            return impl
        raise CaseError(f"evo_attn has no impl {name!r}")

    def _torch_matmul(self) -> str:
        return "tf32" if self.precision.startswith("tf32") else "fp32"

    def floor(self, direction, rates) -> floors.Floor:
        return evo_attn_floor(direction, self.B, self.R, self.L, self.H, self.D, self.dtype_name, self.precision,
                              self.has_bias, self.use_mask, self.use_gate, rates)

    def check(self, out, inputs) -> dict[str, Any]:
        """Forward error on rows r < CHECK_ROWS of the rows view against float64, beside the
        same-dtype eager error: each row depends on its own q, k, v only (and the shared bias), so
        the float64 work stays small at any N. ``out`` is mapped back from an anchor's layout."""
        q, k, v, bias, mask, g = self._inputs.args
        rows = min(self.R, CHECK_ROWS)
        with torch.no_grad():
            ref64 = reference_rows(q, k, v, bias, mask, g, self.variant, rows, torch.float64)
            err = (self._to_rows(out)[:, :rows].double() - ref64).abs().max().item()
            same = reference_rows(q, k, v, bias, mask, g, self.variant, rows, q.dtype)
            ref_err = (same.double() - ref64).abs().max().item()
        return {"max_abs_err": err, "eager_same_dtype_max_abs_err": ref_err,
                "err_checked_on": f"rows r<{rows} of the rows view [B,R,L,H,D] vs float64"}
