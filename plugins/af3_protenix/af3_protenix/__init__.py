"""af3-bench engine plugin for Protenix (PyPI ``protenix``, ByteDance's AlphaFold 3 reproduction): the
real model (``protenix.model.protenix.Protenix``) built from the package's inference config,
random parameters, a synthetic feature dictionary, inference mode.

Layout (the engine plugins' file set; Protenix installs from the package index, so there is no
``source.py``: the installed distribution is the source):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``build.py``     from resolved settings to a ready model and synthetic features on the device
- ``runner.py``    the af3core Runner: build once, one forward per pass, finiteness checked
- ``model.py``     the package's inference config with the settings applied; the model built fast
- ``batch.py``     the synthetic features, with the keys, shapes and dtypes of Protenix's featuriser
"""
__version__ = "0.1.0"
