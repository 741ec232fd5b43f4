"""The hooks a plugin implements. One hook: plugins describe themselves, nothing heavy is imported."""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("af3bench")
hookimpl = pluggy.HookimplMarker("af3bench")


@hookspec
def register_plugins(register):
    """Call ``register(Plugin(...))`` once per engine or kernel plugin this package provides."""
