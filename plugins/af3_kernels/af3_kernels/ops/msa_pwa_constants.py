"""Constants shared by the kernel and its reference (importable without triton)."""

#: the logit a masked pair gets, in natural-log units (replaces the bias; Ligo adds 1e8*(mask-1))
MASKED_LOGIT = -1e9
