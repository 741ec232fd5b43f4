"""af3-bench engine plugin for OpenFold3 (PyPI ``openfold3``): the real model
(``openfold3.projects.of3_all_atom.model.OpenFold3``) built from the package's inference config,
random parameters, a synthetic batch, inference mode.

Layout (the engine plugins' file set; OpenFold3 installs from the package index, so there is no
``source.py``: the installed distribution is the source):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``build.py``     from resolved settings to a ready model and synthetic batch on the device
- ``runner.py``    the af3core Runner: build once, one forward per pass, finiteness checked
- ``model.py``     the package's inference config with the settings applied; the model built fast
- ``batch.py``     the synthetic batch, with the keys, shapes and dtypes of OpenFold3's featurisation
"""
__version__ = "0.1.0"
