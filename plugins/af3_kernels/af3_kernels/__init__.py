"""Fused GPU kernels for AlphaFold-3-class models, their PyTorch references and benchmark cases.

One folder per kernel (``msa_pwa/``: MSA pair-weighted averaging); the kernel-agnostic pieces at
the top: ``plugin.py`` (registration), ``registry.py`` (the kernels, their settings, how to add
one), ``kernel.py`` (what a kernel provides), ``runner.py``, ``timing.py``, ``floors.py``.
Importing this package, ``plugin``, ``registry``, ``kernel`` or a kernel's ``spec`` is cheap; torch
and triton are imported by the kernels' other modules and the runner, in the worker.
"""
__version__ = "0.1.0"
