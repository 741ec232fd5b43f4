"""Triton helpers the kernels of several folders share.

INTERP marks a run in Triton's numpy interpreter (TRITON_INTERPRET=1, the CPU tests), whose bf16
support has two faults worked around here so that the CPU tests see the GPU's numerics: its bf16
dot multiplies the raw bit patterns (``mma`` dots the rounded operands in fp32 there instead), and
its fp32 -> bf16 cast truncates (``cast`` rounds to nearest even as the GPU does).
"""
import triton
import triton.language as tl


@triton.jit
def cast(x, dtype: tl.constexpr, INTERP: tl.constexpr):
    """x (fp32) to ``dtype``, rounding to nearest even as the GPU does."""
    if INTERP and dtype == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        x = (bits & 0xFFFF0000).to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def mma(a, b, acc, IN_PREC: tl.constexpr, INTERP: tl.constexpr):
    """acc + a @ b in fp32 (``IN_PREC`` for fp32 operands). In the interpreter: the same (already
    rounded) operands dotted in fp32, since its bf16 dot is wrong."""
    if INTERP:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc, input_precision=IN_PREC)
