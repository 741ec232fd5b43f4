"""Fused Triton kernels for AlphaFold-3-class models, their PyTorch references and benchmark cases.

Importing this package is cheap; torch and triton are imported only by ``af3_kernels.ops.*``,
``af3_kernels.reference`` and ``af3_kernels.runner``.
"""
__version__ = "0.1.0"
