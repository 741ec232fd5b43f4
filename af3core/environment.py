"""Facts about the machine and software that every result file carries, so a row can be reproduced."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from af3core import __version__, gpu

# Environment variables that change the numbers; recorded with every run.
RECORDED_ENV_PREFIXES = ("CUDA_", "XLA_", "JAX_", "TF_CPP_", "TF_GPU_", "TRITON_", "PYTORCH_", "TORCH_", "NVIDIA_TF32",
                         "OMP_NUM_THREADS", "MKL_NUM_THREADS", "AF3_")
LIBRARIES = ("torch", "jax", "jaxlib", "triton", "numpy", "dm-haiku", "tokamax", "pluggy", "msgpack", "rich",
             "psutil", "nvidia-ml-py")


def recorded_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {k: v for k, v in sorted(env.items()) if k.startswith(RECORDED_ENV_PREFIXES)}


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit(path: Path | None = None, short: int = 12) -> str | None:
    """The commit of the git checkout at ``path`` (default: af3-bench's own), '-dirty' when it has
    uncommitted changes; None when git or the checkout is missing."""
    path = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", f"--short={short}", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


#: A file an exported (git-less) engine source may carry with the commit it was exported from.
COMMIT_MARKER = ".af3bench_commit"


def source_commit(root: Path) -> str | None:
    """The commit of an engine source tree: its marker file, else its own git checkout (never the
    checkout of a folder above it, such as af3-bench's own for third_party/)."""
    marker = root / COMMIT_MARKER
    if marker.is_file() and marker.read_text().strip():
        return marker.read_text().strip()
    if (root / ".git").exists():
        return git_commit(root, short=7)
    return None


def host_facts() -> dict[str, Any]:
    """The short set that goes into every summary row."""
    return {
        "host": socket.gethostname(),
        "gpu_name": gpu.device_name(0),
        "driver": gpu.driver_version(),
        "python": platform.python_version(),
        "af3bench_version": __version__,
        "af3bench_commit": git_commit(),
        **{f"{name}_version": v for name, v in library_versions().items()
           if name in ("torch", "jax", "triton")},
    }


def full_meta() -> dict[str, Any]:
    """Everything known about this machine, for meta.json."""
    vm = psutil.virtual_memory()
    return {
        **host_facts(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": vm.total,
        "executable": sys.executable,
        "gpus": [gpu.device_name(i) for i in range(gpu.device_count())],
        "libraries": library_versions(),
        "env": recorded_env(),
    }
