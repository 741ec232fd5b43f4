"""The af3-bench runner for DeepMind's AlphaFold 2 (imported only where a case runs: the worker, or
the host under ``af3 bench --in-process``): af3core's compiled-JAX runner over this plugin's build."""
from __future__ import annotations

from af3core.jaxrun import CompiledJaxRunner

from af3_alphafold2 import build


class AlphaFold2Runner(CompiledJaxRunner):
    """One case: build in ``setup``, lower + XLA-compile in ``compile``, one forward per ``step``.
    All recycles run inside one compiled program, as DeepMind's ``RunModel.predict`` runs them.
    """

    build_module = build
