"""``kernel=ln_linear``: LayerNorm followed by a Linear in one kernel (MegaFold's LayernormLinear)."""
