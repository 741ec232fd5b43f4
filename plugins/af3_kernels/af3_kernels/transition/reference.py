"""AlphaFold 3's Transition (Algorithm 11 of the AF3 supplement) in plain PyTorch: the reference the
fused forward is checked against, and the implementation on a CPU.

    x   = LayerNorm(x)                             x [..., c]
    out = (silu(x W_1) * (x W_2)) W_3              W_1, W_2 [n*c, c], W_3 [c, n*c]; no biases

(AF3 and Ligo use n = 4 in the Pairformer and the MSA module, n = 2 in the diffusion conditioning.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TransitionParams:
    """The parameters of one Transition (``nn.LayerNorm`` and bias-free ``nn.Linear`` layout)."""

    ln_w: torch.Tensor  # [c]
    ln_b: torch.Tensor  # [c]
    w1: torch.Tensor  # [n*c, c]: the SiLU branch
    w2: torch.Tensor  # [n*c, c]: the linear branch
    w3: torch.Tensor  # [c, n*c]
    eps: float = 1e-5

    @property
    def c(self) -> int:
        return self.ln_w.shape[0]

    @property
    def hidden(self) -> int:
        return self.w1.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [self.ln_w, self.ln_b, self.w1, self.w2, self.w3]

    @classmethod
    def random(cls, c: int, n: int, device=None, dtype=torch.float32, generator=None) -> "TransitionParams":
        """Unit-scale weights (not the zero-initialised output of a fresh engine module)."""
        mk = dict(device=device, dtype=dtype, generator=generator)
        return cls(1.0 + 0.1 * torch.randn(c, **mk), 0.1 * torch.randn(c, **mk),
                   torch.randn(n * c, c, **mk) * c ** -0.5, torch.randn(n * c, c, **mk) * c ** -0.5,
                   torch.randn(c, n * c, **mk) * (n * c) ** -0.5)

    def to(self, dtype: torch.dtype) -> "TransitionParams":
        return TransitionParams(*(t.to(dtype) for t in self.tensors()), eps=self.eps)


def transition_reference(x: torch.Tensor, p: TransitionParams) -> torch.Tensor:
    xn = F.layer_norm(x, (p.c,), p.ln_w, p.ln_b, p.eps)
    return F.linear(F.silu(F.linear(xn, p.w1)) * F.linear(xn, p.w2), p.w3)
