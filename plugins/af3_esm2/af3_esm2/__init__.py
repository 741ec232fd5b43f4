"""af3-bench engine plugin for ESM-2 (PyPI ``fair-esm`` 2.0.0): the real model
(``esm.model.esm2.ESM2``) at a released size, random parameters (the module's own initialisation),
synthetic sequences of random amino acids tokenised by the alphabet's own batch converter (BOS and
EOS added), inference mode.

Layout (the engine plugins' file set; fair-esm installs from the package index, so there is no
``source.py``: the installed distribution is the source):

- ``plugin.py``    registration and the availability check (light: imports no framework)
- ``settings.py``  the settings, the presets and the plan-time ``validate(settings, device_type)``
- ``model.py``     the released sizes (layers, width, heads) and the model built from them
- ``batch.py``     the synthetic sequences and their tokens
- ``build.py``     from resolved settings to a ready model and tokens on the device
- ``runner.py``    the af3core Runner: build once, one forward per pass, timed, figures per residue
- ``target.py``    the roadmap check over summary.csv files: ``python -m af3_esm2.target RUN_DIR``
"""
__version__ = "0.1.0"
