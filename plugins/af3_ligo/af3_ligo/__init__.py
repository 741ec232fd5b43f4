"""af3-bench engine plugin for Ligo Biosciences' AlphaFold 3 (PyTorch): the real model, random
parameters, a synthetic batch, eval + no_grad.

Layout (the same file set as every engine plugin, then this engine's own helpers):

- ``plugin.py``       registration and the availability check (light: imports no framework)
- ``settings.py``     the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``source.py``       where Ligo's checkout is (``SOURCE``), and the model yaml inside it
- ``build.py``        from resolved settings to a ready model and synthetic batch on the device
- ``runner.py``       the af3core Runner: build once, one forward per pass, finiteness checked
- ``config.py``       the model config read from the checkout's yaml, ``config.<path>`` overrides
- ``ligo_import.py``  importing Ligo's model from a checkout without its training stack
- ``model.py``        ``AlphaFold3(cfg)`` built quickly, parameters optionally re-randomised
- ``batch.py``        the synthetic batch, with the shapes of Ligo's featuriser
- ``modes.py``        what ``toy``, ``trunk`` and ``full`` run (the sampler set on the instance)
- ``passes.py``       one inference pass (no_grad, autocast for bf16) and the outputs that must be finite
- ``msa.py``          the three MSA pair-weighted averaging implementations, and the one place that picks one

Importing this package, ``plugin``, ``settings``, ``source`` or ``config`` is cheap (PyYAML at most);
torch and Ligo's code are imported by ``build`` (and what it calls) where a case runs.
"""
__version__ = "0.1.0"
