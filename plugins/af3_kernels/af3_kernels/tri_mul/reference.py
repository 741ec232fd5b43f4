"""AlphaFold 3's triangle multiplicative update (Algorithms 12 and 13 of the AF3 supplement; 11 and
12 of AlphaFold 2's), in plain PyTorch: the reference the fused forward is checked against, and the
implementation on a CPU.

    z  = LayerNorm_in(z)                                  z [B, N, N, c]
    a  = mask * sigmoid(z W_ag + b_ag) * (z W_ap + b_ap)  [B, N, N, h]   (b likewise)
    x  = sum_k a[i,k] * b[j,k]   (outgoing)               [B, N, N, h]
         sum_k a[k,i] * b[k,j]   (incoming)
    out = sigmoid(z W_g + b_g) * (LayerNorm_out(x) W_z + b_z)            [B, N, N, c]

The weights are those of ``torch.nn.Linear`` (out_features x in_features); every linear has a bias,
as in OpenFold's and Ligo's modules.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

VARIANTS = ("outgoing", "incoming")


@dataclass
class TriMulParams:
    """The parameters of one triangle multiplicative update (``nn.Linear`` / ``nn.LayerNorm`` layout)."""

    ln_in_w: torch.Tensor  # [c]
    ln_in_b: torch.Tensor
    a_p_w: torch.Tensor  # [h, c]
    a_p_b: torch.Tensor  # [h]
    a_g_w: torch.Tensor
    a_g_b: torch.Tensor
    b_p_w: torch.Tensor
    b_p_b: torch.Tensor
    b_g_w: torch.Tensor
    b_g_b: torch.Tensor
    ln_out_w: torch.Tensor  # [h]
    ln_out_b: torch.Tensor
    z_w: torch.Tensor  # [c, h]
    z_b: torch.Tensor  # [c]
    g_w: torch.Tensor  # [c, c]
    g_b: torch.Tensor  # [c]
    eps_in: float = 1e-5
    eps_out: float = 1e-5

    @property
    def c(self) -> int:
        return self.ln_in_w.shape[0]

    @property
    def h(self) -> int:
        return self.a_p_w.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self) if not f.name.startswith("eps")]

    @classmethod
    def random(cls, c: int, h: int, device=None, dtype=torch.float32, generator=None) -> "TriMulParams":
        """Weights of the scale of a trained model's (unit-variance activations), not zeros: a
        zero-initialised projection would make every comparison vacuous."""
        mk = dict(device=device, dtype=dtype, generator=generator)

        def w(out_f, in_f):
            return torch.randn(out_f, in_f, **mk) * in_f ** -0.5

        def v(n, mean=0.0):
            return mean + 0.1 * torch.randn(n, **mk)

        return cls(v(c, 1.0), v(c), w(h, c), v(h), w(h, c), v(h), w(h, c), v(h), w(h, c), v(h),
                   v(h, 1.0), v(h), w(c, h), v(c), w(c, c), v(c))

    def to(self, dtype: torch.dtype) -> "TriMulParams":
        out = TriMulParams(*(t.to(dtype) for t in self.tensors()))
        out.eps_in, out.eps_out = self.eps_in, self.eps_out
        return out


def tri_mul_reference(z: torch.Tensor, mask: torch.Tensor | None, p: TriMulParams,
                      variant: str = "outgoing") -> torch.Tensor:
    """The update of ``z`` [B, N, N, c] (not added to z); ``mask`` [B, N, N] multiplies a and b."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    zn = F.layer_norm(z, (p.c,), p.ln_in_w, p.ln_in_b, p.eps_in)
    m = 1.0 if mask is None else mask.unsqueeze(-1).to(zn.dtype)
    a = m * torch.sigmoid(F.linear(zn, p.a_g_w, p.a_g_b)) * F.linear(zn, p.a_p_w, p.a_p_b)
    b = m * torch.sigmoid(F.linear(zn, p.b_g_w, p.b_g_b)) * F.linear(zn, p.b_p_w, p.b_p_b)
    if variant == "outgoing":
        x = torch.einsum("bikc,bjkc->bijc", a, b)
    else:
        x = torch.einsum("bkic,bkjc->bijc", a, b)
    x = F.layer_norm(x, (p.h,), p.ln_out_w, p.ln_out_b, p.eps_out)
    return torch.sigmoid(F.linear(zn, p.g_w, p.g_b)) * F.linear(x, p.z_w, p.z_b)
