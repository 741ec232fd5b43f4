"""The plain-PyTorch LayerNorm -> Linear the fused kernel is measured against (and checked with)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LnLinearParams:
    """``nn.LayerNorm(k)`` then ``nn.Linear(k, n, bias=...)``, in their modules' layouts."""

    ln_w: torch.Tensor  # [k]
    ln_b: torch.Tensor  # [k]
    w: torch.Tensor  # [n, k]
    b: torch.Tensor | None  # [n] or None
    eps: float = 1e-5

    @property
    def k(self) -> int:
        return self.ln_w.shape[0]

    @property
    def n(self) -> int:
        return self.w.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.ln_w, self.ln_b, self.w, self.b) if t is not None]

    @classmethod
    def random(cls, k: int, n: int, bias: bool, device=None, dtype=torch.float32, generator=None) -> "LnLinearParams":
        mk = dict(device=device, dtype=dtype, generator=generator)
        return cls(1.0 + 0.1 * torch.randn(k, **mk), 0.1 * torch.randn(k, **mk), torch.randn(n, k, **mk) * k ** -0.5,
                   0.1 * torch.randn(n, **mk) if bias else None)

    def to(self, dtype: torch.dtype) -> "LnLinearParams":
        return LnLinearParams(self.ln_w.to(dtype), self.ln_b.to(dtype), self.w.to(dtype),
                              None if self.b is None else self.b.to(dtype), self.eps)


def ln_linear_reference(x: torch.Tensor, p: LnLinearParams) -> torch.Tensor:
    return F.linear(F.layer_norm(x, (p.k,), p.ln_w, p.ln_b, p.eps), p.w, p.b)
