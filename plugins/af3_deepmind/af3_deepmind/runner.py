"""The af3-bench runner for DeepMind's AlphaFold 3 (imported only in the worker subprocess)."""
from __future__ import annotations

import time
from typing import Any

from af3core import CaseError, NonFiniteOutput, Runner


class DeepMindRunner(Runner):
    """One case: build in ``setup``, lower + XLA-compile in ``compile``, one forward per ``step``."""

    framework = "jax"

    def setup(self) -> dict[str, Any]:
        from af3_deepmind import engine

        settings = self.case.settings
        # Before JAX creates its GPU client, which reads the variable once.
        engine.apply_memory_env(bool(settings.get("preallocate", False)))
        try:
            self._built = engine.build(self.case.mode, self.case.seq_len, settings, self.case.device_type)
        except engine.BuildError as exc:
            raise CaseError(str(exc)) from None

        import jax

        self._jitted = jax.jit(engine.with_finite_flag(self._built.forward.apply))
        self._compiled = None
        self._executions = 0
        return dict(self._built.facts)

    def compile(self) -> dict[str, Any]:
        """Lowering plus XLA compilation, nothing else: no pass runs here."""
        b = self._built
        t0 = time.perf_counter()
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
            from af3_deepmind.engine import nonfinite_leaves

            raise NonFiniteOutput(f"non-finite values in {', '.join(nonfinite_leaves(out)) or 'an output'}")
        del out  # free the outputs before the next pass allocates its own
        self._executions += 1
        # compile() runs nothing, so the first pass also pays one-time execution costs (buffer
        # allocation, kernel loading); flag it so summaries can tell.
        return {"first_execution": self._executions == 1}

    def peak_memory(self) -> dict[str, Any]:
        """JAX's own allocator peak on the device this case ran on (None on CPU: XLA keeps no stats).

        JAX cannot reset this peak inside a process; the worker runs one case per process.
        """
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
