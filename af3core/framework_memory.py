"""Framework-reported peak memory, asked only of frameworks already imported by the runner."""
from __future__ import annotations

import sys
from typing import Any


def peak(framework: str, device: str) -> dict[str, Any]:
    if framework == "torch" and "torch" in sys.modules:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            return {
                "framework": "torch",
                "framework_peak_bytes": int(torch.cuda.max_memory_allocated()),
                "framework_peak_reserved_bytes": int(torch.cuda.max_memory_reserved()),
            }
    if framework == "jax" and "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return {"framework": "jax", "framework_peak_bytes": int(stats["peak_bytes_in_use"])}
    return {"framework": framework or None, "framework_peak_bytes": None}

