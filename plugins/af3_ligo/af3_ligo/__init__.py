"""af3-bench engine plugin for Ligo Biosciences' AlphaFold 3 (PyTorch).

Importing this package is cheap: torch and the Ligo source are imported only by
``af3_ligo.engine``, ``af3_ligo.msa`` and ``af3_ligo.runner``, inside the worker.
"""
__version__ = "0.1.0"
