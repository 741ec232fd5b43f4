"""Triangle multiplicative update (AF3 Algorithms 12 and 13): reference.py (plain PyTorch),
kernels.py (Triton), function.py (the fused forward an engine calls)."""
