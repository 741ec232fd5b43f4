"""2-simplicial attention in plain PyTorch: the tests' truth, the benchmark's ``torch`` and
``compile``, and the float64 check. Runs on any device.

Layout [B, n, H, d] for q, k1, k2, v1, v2 and the output (the layout of Roy et al.'s kernel and of
PyPI simplicial-attention). Per batch b and head h, with s = 1/sqrt(d):

    A[i, j, k] = s * sum_c q[i, c] k1[j, c] k2[k, c]
    S[i, :, :] = softmax over the pairs (j, k) of A[i, :, :] restricted to the allowed pairs
    out[i, c]  = sum_{j, k} S[i, j, k] v1[j, c] v2[k, c]

Allowed pairs: ``full``: every (j, k) in [0, n)^2; ``windowed`` (Roy et al., causal): j in
(i - w1, i] and k in (i - w2, i], clipped at 0. Every query has at least the pair (i, i), so no
row is empty.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: fp32 logits per chunk of queries the windowed reference materialises (bytes): bounds its memory
CHUNK_BYTES = 256 * 2**20


def simplicial_reference(q, k1, k2, v1, v2, variant: str = "windowed", w1: int = 512, w2: int = 32,
                         rows: tuple[int, int] | None = None) -> torch.Tensor:
    """out [B, m, H, d] for the queries ``rows`` = (start, stop) (default: all n), in the inputs'
    dtype (the products in it, the softmax in fp32 for 16-bit inputs, as eager attention does)."""
    B, n, H, d = q.shape
    for t in (k1, k2, v1, v2):
        if t.shape != q.shape:
            raise ValueError(f"q, k1, k2, v1, v2 must share one shape [B, n, H, d], got {tuple(q.shape)} "
                             f"and {tuple(t.shape)}")
    start, stop = rows if rows is not None else (0, n)
    qs = q[:, start:stop] * d ** -0.5
    if variant == "full":
        return _full(qs, k1, k2, v1, v2)
    if variant != "windowed":
        raise ValueError(f"variant must be 'windowed' or 'full', not {variant!r}")
    if w1 < 1 or w2 < 1:
        raise ValueError("w1 and w2 must be at least 1")
    w1, w2 = min(w1, n), min(w2, n)
    m = stop - start
    per_query = 4 * B * H * w1 * w2 * (1 + (q.element_size() < 4))
    chunk = max(1, min(m, CHUNK_BYTES // max(per_query, 1)))
    outs = [_windowed(qs[:, c:c + chunk], k1, k2, v1, v2, start + c, w1, w2) for c in range(0, m, chunk)]
    return torch.cat(outs, dim=1)


def _wide(logits):
    """The softmax's dtype: fp32 for 16-bit logits, else their own (float64 stays float64)."""
    return logits.float() if logits.element_size() < 4 else logits


def _full(qs, k1, k2, v1, v2):
    logits = torch.einsum("bihc,bjhc,bkhc->bhijk", qs, k1, k2)
    B, H, m, n, _ = logits.shape
    p = torch.softmax(_wide(logits).reshape(B, H, m, n * n), dim=-1).to(qs.dtype).reshape(B, H, m, n, n)
    return torch.einsum("bhijk,bjhc,bkhc->bihc", p, v1, v2)


def _window(t, start: int, m: int, w: int):
    """[B, m, H, d, w]: for query start + r, the rows (start + r - w, start + r] of t (zeros before 0)."""
    padded = F.pad(t, (0, 0, 0, 0, w - 1, 0))  # w - 1 zero rows in front of the sequence
    return padded[:, start:start + m + w - 1].unfold(1, w, 1)


def _windowed(qs, k1, k2, v1, v2, start, w1, w2):
    B, m, H, d = qs.shape
    K1, V1 = _window(k1, start, m, w1), _window(v1, start, m, w1)  # [B, m, H, d, w1]
    K2, V2 = _window(k2, start, m, w2), _window(v2, start, m, w2)  # [B, m, H, d, w2]
    logits = torch.einsum("bihc,bihcj,bihck->bihjk", qs, K1, K2)  # [B, m, H, w1, w2]
    i = torch.arange(start, start + m, device=qs.device)
    j_ok = (i[:, None] - w1 + 1 + torch.arange(w1, device=qs.device)) >= 0  # [m, w1]
    k_ok = (i[:, None] - w2 + 1 + torch.arange(w2, device=qs.device)) >= 0  # [m, w2]
    ok = (j_ok[:, :, None] & k_ok[:, None, :])[None, :, None]  # [1, m, 1, w1, w2]
    logits = _wide(logits).masked_fill(~ok, float("-inf"))
    p = torch.softmax(logits.reshape(B, m, H, w1 * w2), dim=-1).to(qs.dtype).reshape(B, m, H, w1, w2)
    return torch.einsum("bihjk,bihcj,bihck->bihc", p, V1, V2)


def random_inputs(B: int, n: int, H: int, d: int, dtype=torch.float32, device="cpu", generator=None):
    """(q, k1, k2, v1, v2), standard normal, [B, n, H, d]."""
    return tuple(torch.randn((B, n, H, d), device=device, generator=generator).to(dtype) for _ in range(5))


def triples(n: int, variant: str, w1: int, w2: int) -> int:
    """The number of allowed (i, j, k) triples of one (batch, head): the pairs summed over queries."""
    if variant == "full":
        return n ** 3
    a, b = sorted((max(1, min(w1, n)), max(1, min(w2, n))))
    # query i has min(i+1, w1) * min(i+1, w2) pairs: (i+1)^2 up to the smaller window a, then
    # (i+1) * a up to the larger b, then a * b
    up_a = a * (a + 1) * (2 * a + 1) // 6
    up_b = a * ((b * (b + 1) - a * (a + 1)) // 2)
    return up_a + up_b + a * b * (n - b)
