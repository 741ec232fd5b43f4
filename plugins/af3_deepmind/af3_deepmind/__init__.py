"""af3-bench engine plugin for DeepMind's AlphaFold 3 (JAX/Haiku): the real model graph, random
parameters, a synthetic input.

Layout (the same file set as every engine plugin, then this engine's own helpers):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``source.py``    where DeepMind's checkout is (``SOURCE``), or an installed ``alphafold3`` package
- ``build.py``     from resolved settings to a ready model, parameters and batch on the device
- ``runner.py``    the af3core Runner: build, lower + compile, one forward per pass
- ``batch.py``     the synthetic featurised batch, built with AF3's own feature helpers
- ``model.py``     the Haiku model configured from the settings (trunk-only subclass), random parameters
- ``standins.py``  stand-ins for the modules the model imports but never calls (C++ extension, RDKit...)
- ``compat.py``    two small fixes for DeepMind's pinned source on today's libraries

Importing this package, ``plugin``, ``settings`` or ``source`` is cheap; jax, haiku and DeepMind's
code are imported by ``build`` (and what it calls) where a case runs.
"""
__version__ = "0.1.0"
