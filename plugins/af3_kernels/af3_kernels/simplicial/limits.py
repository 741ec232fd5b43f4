"""Limits and names of the simplicial kernel, light enough for the plugin's registration."""

#: ``--set simplicial_variant=``: windowed (Roy et al.: causal windows (i-w1, i] and (i-w2, i]) or
#: full (every pair (j, k) of the sequence: O(n^3) per head, small n)
VARIANTS = ("windowed", "full")
#: the widest head the fused kernel keeps on chip (a [BLOCK_J, d] tile per operand)
MAX_HEAD_DIM = 256
