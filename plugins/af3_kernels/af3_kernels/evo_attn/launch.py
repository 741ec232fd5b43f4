"""Launching the Evoformer attention kernels: configurations, grids, buffers, and the forward and
backward sequences of launches. Tensors arrive as rows views [B, R, L, H, D] (reference.py); every
choice that is not the caller's comes from an :class:`~af3_kernels.evo_attn.options.EvoAttnOptions`.

Forward: one launch (_fwd_kernel). Backward: _bwd_prep_kernel (delta, and the gate's part), then
_bwd_dkdv_kernel (if k or v need a gradient) and _bwd_dq_kernel (if q or the bias does; it also
makes dbias).
"""
from __future__ import annotations

import functools
import os

import torch
import triton

from af3_kernels.evo_attn import kernels as k
from af3_kernels.evo_attn.options import DEFAULT_OPTIONS, EvoAttnOptions

PRECISIONS = ("ieee", "tf32", "tf32x3", "bf16x3", "bf16x6")
KERNELS = ("fwd", "dkdv", "dq", "prep")
INT32_LIMIT = 2**31 - 1


def interpreting() -> bool:
    """Whether Triton runs kernels in its numpy interpreter (TRITON_INTERPRET=1: the CPU tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def block_d(D: int) -> int:
    """The head dim padded to a power of two, at least 16 (tl.dot's smallest K)."""
    return max(16, triton.next_power_of_2(D))


def _cfg(BLOCK_M, BLOCK_N, ROWS, num_warps, num_stages=2):
    return dict(BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, ROWS=ROWS, num_warps=num_warps, num_stages=num_stages)


#: GPU defaults by (dtype class, head dims up to), per kernel. Chosen offline: compiled for sm_90a
#: (Triton 3.9 + ptxas -v, SASS instruction counts of the inner loops), the 16-bit entries without
#: register spills and all within shared memory; registers per thread in the comments. To be
#: confirmed by measurement on the H200 (tune.py sweeps them).
_GPU_CONFIGS = {
    ("16bit", 32): {  # AF3's triangle attention (D = 32), and D = 16
        # 180 regs; ~10 SASS instructions per logit in the loop (BLOCK_N 128 with ROWS 2: ~9, 255 regs)
        "fwd": _cfg(128, 64, 2, 8, 3),
        "dkdv": _cfg(32, 128, 2, 8),  # 188 (keys are the products' M); wgmma not serialised
        "dq": _cfg(128, 64, 2, 8),  # 244; ROWS 4 (half the dbias atomics) at BLOCK_M 64, BLOCK_N 32: 238
    },
    ("16bit", 64): {"fwd": _cfg(128, 64, 1, 8), "dkdv": _cfg(32, 128, 1, 8), "dq": _cfg(128, 32, 1, 8)},
    ("16bit", 256): {"fwd": _cfg(128, 32, 1, 8, 3), "dkdv": _cfg(32, 64, 1, 4), "dq": _cfg(64, 32, 1, 4)},
    # fp32 on the FMA units (ieee): at most 8 bytes of spill at D = 32 and 64 with a mask
    ("ieee", 64): {"fwd": _cfg(64, 32, 1, 8), "dkdv": _cfg(32, 32, 1, 8), "dq": _cfg(64, 32, 1, 8)},
    ("ieee", 256): {"fwd": _cfg(32, 32, 1, 8), "dkdv": _cfg(16, 32, 1, 8), "dq": _cfg(32, 32, 1, 8)},
    # fp32 split over tensor cores (tf32x3, bf16x3, bf16x6...): fits at D <= 64 but for ~50 bytes of
    # spill in dk/dv; at D = 128 all three spill (not an AF3 shape: correct, not tuned)
    ("split", 64): {"fwd": _cfg(64, 64, 1, 4), "dkdv": _cfg(32, 64, 1, 4), "dq": _cfg(64, 32, 1, 4)},
    # fp32 as one TF32 product (an engine under torch's "high" matmul precision): the forward with
    # two rows per program sharing each bias tile, 18% faster than one at N = 768 on an H100
    ("tf32", 64): {"fwd": _cfg(64, 64, 2, 4), "dkdv": _cfg(32, 64, 1, 4), "dq": _cfg(64, 32, 1, 4)},
    ("tf32", 256): {"fwd": _cfg(32, 32, 1, 4), "dkdv": _cfg(16, 32, 1, 4), "dq": _cfg(32, 32, 1, 4)},
    ("split", 256): {"fwd": _cfg(32, 32, 1, 4), "dkdv": _cfg(16, 32, 1, 4), "dq": _cfg(32, 32, 1, 4)},
}


def config(kernel: str, dtype: torch.dtype, D: int, precision: str = "ieee",
           opts: EvoAttnOptions = DEFAULT_OPTIONS) -> dict:
    """Block sizes and launch options of one kernel: BLOCK_M (queries), BLOCK_N (keys), ROWS (rows
    per program sharing each bias tile), num_warps, num_stages (_GPU_CONFIGS); the interpreter uses
    the smallest tiles. ``opts.config_overrides[kernel]`` is merged over them."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    if interpreting():
        cfg = dict(BLOCK_M=16, BLOCK_N=16, ROWS=2, num_warps=4, num_stages=1)
    elif kernel == "prep":
        cfg = dict(BLOCK_M=64, num_warps=4)
    else:
        kind = "16bit" if dtype in (torch.bfloat16, torch.float16) else (
            precision if precision in ("ieee", "tf32") else "split")
        limit = min(d for (k, d) in _GPU_CONFIGS if k == kind and D <= d)
        cfg = dict(_GPU_CONFIGS[(kind, limit)][kernel])
    return {**cfg, **opts.config_overrides.get(kernel, {})}


def rows_for(cfg_rows: int, R: int) -> int:
    """ROWS of a launch: the configured 1, 2 or 4, halved while half of it still covers R."""
    rows = int(cfg_rows)
    if rows not in (1, 2, 4):
        raise ValueError(f"ROWS must be 1, 2 or 4, not {rows}")
    while rows > 1 and rows // 2 >= R:
        rows //= 2
    return rows


def launch_options(cfg: dict) -> dict:
    """The keyword arguments of a launch: the configuration's constexprs and Triton options."""
    return {key: val for key, val in cfg.items() if key != "ROWS"}


def new(shape, dtype, device, opts: EvoAttnOptions) -> torch.Tensor:
    """An uninitialised buffer the kernels overwrite (NaN-filled with opts.poison_outputs)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if opts.poison_outputs:
        t.fill_(float("nan"))
    return t


def wide(L: int, D: int, row_strides, bias: torch.Tensor | None) -> bool:
    """Whether an offset inside a tile (l * stride along L, plus d; i * stride + j in the bias) can
    reach 2**31: then the kernels compute those in int64 too (the (b, r, h) bases always are)."""
    reach = max(abs(s) for s in row_strides) * L + D
    if bias is not None:  # the bias as read, and the [B, H, L, L] dbias buffer
        reach = max(reach, L * (abs(bias.stride(2)) + 1), L * L)
    return reach >= INT32_LIMIT


def strides4(x: torch.Tensor | None, like: torch.Tensor) -> tuple:
    """(b, r, l, h) strides of a rows view (of ``like`` when x is absent: unused then)."""
    return tuple((x if x is not None else like).stride()[:4])


@functools.lru_cache(maxsize=None)
def sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _mask_args(keep, q):
    """The uint8 mask view, its (b, r, l) strides (the q pointer and zeros without a mask), and
    whether its stride along L is 1 (MASK_L1: vector loads)."""
    if keep is None:
        return q, (0, 0, 0), False
    return keep, tuple(keep.stride()), keep.stride(2) == 1 or keep.shape[2] == 1


def _bias_strides(bias):
    """(b, h, i) strides of the bias; its last dim must be contiguous (function.py sees to it)."""
    if bias is None:
        return (0, 0, 0)
    assert bias.stride(3) == 1 or bias.shape[3] == 1, "the bias's last dim must be contiguous"
    return tuple(bias.stride()[:3])


def forward(q, k_, v, bias, keep, g, out, o, lse, scale: float, precision: str, poly_rows: int,
            opts: EvoAttnOptions = DEFAULT_OPTIONS):
    """out (and, gated with ``o`` given, the ungated o) and lse [B, H, R, L] (base 2) of rows views
    q, k_, v, g, out, o [B, R, L, H, D]; bias [B, H, L, L] or None; keep: uint8 [B, R, L] or None."""
    B, R, L, H, D = q.shape
    cfg = config("fwd", q.dtype, D, precision, opts)
    rows = rows_for(cfg["ROWS"], R)
    G = triton.cdiv(R, rows)
    if not interpreting() and q.is_cuda and "BLOCK_M" not in opts.config_overrides.get("fwd", {}):
        while cfg["BLOCK_M"] > 64 and triton.cdiv(L, cfg["BLOCK_M"]) * H * G * B < opts.min_waves * sm_count(
                q.device.index or 0):
            cfg["BLOCK_M"] //= 2
    nblk = triton.cdiv(L, cfg["BLOCK_M"])
    mask, mstr, mask_l1 = _mask_args(keep, q)
    bstr = _bias_strides(bias)
    strides = [q.stride(2), k_.stride(2), v.stride(2), out.stride(2)] + ([g.stride(2)] if g is not None else [])
    k._fwd_kernel[(nblk * H * G * B,)](
        q, k_, v, bias if bias is not None else q, mask, g if g is not None else q, out,
        o if o is not None else out, lse,
        *strides4(q, q), *strides4(k_, q), *strides4(v, q), *strides4(g, q), *strides4(out, q), *bstr, *mstr,
        R, L, H, G, nblk, scale,
        HEAD_DIM=D, BLOCK_D=block_d(D), ROWS=rows, POLY_ROWS=min(poly_rows, rows),
        HAS_BIAS=bias is not None, HAS_MASK=keep is not None, MASK_L1=mask_l1, HAS_GATE=g is not None,
        STORE_O=o is not None,
        EVEN_N=L % cfg["BLOCK_N"] == 0, WIDE=wide(L, D, strides, bias), IN_PREC=precision,
        INTERP=interpreting(), **launch_options(cfg),
    )


def backward(dout, q, k_, v, bias, keep, g, o, lse, scale: float, precision: str, need,
             dq, dk, dv, doe, dg, opts: EvoAttnOptions = DEFAULT_OPTIONS):
    """The gradients of rows views: ``dout`` (the output's gradient), the forward's inputs, ``o``
    (ungated output), ``lse``; ``need`` = (dq, dk, dv, dbias) wanted; dq, dk, dv: rows views of
    fresh tensors of q's shape to write (None where not wanted); gated, ``doe`` and ``dg`` too
    (dO' = dout * sigmoid(g) and the gate's gradient; dg written even when not wanted). o, doe and
    dg must share strides (fresh tensors of q's shape). Returns dbias [B, H, L, L] in the bias
    dtype, or None."""
    B, R, L, H, D = q.shape
    need_dq, need_dk, need_dv, need_db = need
    device = q.device
    interp = interpreting()
    bd = block_d(D)
    strides = [q.stride(2), k_.stride(2), v.stride(2), dout.stride(2), o.stride(2)]
    if g is not None:
        strides.append(g.stride(2))
    is_wide = wide(L, D, strides, bias)
    mask, mstr, mask_l1 = _mask_args(keep, q)
    bstr = _bias_strides(bias)

    # delta (and dO' = dout * sigmoid(g), dg when gated)
    delta = new((B, H, R, L), torch.float32, device, opts)
    if g is None:
        doe = dout
    pcfg = config("prep", q.dtype, D, precision, opts)
    pcfg = dict(BLOCK_M=pcfg["BLOCK_M"], num_warps=pcfg["num_warps"])
    nblk = triton.cdiv(L, pcfg["BLOCK_M"])
    k._bwd_prep_kernel[(nblk * H * R * B,)](
        o, dout, g if g is not None else o, doe, dg if g is not None else o, delta,
        *strides4(o, q), *strides4(dout, q), *strides4(g, q), R, L, H, nblk,
        HEAD_DIM=D, BLOCK_D=bd, HAS_GATE=g is not None, WIDE=is_wide, INTERP=interp, **pcfg,
    )

    common = dict(HEAD_DIM=D, BLOCK_D=bd, HAS_BIAS=bias is not None, HAS_MASK=keep is not None, MASK_L1=mask_l1,
                  WIDE=is_wide,
                  IN_PREC=precision, INTERP=interp)
    bptr = bias if bias is not None else q
    if need_dk or need_dv:
        cfg = config("dkdv", q.dtype, D, precision, opts)
        rows = rows_for(cfg["ROWS"], R)
        G = triton.cdiv(R, rows)
        nblk = triton.cdiv(L, cfg["BLOCK_N"])
        # dk and dv: fresh tensors of one shape share strides; a scratch buffer for one not wanted
        dk = dk if dk is not None else torch.empty_like(dv)
        dv = dv if dv is not None else torch.empty_like(dk)
        k._bwd_dkdv_kernel[(nblk * H * G * B,)](
            q, k_, v, bptr, mask, doe, lse, delta, dk, dv,
            *strides4(q, q), *strides4(k_, q), *strides4(v, q), *strides4(doe, q), *strides4(dk, q), *bstr, *mstr,
            R, L, H, G, nblk, scale, ROWS=rows, **common, **launch_options(cfg),
        )
    dbias = None
    if need_dq or need_db:
        cfg = config("dq", q.dtype, D, precision, opts)
        rows = rows_for(cfg["ROWS"], R)
        G = triton.cdiv(R, rows)
        nblk = triton.cdiv(L, cfg["BLOCK_M"])
        atomic = G > 1
        db = None
        if need_db:
            db = (torch.zeros((B, H, L, L), dtype=torch.float32, device=device) if atomic
                  else new((B, H, L, L), bias.dtype, device, opts))
        k._bwd_dq_kernel[(nblk * H * G * B,)](
            q, k_, v, bptr, mask, doe, lse, delta, dq if dq is not None else q, db if db is not None else q,
            *strides4(q, q), *strides4(k_, q), *strides4(v, q), *strides4(doe, q), *strides4(dq, q), *bstr, *mstr,
            *(db.stride()[:3] if db is not None else (0, 0, 0)),
            R, L, H, G, nblk, scale, ROWS=rows, EVEN_N=L % cfg["BLOCK_N"] == 0,
            NEED_DQ=need_dq, NEED_DBIAS=need_db, DBIAS_ATOMIC=atomic, **common, **launch_options(cfg),
        )
        if db is not None:
            dbias = db.to(bias.dtype)
    return dbias
