"""Block-size sweeps and per-kernel time breakdown of the fused MSA pair-weighted averaging, to choose
its defaults on a GPU. Timed from CUDA graphs (GPU time only: at these sizes Python launch costs
would hide the kernels), L2 flushed before each replay, median of --reps.

    python -m af3_kernels.msa_pwa.tune [--parts fwd,fwdbwd,elementwise,profile] [--out tune.jsonl]
        [--reps 50] [--budget-s 300]

Parts (B=1, H=8; the target shapes of FWD_SHAPES and FWDBWD_SHAPES):
  fwd          per forward shape and operand layout, the forward kernel that runs there (pointer-load,
               TMA or the Gluon bf16x6 one) at each candidate configuration, beside its default and eager
  fwdbwd       the backward's dv and dbias kernels at each candidate, each with the other at its default
  fp32         fp32 on the tensor cores (bf16x6, bf16x3, tf32x3, tf32): every kernel's candidates, then
               all precisions side by side with their max abs error against float64
  gluon-split  the Gluon bf16x6 forward's configurations (Hopper)
  options      each on/off choice of MSAPWAOptions flipped from its default, at every target shape
  elementwise  the tile of the layout copy and the backward's prep kernel
  profile      each kernel's own GPU time at the defaults (torch.profiler), and bf16 fwd+bwd with
               gemm_layout_in_backward
Configurations and options reach the kernels through an MSAPWAOptions object: nothing global is
changed. Every measurement is also one JSON line in --out. The implementations side by side (eager,
torch.compile, Ligo's kernel) are ``af3 bench --plugin kernels``'s job, not this script's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from af3_kernels import timing
from af3_kernels.floors import H100_SXM, rates_for_gpu
from af3_kernels.msa_pwa import gluon_split, launch
from af3_kernels.msa_pwa.case import msa_pwa_floor
from af3_kernels.msa_pwa.function import msa_pair_weighted_averaging
from af3_kernels.msa_pwa.options import DEFAULT_OPTIONS, MSAPWAOptions
from af3_kernels.msa_pwa.reference import msa_pwa_reference

B, H = 1, 8
FWD_SHAPES = [("bf16", 128, 384, 8), ("bf16", 128, 384, 32), ("bf16", 128, 768, 32), ("bf16", 512, 768, 8),
              ("fp32", 128, 384, 8)]
FWDBWD_SHAPES = [("fp32", 128, 384, 8), ("bf16", 128, 384, 8)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def cfg(i, j, n, w, s):
    return dict(BLOCK_I=i, BLOCK_J=j, BLOCK_N=n, num_warps=w, num_stages=s)


#: (kernel, unit) -> candidate configurations; unit: "tensor" (16-bit, tf32), "fma" (fp32 ieee),
#: "split" (fp32 bf16x6 / bf16x3)
CANDIDATES = {
    ("fwd", "tensor"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 64, 4, 3), cfg(64, 64, 128, 4, 3),
                        cfg(64, 64, 64, 4, 3), cfg(128, 128, 64, 8, 3), cfg(128, 64, 256, 8, 3),
                        cfg(64, 64, 256, 8, 3), cfg(128, 32, 128, 8, 4), cfg(64, 128, 128, 4, 2),
                        cfg(128, 128, 128, 8, 2)],
    ("fwd", "fma"): [cfg(128, 32, 64, 8, 3), cfg(128, 16, 64, 8, 3), cfg(64, 16, 64, 4, 3), cfg(64, 32, 64, 4, 2),
                     cfg(32, 32, 64, 4, 2), cfg(64, 16, 128, 8, 3), cfg(64, 32, 128, 8, 2), cfg(128, 16, 128, 8, 3),
                     cfg(256, 16, 64, 8, 3), cfg(128, 32, 128, 8, 2)],
    ("fwd", "split"): [cfg(64, 32, 64, 4, 3), cfg(64, 64, 64, 4, 3), cfg(128, 64, 64, 8, 3), cfg(128, 32, 64, 8, 3),
                       cfg(64, 64, 128, 4, 2), cfg(64, 32, 128, 4, 3), cfg(64, 16, 64, 4, 4), cfg(64, 32, 32, 4, 3)],
    ("fwd_tma", "tensor"): [cfg(128, 64, 128, 8, 3), cfg(128, 64, 128, 4, 3), cfg(128, 64, 256, 8, 3),
                            cfg(128, 64, 64, 4, 4), cfg(64, 64, 128, 4, 4), cfg(128, 128, 128, 8, 2),
                            cfg(64, 64, 256, 8, 3), cfg(256, 64, 128, 8, 2), cfg(128, 32, 128, 4, 4)],
    ("dv", "tensor"): [cfg(64, 64, 128, 4, 3), cfg(64, 64, 64, 4, 3), cfg(32, 64, 128, 4, 3), cfg(64, 128, 64, 8, 3)],
    ("dv", "fma"): [cfg(32, 64, 64, 4, 2), cfg(16, 64, 64, 4, 3), cfg(32, 64, 128, 8, 2), cfg(32, 128, 64, 8, 2),
                    cfg(16, 32, 64, 2, 3), cfg(32, 64, 32, 4, 3)],
    ("dv", "split"): [cfg(32, 64, 64, 4, 3), cfg(64, 128, 64, 8, 3), cfg(64, 64, 64, 4, 3), cfg(64, 64, 128, 4, 3),
                      cfg(64, 128, 128, 8, 2), cfg(128, 64, 64, 8, 3)],
    ("dbias", "tensor"): [cfg(128, 64, 32, 8, 2), cfg(64, 64, 32, 4, 3), cfg(64, 64, 64, 4, 3), cfg(128, 128, 32, 8, 3)],
    ("dbias", "fma"): [cfg(32, 64, 32, 4, 3), cfg(64, 64, 32, 4, 2), cfg(64, 64, 16, 4, 3), cfg(64, 128, 16, 8, 3),
                       cfg(128, 64, 16, 8, 3), cfg(64, 32, 32, 4, 2)],
    ("dbias", "split"): [cfg(64, 64, 32, 4, 3), cfg(128, 64, 32, 8, 2), cfg(64, 64, 64, 4, 3), cfg(128, 128, 32, 8, 3),
                         cfg(64, 128, 32, 8, 3), cfg(32, 64, 32, 4, 3)],
    ("elementwise", None): [dict(BLOCK_I=32, BLOCK_N=128, num_warps=4), dict(BLOCK_I=16, BLOCK_N=256, num_warps=4),
                            dict(BLOCK_I=64, BLOCK_N=64, num_warps=4), dict(BLOCK_I=8, BLOCK_N=512, num_warps=4),
                            dict(BLOCK_I=64, BLOCK_N=128, num_warps=8)],
}

#: the Gluon bf16x6 forward: changes to gluon_split.DEFAULT_CONFIG (maxnreg=None: no register cap;
#: a 64x128 tile under the default cap of 80 does not compile: its wgmma alone needs 64 accumulators)
GLUON_SPLIT_CANDIDATES = [
    dict(), dict(STAGES=3), dict(maxnreg=None), dict(STAGES=3, maxnreg=None), dict(BLOCK_K=32, STAGES=2),
    dict(BLOCK_I=64, BLOCK_N=128, num_warps=4, STAGES=3, maxnreg=None),
    dict(BLOCK_I=64, BLOCK_N=128, num_warps=4, maxnreg=None), dict(BLOCK_I=64, num_warps=4, maxnreg=None, STAGES=3),
    dict(maxnreg=72),
]

#: the on/off choices the options part flips (poison_outputs is for tests)
FLAGS = [f.name for f in dataclasses.fields(MSAPWAOptions) if f.type in ("bool", bool) and f.name != "poison_outputs"]


def inputs(dtype, S, R, C, grad=False, seed=0):
    gen = torch.Generator("cuda").manual_seed(seed)
    kw = dict(device="cuda", dtype=DTYPES[dtype], generator=gen)
    v = torch.randn((B, S, R, H, C), **kw).requires_grad_(grad)
    g = torch.randn((B, S, R, H, C), **kw).requires_grad_(grad)
    b = torch.randn((B, R, R, H), **kw).requires_grad_(grad)
    dout = torch.randn((B, S, R, H * C), **kw) if grad else None
    return v, b, g, dout


def fused(layout="auto", precision="ieee", options: MSAPWAOptions = DEFAULT_OPTIONS):
    def fn(v, b, g):
        return msa_pair_weighted_averaging(v, b, g, precision=precision, layout=layout, options=options)
    return fn


def caller(fn, v, b, g, dout, direction):
    if direction == "fwd":
        def call():
            with torch.no_grad():
                return fn(v, b, g)
    else:
        def call():
            return torch.autograd.grad(fn(v, b, g), (v, b, g), dout)
    return call


def unit_of(dtype: str, precision: str) -> str:
    if dtype == "fp32" and precision == "ieee":
        return "fma"
    if dtype == "fp32" and precision.startswith("bf16x"):
        return "split"
    return "tensor"


def forward_kernel(v, precision: str, layout: str, training: bool, opts: MSAPWAOptions = DEFAULT_OPTIONS) -> str:
    """Which forward GEMM kernel runs for these inputs: "fwd_tma", "gluon_split" or "fwd" (as launch.forward)."""
    Bv, S, R, Hv, C = v.shape
    prec = precision if v.dtype == torch.float32 else "ieee"
    stored = launch.use_stored_p("auto", Bv, Hv, R, v.dtype, opts)
    gemm = launch.use_gemm_layout(layout, v.dtype, S, C, training, opts)
    if stored and launch.tma_ok(v, opts):
        return "fwd_tma"
    if stored and not gemm and launch.gluon_split_ok(v, prec, opts):
        return "gluon_split"
    return "fwd"


def max_abs_errors(fn, v, b, g, dout):
    """Max abs error against float64 of the output and, with ``dout``, the three gradients."""
    def run(f, ins):
        ins = [x.detach().requires_grad_(dout is not None) for x in ins]
        out = f(*ins)
        if dout is None:
            return [out.detach()]
        return [out.detach()] + list(torch.autograd.grad(out, ins, dout.to(out.dtype)))

    ref = run(msa_pwa_reference, [x.double() for x in (v, b, g)])
    got = run(fn, (v, b, g))
    return {k: (x.double() - r).abs().max().item() for k, x, r in zip(("out", "dv", "dbias", "dg"), got, ref)}


class Sweep:
    def __init__(self, args):
        self.args = args
        self.flusher = timing.L2Flusher("cuda")
        self.end = time.time() + args.budget_s
        self.rates = rates_for_gpu(torch.cuda.get_device_name(0)) or H100_SXM

    def emit(self, **record):
        record = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, **record}
        if self.args.out:
            with open(self.args.out, "a") as f:
                f.write(json.dumps(record) + "\n")

    def us(self, call) -> float:
        return timing.median(timing.time_cuda_graph(call, self.args.reps, flush=self.flusher)) * 1e3

    def base_row(self, direction, dtype, S, R, C, precision, v, b, g, dout) -> dict:
        """The row every comparison starts from: the shape's floor and eager PyTorch, in us."""
        floor = msa_pwa_floor(direction, B, S, R, H, C, dtype, precision, False, self.rates)
        return {"floor": floor.seconds * 1e6,
                "eager": self.us(caller(msa_pwa_reference, v, b, g, dout, direction))}

    def configs(self, kernel, candidates, make_call, tag, base: MSAPWAOptions = DEFAULT_OPTIONS):
        """(us, config) of each candidate configuration of ``kernel`` (passed as an override on
        ``base``; the other kernels at theirs), fastest first; one JSON line per candidate."""
        results = []
        for c in candidates:
            if time.time() > self.end:
                print(f"    {tag}: budget spent", flush=True)
                break
            try:
                us = self.us(make_call(base.with_overrides(**{kernel: c})))
            except Exception as exc:  # e.g. a tile that does not fit in shared memory
                print(f"    {tag} {kernel} {c}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            results.append((us, c))
            self.emit(part="config", tag=tag, kernel=kernel, config=c, us=us)
        results.sort(key=lambda r: r[0])
        if results:
            print(f"  {tag} {kernel}: " + ", ".join(f"{us:.1f}" for us, _ in results[:4]) + f"  best {results[0][1]}",
                  flush=True)
        return results

    def sweep_shape(self, direction, dtype, S, R, C, precision="ieee"):
        """Every layout of one shape: the default, then each GEMM kernel's candidates."""
        tag = f"{direction} {dtype} {precision} S={S} R={R} C={C}"
        v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
        row = self.base_row(direction, dtype, S, R, C, precision, v, b, g, dout)
        unit = unit_of(dtype, precision)
        best = {}
        for layout in ("flat", "gemm"):
            def make_call(opts, layout=layout):
                return caller(fused(layout, precision, opts), v, b, g, dout, direction)

            row[f"{layout}_default"] = self.us(make_call(DEFAULT_OPTIONS))
            if direction == "fwd":
                kernel = forward_kernel(v, precision, layout, False)
                cands = GLUON_SPLIT_CANDIDATES if kernel == "gluon_split" else CANDIDATES[(kernel, unit)]
                kernels = [(kernel, cands)]
            else:  # the backward's GEMMs, one at a time
                kernels = [(k, CANDIDATES[(k, unit)]) for k in ("dv", "dbias")]
            for kernel, cands in kernels:
                res = self.configs(kernel, cands, make_call, f"{tag} {layout}")
                if res:
                    row[f"{layout}_{kernel}_best"] = res[0][0]
                    best[f"{layout}_{kernel}"] = res[0][1]
        print(f"{tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
        self.emit(part="shape", direction=direction, dtype=dtype, precision=precision, S=S, R=R, C=C, row=row,
                  best=best)

    def fp32_precisions(self):
        """fp32 on the tensor cores at (128, 384, 8): each precision's kernels swept, then every
        precision side by side (defaults) with its max abs error against float64."""
        for precision in ("bf16x6", "bf16x3", "tf32x3", "tf32"):
            for direction in ("fwd", "fwdbwd"):
                self.sweep_shape(direction, "fp32", 128, 384, 8, precision)
        for direction in ("fwd", "fwdbwd"):
            v, b, g, dout = inputs("fp32", 128, 384, 8, grad=direction != "fwd")
            row = self.base_row(direction, "fp32", 128, 384, 8, "ieee", v, b, g, dout)
            errors = {"eager": max_abs_errors(msa_pwa_reference, v, b, g, dout)}
            for precision in ("ieee", "bf16x6", "bf16x3", "tf32x3", "tf32"):
                row[precision] = self.us(caller(fused("auto", precision), v, b, g, dout, direction))
                errors[precision] = max_abs_errors(fused("auto", precision), v, b, g, dout)
            print(f"fp32 {direction} 128,384,8 (us): " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
            for name, errs in errors.items():
                print(f"  max abs error vs float64, {name}: " + "  ".join(f"{k} {e:.2e}" for k, e in errs.items()),
                      flush=True)
            self.emit(part="fp32", direction=direction, row=row, max_abs_err=errors)

    def gluon_split(self):
        """The Gluon bf16x6 forward (128, 384, 8) at each candidate configuration, beside Triton's
        tl.dot bf16x6 forward and the exact FMA path."""
        ok, why = gluon_split.available()
        if not ok:
            print(f"gluon-split: skipped ({why})", flush=True)
            return
        v, b, g, dout = inputs("fp32", 128, 384, 8)
        row = self.base_row("fwd", "fp32", 128, 384, 8, "bf16x6", v, b, g, dout)
        row["ieee"] = self.us(caller(fused("flat", "ieee"), v, b, g, dout, "fwd"))
        row["bf16x6-triton"] = self.us(caller(fused("flat", "bf16x6", MSAPWAOptions(use_gluon_split_forward=False)),
                                              v, b, g, dout, "fwd"))
        res = self.configs("gluon_split", GLUON_SPLIT_CANDIDATES,
                           lambda opts: caller(fused("flat", "bf16x6", opts), v, b, g, dout, "fwd"), "fwd fp32 bf16x6")
        if res:
            row["bf16x6-gluon_best"] = res[0][0]
        print("gluon-split fwd fp32 128,384,8: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
        self.emit(part="gluon_split", row=row)

    def options(self):
        """Each on/off choice of MSAPWAOptions flipped from its default, at every target shape (fp32
        at ieee and bf16x6), default layout: is each default still the faster choice here?"""
        shapes = ([("fwd", d, S, R, C, "ieee") for d, S, R, C in FWD_SHAPES]
                  + [("fwd", "fp32", 128, 384, 8, "bf16x6")]
                  + [("fwdbwd", d, S, R, C, p) for d, S, R, C in FWDBWD_SHAPES for p in ("ieee", "bf16x6")
                     if d == "fp32" or p == "ieee"])
        for direction, dtype, S, R, C, precision in shapes:
            if time.time() > self.end:
                print("options: budget spent", flush=True)
                break
            v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
            row = self.base_row(direction, dtype, S, R, C, precision, v, b, g, dout)
            row["default"] = self.us(caller(fused("auto", precision), v, b, g, dout, direction))
            for flag in FLAGS:
                flipped = dataclasses.replace(DEFAULT_OPTIONS, **{flag: not getattr(DEFAULT_OPTIONS, flag)})
                row[f"{flag}={getattr(flipped, flag)}"] = self.us(
                    caller(fused("auto", precision, flipped), v, b, g, dout, direction))
            tag = f"{direction} {dtype} {precision} S={S} R={R} C={C}"
            print(f"options {tag}: " + "  ".join(f"{k} {x:.1f}" for k, x in row.items()), flush=True)
            self.emit(part="options", direction=direction, dtype=dtype, precision=precision, S=S, R=R, C=C, row=row)

    def elementwise(self):
        v, b, g, dout = inputs("bf16", 128, 384, 8)
        self.configs("elementwise", CANDIDATES[("elementwise", None)],
                     lambda opts: caller(fused("gemm", "ieee", opts), v, b, g, dout, "fwd"), "fwd bf16 128,384,8 gemm")

    def profile(self, direction, dtype, S, R, C, layout, options: MSAPWAOptions = DEFAULT_OPTIONS, note=""):
        from torch.profiler import ProfilerActivity, profile

        v, b, g, dout = inputs(dtype, S, R, C, grad=direction != "fwd")
        call = caller(fused(layout, options=options), v, b, g, dout, direction)
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        n = 20
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                self.flusher()
                call()
            torch.cuda.synchronize()
        kernels = {}
        for e in prof.key_averages():
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t > 0:  # every kernel, the L2 flush's fill among them (about as long as the flush)
                kernels[e.key] = t / n
        tag = f"{direction} {dtype} S={S} R={R} C={C} {layout}{note}"
        print(f"  profile {tag}: " + ", ".join(f"{k[:40]} {t:.1f}" for k, t in sorted(kernels.items(),
                                                                                   key=lambda kv: -kv[1])), flush=True)
        self.emit(part="profile", tag=tag, kernels_us=kernels)


PARTS = ("fwd", "fwdbwd", "fp32", "gluon-split", "options", "elementwise", "profile")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="fwd,fwdbwd,elementwise,profile", help="comma-separated: " + " ".join(PARTS))
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--out", default="", help="append one JSON line per measurement to this file")
    ap.add_argument("--budget-s", type=float, default=300, help="stop starting new candidates after this long")
    args = ap.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)} (parts: {', '.join(PARTS)})")
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; times in us (CUDA graph replays)",
          flush=True)
    sweep = Sweep(args)
    if "fwd" in parts:
        for shape in FWD_SHAPES:
            sweep.sweep_shape("fwd", *shape)
    if "fwdbwd" in parts:
        for shape in FWDBWD_SHAPES:
            sweep.sweep_shape("fwdbwd", *shape)
    if "fp32" in parts:
        sweep.fp32_precisions()
    if "gluon-split" in parts:
        sweep.gluon_split()
    if "options" in parts:
        sweep.options()
    if "elementwise" in parts:
        sweep.elementwise()
    if "profile" in parts:
        for direction, shape in (("fwd", ("bf16", 128, 384, 8)), ("fwd", ("fp32", 128, 384, 8)),
                                 ("fwdbwd", ("fp32", 128, 384, 8)), ("fwdbwd", ("bf16", 128, 384, 8))):
            for layout in ("flat", "gemm"):
                sweep.profile(direction, *shape, layout)
        # a flat forward, the backward on gemm-layout copies of its own (MSAPWAOptions.gemm_layout_in_backward)
        sweep.profile("fwdbwd", "bf16", 128, 384, 8, "auto", MSAPWAOptions(gemm_layout_in_backward=True),
                      " gemm_layout_in_backward")


if __name__ == "__main__":
    main()
