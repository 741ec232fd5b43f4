"""The af3-bench runner for DeepMind's AlphaFold 3 (imported only where a case runs: the worker, or
the host under ``af3 bench --in-process``): af3core's compiled-JAX runner over this plugin's build."""
from __future__ import annotations

from af3core.jaxrun import CompiledJaxRunner

from af3_deepmind import build


class DeepMindRunner(CompiledJaxRunner):
    """One case: build in ``setup``, lower + XLA-compile in ``compile``, one forward per ``step``."""

    build_module = build
