"""Limits the light spec and the heavy kernel share (no torch, no triton here)."""
#: The widest input row: the kernels hold a whole row in one tile (AF3's 128 and 384 fit).
MAX_K = 512
