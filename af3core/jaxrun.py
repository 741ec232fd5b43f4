"""A runner for engines whose pass is one compiled JAX program (DeepMind's AlphaFold 3 and 2):
build in ``setup``, lower + XLA-compile in ``compile`` (no pass runs there), one execution per
``step`` with the finiteness check fused into the program, JAX's allocator peak at the end; and
random parameters for a Haiku model filled in numpy (:func:`random_haiku_params`).
Imported only where a case runs; jax and numpy are imported inside the functions.

A subclass sets ``build_module``: a module with ``build(mode, size, settings, device_type)``
returning an object with ``forward`` (a Haiku-transformed function), ``params``, ``key``,
``batch``, ``device``, ``facts`` and optionally ``matmul_precision``, and ``BuildError``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from af3core.runner import CaseError, NonFiniteOutput, Runner


def random_haiku_params(shapes: dict, seed: int, stack_axes: Callable[[str], int]) -> dict[str, dict[str, Any]]:
    """Parameters with the shapes and dtypes of ``shapes`` (a Haiku ``init`` traced by
    ``jax.eval_shape``: {module: {name: ShapeDtypeStruct}}), filled in numpy in seconds.

    Running the model's own initialisers would compile a second graph as large as the model, and
    both AlphaFolds zero-initialise the final projection of many residual branches, which makes
    them vanish. Here weights are N(0, 1/fan_in), fan_in taken without the ``stack_axes(module)``
    leading axes that layer stacks add; layer-norm scales 1, offsets and biases 0; each array in
    the dtype ``init`` declares. Outputs stay finite through 48 blocks and every recycle, and every
    branch contributes."""
    import numpy as np

    # Drawing hundreds of millions of normals costs ~10 s on one core; tiling a pool of 2**20 + 7
    # draws (a length that never lines up with a tensor's rows) with a shifted start per tensor
    # costs ~1 s. Parameter statistics are what matter for timing and finiteness, not independence.
    pool = np.random.default_rng(seed).standard_normal((1 << 20) + 7, dtype=np.float32)
    params: dict[str, dict[str, Any]] = {}
    offset = 0
    for module, leaves in shapes.items():
        stacked = stack_axes(module)
        params[module] = {}
        for name, leaf in leaves.items():
            shape, dtype = leaf.shape, np.dtype(leaf.dtype)
            if name == "scale":
                value = np.ones(shape, dtype)
            elif name in ("offset", "bias") or name.endswith("_b"):
                value = np.zeros(shape, dtype)
            else:
                value = _tile_pool(pool, offset, int(np.prod(shape))).reshape(shape)
                value *= np.float32(_fan_in(name, shape[stacked:]) ** -0.5)
                value = value.astype(dtype, copy=False)
                offset = (offset + 7919) % pool.size
            params[module][name] = value
    return params


def _fan_in(name: str, core: tuple[int, ...]) -> int:
    """Input size of a weight without its layer-stack axes: Linear and attention projections are
    (in, *out), except attention and outer-product-mean outputs, which contract two axes."""
    if not core:
        return 1
    if name == "output_w" and len(core) >= 3:
        return int(core[0] * core[1])
    return int(core[0])


def _tile_pool(pool, start: int, size: int):
    import numpy as np

    out = np.empty(size, np.float32)
    filled = 0
    while filled < size:
        n = min(pool.size - start, size - filled)
        out[filled : filled + n] = pool[start : start + n]
        filled += n
        start = 0
    return out


def count_haiku_params(params: dict) -> int:
    """How many numbers a {module: {name: array}} parameter tree holds."""
    return int(sum(v.size for leaves in params.values() for v in leaves.values()))


def apply_memory_env(preallocate: bool) -> None:
    """Must run before JAX creates its GPU client (it reads the variable once)."""
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true" if preallocate else "false"


def use_cpu_backend() -> None:
    """Make the CPU JAX's default backend (before JAX initialises its backends). On a machine with
    a GPU the default would still be the GPU, and kernels picked by the default backend (tokamax's
    Pallas-Triton ones) fail for a CPU array."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    if "jax" in sys.modules:  # in-process: effective only while no backend is initialised yet
        import jax

        try:
            jax.config.update("jax_platforms", "cpu")
        except Exception:  # noqa: BLE001 - a backend is already up: the env var above stays for workers
            pass


def jax_device(device_type: str, error: type[Exception] = CaseError):
    """JAX's first device of ``device_type``; ``error`` (with the fix) when JAX has no such backend."""
    import jax

    platform = "gpu" if device_type == "cuda" else device_type
    try:
        return jax.devices(platform)[0]
    except RuntimeError as exc:
        raise error(f"JAX has no {device_type} backend here ({exc}); install jax with CUDA support "
                    "(jax[cuda13])") from None


def with_finite_flag(apply: Callable) -> Callable:
    """``apply`` that also returns one bool: every floating output is finite. The reduction is
    fused into the compiled program, so checking costs one read of the outputs on the device
    instead of copying them (a 1024-token pair tensor is 512 MB) to the host."""
    import jax
    import jax.numpy as jnp

    def run(params, key, batch):
        out = apply(params, key, batch)
        checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(out)
                  if jnp.issubdtype(x.dtype, jnp.inexact)]
        return out, jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)

    return run


def nonfinite_leaves(out) -> list[str]:
    """Names of the outputs holding NaN or Inf (only computed after a failed check)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    return [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(out)
            if jnp.issubdtype(x.dtype, jnp.inexact) and not np.isfinite(np.asarray(x, np.float32)).all()]


class CompiledJaxRunner(Runner):
    """One case: build in ``setup``, lower + XLA-compile in ``compile``, one execution per ``step``."""

    framework = "jax"
    build_module: Any = None  # set by the subclass (module doc)

    def setup(self) -> dict[str, Any]:
        build = self.build_module
        settings = self.case.settings
        apply_memory_env(bool(settings.get("preallocate", False)))
        if self.case.device_type == "cpu":
            use_cpu_backend()
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
        with jax.default_matmul_precision(getattr(b, "matmul_precision", None)):
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
        # compile() runs nothing, so the first pass also pays one-time execution costs (buffer
        # allocation, kernel loading); flag it so summaries can tell.
        return {"first_execution": self._executions == 1}

    def peak_memory(self) -> dict[str, Any]:
        """JAX's own allocator peak on the device this case ran on (None on CPU: XLA keeps no stats).
        JAX cannot reset this peak inside a process; the worker runs one case per process."""
        built = getattr(self, "_built", None)
        stats = (built.device.memory_stats() if built is not None else None) or {}
        return {"framework": "jax", "framework_peak_bytes": stats.get("peak_bytes_in_use"),
                "framework_bytes_limit": stats.get("bytes_limit")}

    def teardown(self) -> None:
        self._compiled = None
        self._built = None
