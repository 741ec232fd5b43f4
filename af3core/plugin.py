"""What a plugin tells the host about itself. Cheap to build: no torch or jax import allowed here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

ENGINE = "engine"
KERNEL = "kernel"


@dataclass(frozen=True)
class Availability:
    """Whether a plugin can run here; when not, why and how to fix it."""

    ok: bool
    reason: str = ""
    fix: str = ""
    source_version: str | None = None  # e.g. the engine checkout's git commit

    @classmethod
    def yes(cls, source_version: str | None = None) -> "Availability":
        return cls(True, source_version=source_version)

    @classmethod
    def no(cls, reason: str, fix: str = "") -> "Availability":
        return cls(False, reason, fix)


@dataclass(frozen=True)
class Setting:
    """One ``--set KEY=VALUE`` knob. ``default`` also fixes the type the value is parsed to."""

    default: Any
    help: str = ""
    choices: Sequence[Any] | None = None


@dataclass(frozen=True)
class Plugin:
    """A benchmarkable engine or kernel family.

    ``runner`` is an import path ``"package.module:Class"`` resolved only inside the worker
    subprocess, so describing a plugin never imports its framework.
    """

    name: str
    kind: str  # ENGINE or KERNEL
    runner: str
    description: str = ""
    modes: Sequence[str] = ("toy", "trunk", "full")
    default_mode: str = "trunk"
    # Quick defaults used by a bare ``af3 bench``; keyed by device type ("cpu", "cuda", ...). A device
    # type left out keeps the plugin out of bare runs there (named, it needs --seq-len).
    default_seq_lens: Mapping[str, Sequence[int]] = field(default_factory=lambda: {"cpu": (32,), "cuda": (256,)})
    default_passes: int = 3
    # Passes run after compile() and left out of the statistics (first executions that still pay
    # one-time costs, e.g. a JAX executable's first run); --warmup overrides.
    default_warmup: int = 0
    settings: Mapping[str, Setting] = field(default_factory=dict)
    # Named bundles of settings; ``default_preset`` applies when --preset is not given: one name, or
    # a name per device type ({"cpu": "smoke"}: quick defaults that suit the device).
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_preset: str | Mapping[str, str] | None = None
    devices: Sequence[str] = ("cpu", "cuda")
    # Cheap check (no heavy imports): engine source present, etc. The host runs it under a time
    # limit, once per command, only for the plugins the command needs.
    check: Callable[[], Availability] | None = None
    # Plan-time validation of the merged settings for one device type ("cpu", "cuda", "mps"): returns
    # error strings (each becomes a usage error, exit 2, before any worker starts).
    validate: Callable[[Mapping[str, Any], str], list[str]] | None = None
    # Keys outside ``settings`` that start with one of these prefixes are accepted and handed to
    # ``validate`` (e.g. Ligo's "config." keys into the engine's yaml); every other unknown key is
    # refused.
    setting_prefixes: Sequence[str] = ()
    # Seq-len rule, e.g. Ligo needs multiples of 8. Returns an error string or None.
    check_seq_len: Callable[[int], str | None] | None = None
    # Environment variables the worker gets (recorded in every row).
    env: Mapping[str, str] = field(default_factory=dict)
    # Interpreter for this plugin's workers; an env var AF3_PYTHON_<NAME> overrides it.
    python: str | None = None
    # Distributions whose versions every row of this plugin records, besides the core's (torch,
    # jax, jaxlib, triton, numpy), e.g. ("dm-haiku", "tokamax").
    libraries: Sequence[str] = ()
    # Filled by the host after loading: which distribution registered it, and its version.
    distribution: str = ""
    version: str = ""

    def availability(self) -> Availability:
        if self.check is None:
            return Availability.yes()
        return self.check()
