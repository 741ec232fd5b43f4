"""af3-bench engine plugin for Boltz-2 (PyPI ``boltz``, or the ``boltz-community`` fork, which imports
as the same package): the real model (``boltz.model.models.boltz2.Boltz2``), random parameters, a
synthetic batch, inference mode.

Layout (the engine plugins' file set; Boltz installs from the package index, so there is no
``source.py``: the installed distribution is the source):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``build.py``     from resolved settings to a ready model and synthetic batch on the device
- ``runner.py``    the af3core Runner: build once, one forward per pass, finiteness checked
- ``model.py``     the constructor arguments of the released Boltz-2 and ``boltz predict``'s overrides
- ``batch.py``     the synthetic batch, with the keys, shapes and dtypes of Boltz's own featuriser
"""
__version__ = "0.1.0"
