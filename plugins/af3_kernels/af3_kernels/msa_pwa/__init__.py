"""MSA pair-weighted averaging with gating (AlphaFold 3, Algorithm 10), fused in Triton.

    from af3_kernels.msa_pwa.function import msa_pair_weighted_averaging, MSAWeightedAveragingFused

Modules: ``function.py`` (the public call, autograd Function and nn.Module), ``ops.py`` (the same
as torch.library custom ops, for torch.compile), ``options.py`` (the implementation choices),
``launch.py`` (configurations, grids, launches), ``kernels.py`` (the Triton kernels),
``gluon_split.py`` (the Gluon bf16x6 forward, Hopper), ``reference.py`` (PyTorch), ``spec.py`` and
``case.py`` (the benchmark case), ``tune.py`` (block-size sweeps, GPU).
Importing this package is cheap: it imports none of them.
"""
