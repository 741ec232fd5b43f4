"""Where does the bf16 forward's time go? The GEMM at the heart of the MSA kernel, timed alone.

    python plugins/af3_kernels/bench/diag_fwd_gemm.py [--out diag.jsonl] [--budget-s 240]

For each bf16 target shape (B=1, H=8) the forward is out = sigmoid(g) * (P @ V) per head, with
P [H,R,R] the softmax and V [R, S*C] per head. This times, from CUDA graphs with L2 flushed:
- cublas: torch.bmm(P, V) on contiguous operands (V already in the [H,R,S*C] "gemm" layout);
- triton-ptr / triton-tma: a plain Triton batched GEMM on the same contiguous operands, pointer
  loads or TMA tensor descriptors, over a few block sizes;
- fused-tma: the whole gated forward from a stored P, reading v in place ([B,S,R,H,C]) through a
  3-D TMA box [S-block, j-block, C] per head, permuted in registers to the GEMM's [j, (s,c)];
- current: the shipped msa_pwa forward (statistics + GEMM) and its two kernels alone.
So the kernel's gap to the floor can be split into "GEMM of this shape in Triton" and "the rest".
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from af3_kernels import floors, timing
from af3_kernels.ops import msa_pwa
from af3_kernels.reference import msa_pwa_reference
from bench_msa_pwa import B, H, inputs

SHAPES = [(128, 384, 8), (128, 384, 32), (128, 768, 32), (512, 768, 8)]
GEMM_CONFIGS = [(128, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3), (64, 128, 64, 4, 4),
                (128, 64, 64, 4, 4), (64, 256, 64, 8, 3), (128, 128, 128, 8, 2), (64, 64, 64, 4, 4)]
# fused-tma: (BLOCK_I, BLOCK_J, BLOCK_S, warps, stages); BLOCK_S * C is the n-width of a tile
FUSED_CONFIGS = [(128, 64, 16, 8, 3), (128, 64, 8, 4, 3), (64, 64, 16, 4, 3), (128, 64, 32, 8, 3),
                 (64, 64, 8, 4, 4), (128, 128, 16, 8, 2), (64, 128, 16, 4, 3), (128, 64, 4, 4, 4)]


@triton.jit
def bmm_ptr_kernel(a_ptr, b_ptr, c_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_n, pid_m, z = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    a = a_ptr + z * M * K + offs_m[:, None] * K + offs_k[None, :]
    b = b_ptr + z * K * N + offs_k[:, None] * N + offs_n[None, :]
    acc = tl.zeros([BM, BN], tl.float32)
    for _ in range(0, K, BK):  # the diagnostic shapes divide evenly: no masks
        acc = tl.dot(tl.load(a), tl.load(b), acc)
        a += BK
        b += BK * N
    tl.store(c_ptr + z * M * N + offs_m[:, None] * N + offs_n[None, :], acc.to(tl.bfloat16))


@triton.jit
def bmm_tma_kernel(a_desc, b_desc, c_desc, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_n, pid_m, z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    acc = tl.zeros([BM, BN], tl.float32)
    for k in range(0, K, BK):
        acc = tl.dot(a_desc.load([z * M + pid_m * BM, k]), b_desc.load([z * K + k, pid_n * BN]), acc)
    c_desc.store([z * M + pid_m * BM, pid_n * BN], acc.to(tl.bfloat16))


@triton.jit
def fused_tma_kernel(p_desc, v_desc, g_ptr, out_ptr, S, R, H: tl.constexpr, C: tl.constexpr,
                     BI: tl.constexpr, BJ: tl.constexpr, BS: tl.constexpr):
    pid_s, pid_i, bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = bh // H
    h = bh % H
    acc = tl.zeros([BI, BS * C], tl.float32)
    for j0 in range(0, R, BJ):
        p = p_desc.load([bh * R + pid_i * BI, j0])                    # [BI, BJ]
        vt = v_desc.load([b * S + pid_s * BS, j0, h * C])             # [BS, BJ, C]
        vt = tl.reshape(tl.permute(vt, (1, 0, 2)), (BJ, BS * C))
        acc = tl.dot(p, vt, acc)
    offs_i = pid_i * BI + tl.arange(0, BI)
    offs_n = pid_s * BS * C + tl.arange(0, BS * C)
    io = (b.to(tl.int64) * S * R * (H * C) + offs_i[:, None] * (H * C) + h * C
          + (offs_n // C).to(tl.int64)[None, :] * (R * H * C) + (offs_n % C)[None, :])
    msk = (offs_i < R)[:, None] & (offs_n < S * C)[None, :]
    gate = tl.sigmoid(tl.load(g_ptr + io, mask=msk, other=0.0).to(tl.float32))
    tl.store(out_ptr + io, (acc * gate).to(tl.bfloat16), mask=msk)


def graph_us(call, reps, flusher):
    return timing.median(timing.time_cuda_graph(call, reps, flush=flusher)) * 1e3


def code_stats(compiled) -> dict:
    """What the compiler made of a launch: matrix instructions, copy kinds, registers, spills."""
    ptx = compiled.asm.get("ptx", "")
    return {"wgmma": ptx.count("wgmma.mma_async"), "mma_sync": ptx.count("mma.sync"),
            "tma_load": ptx.count("cp.async.bulk.tensor"), "cp_async": ptx.count("cp.async.cg") + ptx.count("cp.async.ca"),
            "regs": getattr(compiled, "n_regs", None), "spills": getattr(compiled, "n_spills", None)}


def cached_stats(jit_fn) -> list[dict]:
    """code_stats of every variant of ``jit_fn`` compiled so far in this process."""
    found = []
    try:
        for caches in jit_fn.device_caches.values():
            for k in caches[0].values():
                if hasattr(k, "asm"):
                    found.append(code_stats(k))
    except Exception as exc:  # the cache's shape is Triton-internal
        found.append({"error": f"{type(exc).__name__}: {exc}"})
    return found


def epilogue(args, flusher, emit):
    """The shipped _fwd_tma_kernel (P and v's gemm copy through TMA) with its gate/output epilogue
    on the caller's [B,S,R,H,C] layout, against the same kernel launched on a contiguous
    [B*H, 1, R, 1, S*C] view (g and out in the gemm layout): the difference is the cost of the
    scattered C-channel epilogue. Both launch orders."""
    for S, R, C in SHAPES:
        v, bias, g, _ = inputs("bf16", S, R, C)
        shape = dict(S=S, R=R, C=C)
        _, _, p = msa_pwa._softmax_stats(bias, None, (0, 0, 0), B, R, H, True)
        vg = msa_pwa._to_gemm_layout(v)
        gg = msa_pwa._to_gemm_layout(g)
        out = torch.empty(B, S, R, H * C, device="cuda", dtype=torch.bfloat16)
        cfg = msa_pwa._config("fwd_tma", torch.bfloat16, "ieee", True)
        bi, bj, bn = cfg["BLOCK_I"], cfg["BLOCK_J"], cfg["BLOCK_N"]
        pd = TensorDescriptor(p, [B * H * R, R], [R, 1], [bi, bj])
        vd = TensorDescriptor(vg, [B * H * R, S * C], [S * C, 1], [bj, bn])
        for hf in (True, False):
            for view in ("flat", "contiguous"):
                if view == "flat":
                    dims, gin = (S, R, H, C), g
                else:
                    dims, gin = (1, R, 1, S * C), gg
                bh = B * H
                msa_pwa.HEADS_FIRST = hf
                grid, order = msa_pwa._grid(triton.cdiv(S * C, bn), triton.cdiv(R, bi), bh)
                call = lambda: msa_pwa._fwd_tma_kernel[grid](
                    pd, vd, vg, gin, out, out, *dims, V_GEMM=True, V_TMA=True, STORE_Y=False,
                    **order, INTERP=False, **cfg)
                if args.once:  # for ncu: two plain launches of each variant at the last shape only
                    if (S, R, C) == SHAPES[-1] and hf:
                        call(), call()
                        torch.cuda.synchronize()
                    continue
                emit(**shape, what=f"epilogue-{view}", heads_first=hf, us=graph_us(call, args.reps, flusher))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=240)
    ap.add_argument("--part", default="gemm", choices=["gemm", "epilogue"])
    ap.add_argument("--once", action="store_true", help="epilogue part: plain launches for a profiler")
    args = ap.parse_args()
    end = time.time() + args.budget_s
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    flusher = timing.L2Flusher("cuda")

    def emit(**rec):
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"gpu": torch.cuda.get_device_name(0), **rec}) + "\n")

    if args.part == "epilogue":
        return epilogue(args, flusher, emit)
    for S, R, C in SHAPES:
        if time.time() > end:
            break
        v, bias, g, _ = inputs("bf16", S, R, C)
        shape = dict(S=S, R=R, C=C, floor_us=floors.msa_pwa_floor("fwd", B, S, R, H, C, "bf16").seconds * 1e6)
        m2, l2, p = msa_pwa._softmax_stats(bias, None, (0, 0, 0), B, R, H, True)
        P = p.view(B * H, R, R)
        Vg = msa_pwa._to_gemm_layout(v).view(B * H, R, S * C)
        Y = torch.empty(B * H, R, S * C, device="cuda", dtype=torch.bfloat16)
        emit(**shape, what="cublas", us=graph_us(lambda: torch.bmm(P, Vg, out=Y), args.reps, flusher))
        ref = torch.bmm(P.float(), Vg.float())
        Z, M, N, K = B * H, R, S * C, R
        for BM, BN, BK, w, st in GEMM_CONFIGS:
            if time.time() > end:
                break
            grid = (N // BN, M // BM, Z)
            for kind in ("ptr", "tma"):
                if kind == "ptr":
                    call = lambda: bmm_ptr_kernel[grid](P, Vg, Y, M, N, K, BM, BN, BK, num_warps=w, num_stages=st)
                else:
                    ad = TensorDescriptor.from_tensor(P.view(Z * M, K), [BM, BK])
                    bd = TensorDescriptor.from_tensor(Vg.view(Z * K, N), [BK, BN])
                    cd = TensorDescriptor.from_tensor(Y.view(Z * M, N), [BM, BN])
                    call = lambda: bmm_tma_kernel[grid](ad, bd, cd, M, N, K, BM, BN, BK, num_warps=w, num_stages=st)
                try:
                    stats = code_stats(call())
                    us = graph_us(call, args.reps, flusher)
                    err = ((Y.float() - ref).abs().max() / ref.abs().max()).item()
                except Exception as exc:
                    emit(**shape, what=f"triton-{kind}", cfg=[BM, BN, BK, w, st], error=f"{type(exc).__name__}: {str(exc)[:200]}")
                    continue
                emit(**shape, what=f"triton-{kind}", cfg=[BM, BN, BK, w, st], us=us, rel_err=err, **stats)
        with torch.no_grad():
            want = msa_pwa_reference(v.float(), bias.float(), g.float())
        out = torch.empty(B, S, R, H * C, device="cuda", dtype=torch.bfloat16)
        for BI, BJ, BS, w, st in FUSED_CONFIGS:
            if time.time() > end:
                break
            pd = TensorDescriptor.from_tensor(P.reshape(B * H * R, R), [BI, BJ])
            vd = TensorDescriptor.from_tensor(v.view(B * S, R, H * C), [BS, BJ, C])
            grid = (triton.cdiv(S, BS), triton.cdiv(R, BI), B * H)
            call = lambda: fused_tma_kernel[grid](pd, vd, g, out, S, R, H, C, BI, BJ, BS, num_warps=w, num_stages=st)
            try:
                stats = code_stats(call())
                us = graph_us(call, args.reps, flusher)
                err = ((out.float() - want).abs().max() / want.abs().max()).item()
            except Exception as exc:
                emit(**shape, what="fused-tma", cfg=[BI, BJ, BS, w, st], error=f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            emit(**shape, what="fused-tma", cfg=[BI, BJ, BS, w, st], us=us, rel_err=err, **stats)
        with torch.no_grad():
            emit(**shape, what="current-total",
                 us=graph_us(lambda: msa_pwa.msa_pair_weighted_averaging(v, bias, g), args.reps, flusher))
            emit(**shape, what="current-code", fwd=cached_stats(msa_pwa._fwd_kernel))
            emit(**shape, what="current-stats",
                 us=graph_us(lambda: msa_pwa._softmax_stats(bias, None, (0, 0, 0), B, R, H, True), args.reps, flusher))
            emit(**shape, what="eager",
                 us=graph_us(lambda: msa_pwa_reference(v, bias, g), args.reps, flusher))
        del P, Vg, Y, p, ref, want, out


if __name__ == "__main__":
    main()
