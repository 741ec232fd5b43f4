"""Launching the MSA pair-weighted averaging kernels: configurations, grids, buffers, and the
forward and backward sequences of launches. Every choice that is not the caller's (precision,
p_mode, layout) comes from an :class:`~af3_kernels.msa_pwa.options.MSAPWAOptions` (``opts``).

The forward: the statistics kernel (and P, when stored), then one GEMM kernel: the Gluon bf16x6
forward (fp32 bf16x6 from a stored P on Hopper), the TMA forward (16-bit, stored P, large enough),
or the pointer-load forward. On Hopper the pointer-load and TMA forwards are launched while the
statistics kernel runs (programmatic dependent launch) and wait for it on the GPU.
The backward: an elementwise prep kernel (dY', dg, D), then the dv and dbias GEMMs
(backward_prep, backward_gemms: two steps, so that ops.py can run them as two custom ops with the
forward's fp32 y released between them).
"""
from __future__ import annotations

import functools
import math
import os

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from af3_kernels.msa_pwa import gluon_split
from af3_kernels.msa_pwa import kernels as k
from af3_kernels.msa_pwa.kernels import gdc_wait
from af3_kernels.msa_pwa.options import DEFAULT_OPTIONS, MSAPWAOptions


def interpreting() -> bool:
    """Whether Triton runs kernels in its numpy interpreter (TRITON_INTERPRET=1: the CPU tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def config(kernel: str, dtype: torch.dtype, precision: str, opts: MSAPWAOptions = DEFAULT_OPTIONS,
           gemm: bool = False, heads: int = 1) -> dict:
    """Block sizes (BLOCK_N is the width of the (s, c) tile) and launch options of one kernel.

    Defaults from the H100 sweep of tune.py (CUDA-graph timing; CHANGELOG.md, 2026-11-22): bf16 forward
    (128,384,8), (128,384,32), (128,768,32), (512,768,8); fp32 (128,384,8) forward and
    forward+backward, ieee, bf16x6, bf16x3, tf32x3 and tf32.
    ``opts.config_overrides[kernel]`` replaces the whole configuration."""
    if interpreting():  # numpy interpreter: the smallest blocks tl.dot accepts keep it fast
        cfg = dict(BLOCK_I=16, BLOCK_J=16, BLOCK_N=16, num_warps=4, num_stages=1)
    elif dtype == torch.float32 and precision == "ieee":  # FMA path
        cfg = {
            "fwd": dict(BLOCK_I=128, BLOCK_J=32, BLOCK_N=64, num_warps=8, num_stages=3),
            "dv": dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=2),
            "dbias": dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif dtype == torch.float32 and precision.startswith("bf16x"):  # fp32 tiles split into bf16 parts
        cfg = {
            "fwd": dict(BLOCK_I=64, BLOCK_J=32, BLOCK_N=64, num_warps=4, num_stages=3),
            "dv": (dict(BLOCK_I=32, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3) if precision == "bf16x6"
                   else dict(BLOCK_I=64, BLOCK_J=128, BLOCK_N=128, num_warps=8, num_stages=2)),
            "dbias": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif dtype == torch.float32:  # tf32x3 / tf32 on tensor cores: fp32 tiles take twice the memory
        cfg = {
            "fwd": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3),
            "dv": dict(BLOCK_I=64, BLOCK_J=128, BLOCK_N=64, num_warps=8, num_stages=3),
            "dbias": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=32, num_warps=4, num_stages=3),
        }[kernel]
    elif kernel == "fwd_tma":
        cfg = dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=128, num_warps=8, num_stages=3)
        if not gemm and heads == 1:
            # v read in place, one head per program (C of 32 bytes and more): with a cap of 128
            # registers ptxas schedules the kernel with 128 instead of 104 (both fit 2 programs per
            # SM). H100, same process, bf16 (128, 384, 32) 59.2 -> 56.4 us, (128, 768, 32) 143.0 ->
            # 138.8; caps of 136 and up drop to one program per SM (73 and 172 us). The gemm-copy
            # case lost with it ((512, 768, 8) 233.7 -> 237.4): no cap there.
            cfg["maxnreg"] = 128
    else:
        cfg = {
            "fwd": (dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3) if gemm or heads == 2
                    else dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=64, num_warps=4, num_stages=3)),
            "dv": dict(BLOCK_I=64, BLOCK_J=64, BLOCK_N=128, num_warps=4, num_stages=3),
            "dbias": dict(BLOCK_I=128, BLOCK_J=64, BLOCK_N=32, num_warps=8, num_stages=2),
        }[kernel]
    over = opts.config_overrides.get(kernel, {})
    if over and "maxnreg" not in over:  # an override is a whole configuration: no default register cap
        cfg.pop("maxnreg", None)
    return {**cfg, **over}


def group_heads(dtype: torch.dtype, precision: str, H: int, C: int, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> int:
    """Heads per forward program in the flat layout (see _fwd_kernel): with opts.group_heads, two
    where a head's channels are shorter than a 32-byte memory sector and H > 1, on tensor cores
    only (each head's dot also runs over the other head's columns: the FMA path would pay in full)."""
    if not opts.group_heads or fma(dtype, precision) or H == 1:
        return 1
    return 2 if C * torch.finfo(dtype).bits // 8 < 32 else 1


def elementwise_config(opts: MSAPWAOptions = DEFAULT_OPTIONS) -> dict:
    """The [rows, n] tile of the elementwise kernels (layout copy, backward prep)."""
    if interpreting():
        return dict(BLOCK_I=16, BLOCK_N=16, num_warps=4)
    return {**dict(BLOCK_I=32, BLOCK_N=128, num_warps=4), **opts.config_overrides.get("elementwise", {})}


#: CUDA's limit on the second and third grid dimensions
GRID_YZ_MAX = 65535


def grid(tiles0: int, tiles1: int, bh: int, heads_first: bool = True) -> tuple[tuple, dict]:
    """(launch grid, the HEADS_FIRST keyword it needs) for kernels._program (tiles0: the n tiles of
    the GEMM kernels, tiles1: the row tiles). Heads first, then rows, the n tiles last: the programs of
    all heads of one tile run side by side, so the C-channel pieces of v, g and out that share a
    memory sector (adjacent heads) are read and written together and merge in L2 instead of being
    fetched, or partly written, once per head far apart in time; and the row tiles of one n range
    follow each other while its v columns are still in L2. (H100, bf16 (512, 768, 8), pointer
    kernel: heads last 370 us, heads first 262; n before rows helped there but sent the v re-reads
    of C=32 shapes to DRAM: CHANGELOG.md, 2026-11-22.) Tile counts past CUDA's 65535 limit on the second and
    third grid dimensions fall back to heads last (tiles0 then takes the unlimited first one).
    ``heads_first=False`` (options.heads_first) asks for heads last."""
    heads_first = heads_first and max(tiles0, tiles1) <= GRID_YZ_MAX
    shape = (bh, tiles1, tiles0) if heads_first else (tiles0, tiles1, bh)
    return shape, dict(HEADS_FIRST=heads_first)


def new(shape, dtype, device, opts: MSAPWAOptions) -> torch.Tensor:
    """An uninitialised buffer the kernels overwrite (NaN-filled with opts.poison_outputs)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if opts.poison_outputs:
        t.fill_(float("nan"))
    return t


def pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


PRECISIONS = ("ieee", "tf32", "tf32x3", "bf16x6", "bf16x3")
LAYOUTS = ("auto", "flat", "gemm")


def prepare_mask(mask, B, R, device):
    """A uint8 view of the pair mask broadcast to [B, R, R] (stride 0 where broadcast: no copy of v)."""
    if mask is None:
        return None, (0, 0, 0)
    if mask.dtype != torch.bool:
        mask = mask != 0
    mask = torch.broadcast_to(mask.to(device), (B, R, R))
    return mask.view(torch.uint8), mask.stride()


def use_stored_p(p_mode: str, B, H, R, dtype, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    if p_mode == "auto":
        return B * H * R * R * torch.finfo(dtype).bits // 8 <= opts.stored_p_max_bytes
    if p_mode not in ("stored", "recompute"):
        raise ValueError(f"p_mode must be auto, stored or recompute, not {p_mode!r}")
    return p_mode == "stored"


def use_gemm_layout(layout: str, dtype, S, C, training=False, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """"auto": copy v to the gemm layout only where the flat tiles are made of short pieces
    (C channels of under 32 bytes) and there are many of them (S*C >= 4096), or, with
    opts.gemm_layout_for_backward, whenever a backward follows. H100 sweeps (tune.py): the copy
    paid off at bf16 forward (512, 768, 8) (231 vs 272 us with one head per program; head pairs in
    place come close, 236-238, but not level) and bf16 forward+backward (128, 384, 8) (135 vs 171
    us, at a memory cost); it cost time in the forward at C = 32 and fp32 (it adds a pass over v)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if layout == "auto":
        return C * torch.finfo(dtype).bits // 8 < 32 and (S * C >= 4096 or (training and opts.gemm_layout_for_backward))
    return layout == "gemm"


def tma_ok(v, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether the forward reads the stored P (and the gemm copy of v) through TMA descriptors:
    16-bit operands, P rows a multiple of 16 bytes (R % 8 == 0), a GEMM of at least
    opts.tma_forward_min_rn = R*S*C, a Hopper or newer GPU (or the interpreter, where every size
    qualifies so the CPU tests meet this path), and opts.use_tma_forward."""
    _, S, R, _, C = v.shape
    if not opts.use_tma_forward or v.dtype not in (torch.bfloat16, torch.float16) or R % 8:
        return False
    if interpreting():
        return True
    return R * S * C >= opts.tma_forward_min_rn and v.is_cuda and torch.cuda.get_device_capability(v.device)[0] >= 9


def gluon_split_ok(v, precision, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether the bf16x6 fp32 forward runs as gluon_split's Gluon kernel
    (opts.use_gluon_split_forward, a CUDA tensor on a Hopper GPU, Gluon with wgmma) rather than as
    _fwd_kernel's tl.dot."""
    return (opts.use_gluon_split_forward and v.dtype == torch.float32 and precision == "bf16x6" and v.is_cuda
            and not interpreting() and gluon_split.available(v.device)[0])


def pdl_ok(v, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether the forward is launched with programmatic dependent launch (opts.use_pdl, Hopper or
    newer, compiled kernels, a Triton with grid dependency control)."""
    return (opts.use_pdl and gdc_wait is not None and v.is_cuda and not interpreting()
            and torch.cuda.get_device_capability(v.device)[0] >= 9)


def fma(dtype, precision) -> bool:
    """Whether the dots run on the FMA units (exact fp32)."""
    return dtype == torch.float32 and precision == "ieee"


def softmax_stats(bias, mask_u8, mstrides, B, R, H, stored, opts, m2=None, l2=None, trigger=False):
    """(m2, l2) per (b, h, i), plus P [B,H,R,R] when ``stored``; with m2/l2 given, only P.
    ``trigger``: a forward launched with programmatic dependent launch follows (opts.use_pdl)."""
    compute = m2 is None
    if compute:
        m2 = new((B, H, R), torch.float32, bias.device, opts)
        l2 = new((B, H, R), torch.float32, bias.device, opts)
    p = new((B, H, R, R), bias.dtype, bias.device, opts) if stored else m2
    bh = pow2(H)
    # A whole row in one block while it is small (at most 8192 logits per program), else blocks of
    # 2048 logits; the interpreter's blocks stay tiny but still meet the single-block path.
    single = pow2(R) * bh <= (64 if interpreting() else 8192)
    if single:
        block_j = max(16, pow2(R))
    else:
        block_j = 16 if interpreting() else max(16, min(pow2(R), 2048 // bh))
    k._stats_kernel[(B * R,)](
        bias, mask_u8 if mask_u8 is not None else bias, m2, l2, p, R, H, *mstrides,
        HAS_MASK=mask_u8 is not None, COMPUTE_STATS=compute, WRITE_P=stored, INTERP=interpreting(),
        SINGLE=single, BLOCK_J=block_j, BLOCK_H=bh, TRIGGER_DEPENDENTS=trigger,
        num_warps=8 if block_j * bh >= 4096 else 4,
    )
    return m2, l2, (p if stored else None)


def to_gemm_layout(x, opts, nmajor=False):
    """x [B,S,R,H,C] copied to [B,H,R,S*C], the layout whose GEMM tiles load contiguously
    (``nmajor``: to [B,H,S*C,R])."""
    B, S, R, H, C = x.shape
    xt = new((B, H, S * C, R) if nmajor else (B, H, R, S * C), x.dtype, x.device, opts)
    cfg = elementwise_config(opts)
    shape, order = grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H, opts.heads_first)
    k._to_gemm_layout_kernel[shape](x, xt, S, R, H, C, NMAJOR=nmajor, **order, INTERP=interpreting(), **cfg)
    return xt


def fwd_launch_config(kernel, v, precision, gemm, opts):
    """config of a forward kernel with its HEADS (heads per program) settled: an override's
    number, else group_heads's; always 1 with the gemm copy of v, which is per head."""
    heads = 1 if gemm else opts.config_overrides.get(kernel, {}).get(
        "HEADS", group_heads(v.dtype, precision, v.shape[3], v.shape[4], opts))
    return {**config(kernel, v.dtype, precision, opts, gemm, heads), "HEADS": heads}


def forward(v, bias, g, mask_u8, mstrides, precision, stored, gemm, keep_y, opts):
    """out, the softmax statistics, the v operand the kernels read (v itself or its gemm copy),
    with ``keep_y`` the ungated fp32 y the backward starts from, and P when ``stored``."""
    B, S, R, H, C = v.shape
    # the Gluon bf16x6 forward where it applies; it is launched the ordinary way, after the
    # statistics kernel has finished
    gluon = stored and not gemm and gluon_split_ok(v, precision, opts)
    pdl = pdl_ok(v, opts) and not gluon
    m2, l2, p = softmax_stats(bias, mask_u8, mstrides, B, R, H, stored, opts, trigger=pdl and not gemm)
    vop = to_gemm_layout(v, opts) if gemm else v
    # the forward kernel's launch may overlap the kernel before it, and waits for it on the GPU
    early = dict(WAIT_PRIOR=True, launch_pdl=True) if pdl else {}
    out = new((B, S, R, H * C), v.dtype, v.device, opts)
    y = new(v.shape, torch.float32, v.device, opts) if keep_y else None
    if stored and tma_ok(v, opts):
        cfg = fwd_launch_config("fwd_tma", v, precision, gemm, opts)
        bi, bj, bn, hp = cfg["BLOCK_I"], cfg["BLOCK_J"], cfg["BLOCK_N"], cfg["HEADS"]
        p_desc = TensorDescriptor(p, [B * H * R, R], [R, 1], [bi, bj])
        v_tma = gemm and (S * C) % 8 == 0 and R % bj == 0
        v_desc = TensorDescriptor(vop, [B * H * R, S * C], [S * C, 1], [bj, bn]) if v_tma else p_desc
        shape, order = grid(triton.cdiv(S * hp * C, bn), triton.cdiv(R, bi), B * triton.cdiv(H, hp), opts.heads_first)
        k._fwd_tma_kernel[shape](p_desc, v_desc, vop, g, out, y if keep_y else out, S, R, H, C,
                                 V_GEMM=gemm, V_TMA=v_tma, STORE_Y=keep_y, **order, INTERP=interpreting(), **cfg,
                                 **early)
        return out, m2, l2, vop, y, p
    if gluon:
        gluon_split.forward(p, v, g, out, y, functools.partial(grid, heads_first=opts.heads_first),
                            opts.config_overrides.get("gluon_split", {}))
        return out, m2, l2, vop, y, p
    cfg = fwd_launch_config("fwd", v, precision, gemm, opts)
    hp = cfg["HEADS"]
    shape, order = grid(triton.cdiv(S * hp * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_I"]),
                        B * triton.cdiv(H, hp), opts.heads_first)
    k._fwd_kernel[shape](
        vop, g, out, y if keep_y else out, bias, mask_u8 if mask_u8 is not None else bias, m2, l2,
        p if stored else m2, S, R, *mstrides, H, C,
        HAS_MASK=mask_u8 is not None, P_STORED=stored, V_GEMM=gemm, STORE_Y=keep_y, IN_PREC=precision,
        **order, INTERP=interpreting(), **cfg, **early,
    )
    return out, m2, l2, vop, y, p


def use_gemm_layout_in_backward(layout: str, dtype, precision: str, C: int, gemm: bool, training: bool,
                                opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether a backward after a forward that read v in place reads dY' and v from gemm-layout copies
    of its own (opts.gemm_layout_in_backward): with layout "auto", a backward to follow, channel
    pieces of under 32 bytes (the flat GEMM tiles are made of half sectors there) and tensor-core
    dots (the FMA path's dbias has n-major copies of its own). The prep kernel writes dY' in the gemm
    layout, v is copied after y is released, and dbias runs before dv so the copy is gone before dv
    is allocated: the backward's peak stays that of the flat one, and nothing extra is kept between
    forward and backward (opts.gemm_layout_for_backward keeps the forward's copy of v instead)."""
    return (opts.gemm_layout_in_backward and layout == "auto" and training and not gemm
            and not fma(dtype, precision) and C * torch.finfo(dtype).bits // 8 < 32)


def dbias_nmajor(need_bias: bool, dtype, precision: str, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether dbias reads n-major copies of dY' and v (opts.fma_dbias_nmajor, the FMA path)."""
    return need_bias and opts.fma_dbias_nmajor and fma(dtype, precision)


def compensated_dbias(dtype, precision: str, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> bool:
    """Whether dbias sums its n-blocks with compensation (opts.compensated_dbias; fp32 at the
    precisions held to exact fp32's bar, ieee and bf16x6)."""
    return opts.compensated_dbias and dtype == torch.float32 and precision in ("ieee", "bf16x6")


def backward_prep(dout, y, g, dy_gemm: bool, nmajor: bool, opts: MSAPWAOptions):
    """The backward's elementwise kernel: (dY' in the gemm layout when ``dy_gemm``, else flat; dg;
    D, zeroed then accumulated atomically; with ``nmajor`` an n-major copy of dY', else None)."""
    B, S, R, H, C = g.shape
    dout = dout.contiguous()
    dy = new((B, H, R, S * C) if dy_gemm else g.shape, g.dtype, g.device, opts)  # dout * sigmoid(g): a GEMM operand
    dg = new(g.shape, g.dtype, g.device, opts)
    d = torch.zeros((B, H, R), dtype=torch.float32, device=g.device)  # accumulated atomically
    dyn = new((B, H, S * C, R), g.dtype, g.device, opts) if nmajor else dy
    ecfg = elementwise_config(opts)
    shape, order = grid(triton.cdiv(S * C, ecfg["BLOCK_N"]), triton.cdiv(R, ecfg["BLOCK_I"]), B * H, opts.heads_first)
    k._bwd_prep_kernel[shape](dout, y, g, dy, dg, d, S, R, H, C, dy_gemm, dyn, nmajor, **order,
                              INTERP=interpreting(), **ecfg)
    return dy, dg, d, (dyn if nmajor else None)


def backward_gemms(dy, dyn, d, v, vop, bias, mask_u8, mstrides, m2, l2, p, precision, stored, gemm, dy_gemm, need,
                   opts: MSAPWAOptions):
    """dv and dbias (None where ``need`` = (need_v, need_bias) says so) from the prep kernel's dY'
    (``dy``, gemm layout when ``dy_gemm``; ``dyn`` its n-major copy or None) and D; ``p`` the
    stored P, rebuilt here when None. With ``dy_gemm`` after a flat forward (``gemm`` False; see
    use_gemm_layout_in_backward) v is copied to the gemm layout here and dbias runs first."""
    B, R, _, H = bias.shape
    S, C = v.shape[1], v.shape[4]
    need_v, need_bias = need
    if stored and (need_v or need_bias) and p is None:
        _, _, p = softmax_stats(bias, mask_u8, mstrides, B, R, H, True, opts, m2, l2)
    common = dict(HAS_MASK=mask_u8 is not None, P_STORED=stored, IN_PREC=precision, INTERP=interpreting())
    mk = mask_u8 if mask_u8 is not None else bias
    pp = p if p is not None else m2
    dtype = dy.dtype

    def run_dv():
        dv = new(v.shape, dtype, v.device, opts)
        cfg = config("dv", dtype, precision, opts)
        shape, order = grid(triton.cdiv(S * C, cfg["BLOCK_N"]), triton.cdiv(R, cfg["BLOCK_J"]), B * H, opts.heads_first)
        k._bwd_dv_kernel[shape](dy, dv, bias, mk, m2, l2, pp, S, R, *mstrides, H, C, DY_GEMM=dy_gemm, **order,
                                **common, **cfg)
        return dv

    def run_dbias(dy_op, v_op, dbias_dy_gemm, v_gemm, nmajor):
        dbias = new(bias.shape, bias.dtype, bias.device, opts)
        cfg = config("dbias", dtype, precision, opts)
        shape, order = grid(triton.cdiv(R, cfg["BLOCK_J"]), triton.cdiv(R, cfg["BLOCK_I"]), B * H, opts.heads_first)
        k._bwd_dbias_kernel[shape](dy_op, v_op, d, dbias, bias, mk, m2, l2, pp, S, R, *mstrides, H, C,
                                   DY_GEMM=dbias_dy_gemm, V_GEMM=v_gemm, NMAJOR=nmajor, **order, **common, **cfg,
                                   COMPENSATED=compensated_dbias(dtype, precision, opts))
        return dbias

    dv = dbias = None
    if dy_gemm and not gemm:  # the backward's own gemm copy of v, released before dv is allocated
        if need_bias:
            dbias = run_dbias(dy, to_gemm_layout(v, opts), True, True, False)
        if need_v:
            dv = run_dv()
        return dv, dbias
    if need_v:
        dv = run_dv()
    if need_bias:
        if dyn is not None:
            dbias = run_dbias(dyn, to_gemm_layout(v, opts, nmajor=True), gemm, gemm, True)
        else:
            dbias = run_dbias(dy, vop, gemm, gemm, False)
    return dv, dbias


def backward(dout, v, vop, bias, g, y_owner, mask_u8, mstrides, m2, l2, precision, stored, gemm, need, opts, p=None,
             dy_gemm=None):
    """dv, dbias, dg; ``vop`` is v in the layout the forward read (``gemm``: [B,H,R,S*C]);
    ``y_owner`` a list holding the only reference to the forward's fp32 y = sum_j P v (taken here
    and released after the first kernel); ``p`` the forward's stored P, rebuilt here when None;
    ``dy_gemm``: dY' in the gemm layout (default: as the forward's ``gemm``; True after a flat
    forward: see use_gemm_layout_in_backward)."""
    y = y_owner.pop()
    dy_gemm = gemm if dy_gemm is None else dy_gemm
    dy, dg, d, dyn = backward_prep(dout, y, g, dy_gemm, dbias_nmajor(need[1], g.dtype, precision, opts), opts)
    del y  # the last reference: y's memory returns before dv, dbias and P are allocated
    dv, dbias = backward_gemms(dy, dyn, d, v, vop, bias, mask_u8, mstrides, m2, l2, p, precision, stored, gemm,
                               dy_gemm, need, opts)
    return dv, dbias, dg
