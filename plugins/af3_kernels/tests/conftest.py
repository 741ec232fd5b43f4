"""Without a GPU the kernels' tests run them in Triton's interpreter, which must be chosen before
triton's first import (it decides at decoration time, its own library included): set here, before
any test module of this folder is imported. Each module skips when triton was imported earlier."""
import importlib.util
import os
import sys


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


if not _cuda() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")
