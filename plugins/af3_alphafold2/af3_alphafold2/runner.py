"""The af3-bench runner for DeepMind's AlphaFold 2 (imported only where a case runs: the worker, or
the host under ``af3 bench --in-process``)."""
from __future__ import annotations

import time
from typing import Any, Callable

from af3core import CaseError, NonFiniteOutput, Runner


class AlphaFold2Runner(Runner):
    """One case: build in ``setup``, lower + XLA-compile in ``compile``, one forward per ``step``.

    All recycles run inside one compiled program, as DeepMind's ``RunModel.predict`` runs them.
    """

    framework = "jax"

    def setup(self) -> dict[str, Any]:
        from af3_alphafold2 import build

        settings = self.case.settings
        # Before JAX creates its GPU client, which reads the variable once.
        build.apply_memory_env(bool(settings.get("preallocate", False)))
        if self.case.device_type == "cpu":
            build.use_cpu_backend()
        try:
            self._built = build.build(self.case.mode, self.case.seq_len, settings, self.case.device_type)
        except build.BuildError as exc:
            raise CaseError(str(exc)) from None

        import jax

        self._jitted = jax.jit(with_finite_flag(self._built.forward.apply))
        self._compiled = None
        self._executions = 0
        return dict(self._built.facts)

    def compile(self) -> dict[str, Any]:
        """Lowering plus XLA compilation, nothing else: no pass runs here."""
        import jax

        b = self._built
        t0 = time.perf_counter()
        with jax.default_matmul_precision(b.matmul_precision):
            lowered = self._jitted.lower(b.params, b.key, b.batch)
        t1 = time.perf_counter()
        self._compiled = lowered.compile()
        t2 = time.perf_counter()
        return {"lower_ms": (t1 - t0) * 1e3, "xla_compile_ms": (t2 - t1) * 1e3}

    def step(self) -> dict[str, Any]:
        import jax

        b = self._built
        out, finite = self._compiled(b.params, b.key, b.batch)
        jax.block_until_ready((out, finite))
        if not bool(finite):
            raise NonFiniteOutput(f"non-finite values in {', '.join(nonfinite_leaves(out)) or 'an output'}")
        del out  # free the outputs before the next pass allocates its own
        self._executions += 1
        # compile() runs nothing, so the first pass also pays one-time execution costs; flag it.
        return {"first_execution": self._executions == 1}

    def peak_memory(self) -> dict[str, Any]:
        """JAX's own allocator peak on the device this case ran on (None on CPU: XLA keeps no stats)."""
        built = getattr(self, "_built", None)
        stats = (built.device.memory_stats() if built is not None else None) or {}
        return {
            "framework": "jax",
            "framework_peak_bytes": stats.get("peak_bytes_in_use"),
            "framework_bytes_limit": stats.get("bytes_limit"),
        }

    def teardown(self) -> None:
        self._compiled = None
        self._built = None


def with_finite_flag(apply: Callable) -> Callable:
    """``apply`` that also returns one bool: every floating output is finite (fused on the device)."""
    import jax
    import jax.numpy as jnp

    def run(params, key, batch):
        out = apply(params, key, batch)
        checks = [
            jnp.all(jnp.isfinite(x))
            for x in jax.tree_util.tree_leaves(out)
            if jnp.issubdtype(x.dtype, jnp.inexact)
        ]
        return out, jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)

    return run


def nonfinite_leaves(out) -> list[str]:
    """Names of the outputs holding NaN or Inf (only computed after a failed check)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    bad = []
    for path, x in jax.tree_util.tree_leaves_with_path(out):
        if jnp.issubdtype(x.dtype, jnp.inexact) and not np.isfinite(np.asarray(x, np.float32)).all():
            bad.append(jax.tree_util.keystr(path))
    return bad
