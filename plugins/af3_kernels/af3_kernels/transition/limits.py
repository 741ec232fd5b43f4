"""Limits of the fused Transition, light enough for the plugin's registration (no torch, no triton)."""

#: the widest c the kernel keeps on chip (a [64, c] fp32 accumulator per program)
MAX_C = 256
