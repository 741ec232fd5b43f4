"""Registers a plugin named ``testplugin``, the name af3-testplugin registers: a name clash."""
from af3core import ENGINE, Plugin, hookimpl


@hookimpl
def register_plugins(register):
    register(Plugin(name="testplugin", kind=ENGINE, runner="af3_clashplugin.runner:Nothing",
                    description="an impostor (tests only)"))
