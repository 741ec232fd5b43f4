"""One kernel per module (Triton kernels + autograd Function + nn.Module)."""
