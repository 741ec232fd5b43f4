"""Plugin discovery through entry points in group ``af3bench``.

Each entry point is imported on its own so that one broken plugin is reported, never fatal to the
others. Registering imports only the plugin's light description module.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import metadata

import pluggy

from af3core import hookspecs
from af3core.plugin import Availability, Plugin

GROUP = "af3bench"


@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    distribution: str
    version: str
    error: str


@dataclass
class Registry:
    plugins: dict[str, Plugin]
    broken: list[BrokenPlugin]

    def availability(self) -> dict[str, Availability]:
        result = {}
        for name, plugin in self.plugins.items():
            try:
                result[name] = plugin.availability()
            except Exception as exc:  # a check that raises is a broken check, not a crash of the host
                result[name] = Availability.no(f"availability check raised {type(exc).__name__}: {exc}")
        return result


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", ""
    return dist.metadata["Name"] or "", dist.version or ""


def load() -> Registry:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    plugins: dict[str, Plugin] = {}
    broken: list[BrokenPlugin] = []
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        dist_name, dist_version = _dist_of(ep)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - report and go on
            broken.append(BrokenPlugin(ep.name, dist_name, dist_version, f"{type(exc).__name__}: {exc}"))
            continue

        registered: list[Plugin] = []
        try:
            for impl in pm.hook.register_plugins.get_hookimpls():
                if impl.plugin is module:
                    impl.function(register=registered.append)
        except Exception as exc:  # noqa: BLE001
            broken.append(BrokenPlugin(ep.name, dist_name, dist_version,
                                       f"register_plugins raised {type(exc).__name__}: {exc}"))
            continue
        for plugin in registered:
            if plugin.name in plugins:
                other = plugins[plugin.name]
                broken.append(BrokenPlugin(plugin.name, dist_name, dist_version,
                                           f"name already registered by {other.distribution}"))
                continue
            plugins[plugin.name] = dataclasses.replace(plugin, distribution=dist_name, version=dist_version)
    return Registry(plugins, broken)
