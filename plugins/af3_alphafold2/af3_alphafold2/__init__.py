"""af3-bench engine plugin for DeepMind's AlphaFold 2 (JAX/Haiku): the real ``model_1_ptm`` graph,
random parameters, a synthetic post-pipeline feature dict.

Layout (the same file set as every engine plugin, then this engine's own helpers):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``source.py``    where DeepMind's AlphaFold 2 checkout is (``SOURCE``: ``AF2_SRC``, third_party/alphafold2)
- ``build.py``     from resolved settings to a ready model, parameters and features on the device
- ``runner.py``    the af3core Runner: build, lower + compile, one forward per pass
- ``features.py``  the synthetic feature dict, shaped as DeepMind's eval pipeline hands it to the model
- ``model.py``     the Haiku model configured from the settings (trunk-only variant), random parameters
- ``compat.py``    the one fix DeepMind's pinned source needs on today's jax (``jnp.clip`` keywords)

Importing this package, ``plugin``, ``settings`` or ``source`` is cheap; jax, haiku and DeepMind's
code are imported by ``build`` (and what it calls) where a case runs.
"""
__version__ = "0.1.0"
