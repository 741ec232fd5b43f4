"""Finding plugins through entry points in group ``af3bench``, without letting any of them take the
command down.

- Each entry point is imported on its own; whatever it raises (SystemExit included) lists it as
  broken, and the others load.
- A plugin name registered by two distributions is a conflict, never resolved silently: neither
  runs until one is uninstalled.
- Availability checks run only for the plugins a command needs, once per command, in parallel,
  each under a time limit.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from af3core import envs, hookspecs
from af3core.errors import UsageError
from af3core.plugin import Availability, Plugin

GROUP = "af3bench"
#: How long one availability check may take (AF3_CHECK_TIMEOUT overrides, in seconds).
CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    distribution: str
    version: str
    error: str


@dataclass
class Registry:
    plugins: dict[str, Plugin]
    broken: list[BrokenPlugin] = field(default_factory=list)
    conflicts: dict[str, list[Plugin]] = field(default_factory=dict)  # name -> every claimant
    _availability: dict[str, Availability] = field(default_factory=dict)

    def conflict_text(self, name: str) -> str:
        claimants = " and ".join(f"{p.distribution or '?'} {p.version}".strip() for p in self.conflicts[name])
        return f"the name {name!r} is registered by {claimants}"

    def require(self, name: str) -> Plugin:
        """The plugin a user named, or a UsageError that says why it cannot be used."""
        if name in self.plugins:
            return self.plugins[name]
        if name in self.conflicts:
            dists = " or ".join(f"pip uninstall {p.distribution}" for p in self.conflicts[name] if p.distribution)
            raise UsageError(f"plugin {name!r} is in conflict: {self.conflict_text(name)}; keep one of them "
                             f"({dists})")
        broken = [b for b in self.broken if b.name == name]
        if broken:
            raise UsageError(f"plugin {name!r} failed to load: {broken[0].error}")
        known = ", ".join(sorted(self.plugins)) or "none installed"
        raise UsageError(f"unknown plugin {name!r} (plugins: {known})")

    def availability(self, names=None, timeout_s: float | None = None) -> dict[str, Availability]:
        """Availability of the named plugins (default all): each check once per command, run in
        parallel threads, each given ``timeout_s``; a check that raises or hangs is a 'no'."""
        names = list(self.plugins) if names is None else [n for n in names if n in self.plugins]
        todo = [n for n in names if n not in self._availability]
        if todo:
            self._availability.update(_run_checks([self.plugins[n] for n in todo], timeout_s))
        return {n: self._availability[n] for n in names}


def _check_timeout() -> float:
    try:
        return float(os.environ.get("AF3_CHECK_TIMEOUT", CHECK_TIMEOUT_S))
    except ValueError:
        return CHECK_TIMEOUT_S


def _run_checks(plugins: list[Plugin], timeout_s: float | None) -> dict[str, Availability]:
    timeout_s = _check_timeout() if timeout_s is None else timeout_s
    results: dict[str, Availability] = {}

    def run(plugin: Plugin) -> None:
        try:
            python, source = envs.interpreter(plugin)
            # A plugin whose workers run under another interpreter is checked there: its engine
            # may be installed only in that environment.
            answer = plugin.availability() if source == envs.HOST else envs.check_elsewhere(plugin, python, timeout_s)
            if not isinstance(answer, Availability):
                answer = Availability.no(f"availability check returned {type(answer).__name__}, not Availability")
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: a check cannot end the command
            answer = Availability.no(f"availability check raised {type(exc).__name__}: {exc}")
        results[plugin.name] = answer

    # Daemon threads: a check that never returns must not keep the command from exiting.
    threads = [threading.Thread(target=run, args=(p,), daemon=True, name=f"af3-check-{p.name}") for p in plugins]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for plugin in plugins:
        results.setdefault(plugin.name, Availability.no(
            f"availability check did not answer within {timeout_s:g} s",
            "fix the plugin's check, or raise AF3_CHECK_TIMEOUT (seconds)"))
    return dict(results)


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", ""
    return dist.metadata["Name"] or "", dist.version or ""


def _entry_points() -> list:
    """Every entry point of the group once: a distribution visible twice on sys.path counts once,
    but two distributions using one entry-point name are both kept."""
    seen, unique = set(), []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        key = (_dist_of(ep)[0], ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def load() -> Registry:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    claimed: dict[str, list[Plugin]] = {}
    broken: list[BrokenPlugin] = []
    for index, ep in enumerate(_entry_points()):
        dist_name, dist_version = _dist_of(ep)
        try:
            module = ep.load()
            pm.register(module, name=f"{ep.name}#{index}")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: report and go on
            broken.append(BrokenPlugin(ep.name, dist_name, dist_version, f"{type(exc).__name__}: {exc}"))
            continue
        registered: list = []
        try:
            for impl in pm.hook.register_plugins.get_hookimpls():
                if impl.plugin is module:
                    impl.function(register=registered.append)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            broken.append(BrokenPlugin(ep.name, dist_name, dist_version,
                                       f"register_plugins raised {type(exc).__name__}: {exc}"))
            continue
        for plugin in registered:
            if not isinstance(plugin, Plugin):
                broken.append(BrokenPlugin(ep.name, dist_name, dist_version,
                                           f"register_plugins registered {type(plugin).__name__}, not Plugin"))
                continue
            plugin = dataclasses.replace(plugin, distribution=dist_name, version=dist_version)
            claimed.setdefault(plugin.name, []).append(plugin)
    plugins = {name: ps[0] for name, ps in claimed.items() if len(ps) == 1}
    conflicts = {name: ps for name, ps in claimed.items() if len(ps) > 1}
    return Registry(plugins, broken, conflicts)
