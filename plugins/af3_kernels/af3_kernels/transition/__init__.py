"""AlphaFold 3's Transition (Algorithm 11): reference.py (plain PyTorch), kernels.py (Triton),
function.py (the fused forward an engine calls)."""
