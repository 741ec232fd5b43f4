"""2-simplicial attention (Clift et al. 2019; Roy et al. 2025, arXiv 2507.02754): reference.py
(plain PyTorch, any device), kernels.py (the Triton forward), function.py (the fused call)."""
