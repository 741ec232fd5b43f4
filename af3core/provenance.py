"""What a result needs to be reproduced: the machine, the software and its versions, af3-bench's own
commit, and the environment variables that change the numbers."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from af3core import __version__, devices

# Environment variables that change the numbers; recorded with every run.
RECORDED_ENV_PREFIXES = ("CUDA_", "XLA_", "JAX_", "TF_CPP_", "TF_GPU_", "TRITON_", "PYTORCH_", "TORCH_", "NVIDIA_TF32",
                         "OMP_NUM_THREADS", "MKL_NUM_THREADS", "AF3_")
#: af3-bench's own libraries and the frameworks; plugins add theirs (Plugin.libraries).
CORE_LIBRARIES = ("torch", "jax", "jaxlib", "triton", "numpy", "pluggy", "msgpack", "rich", "psutil",
                  "nvidia-ml-py")
#: A file an exported (git-less) engine source may carry with the commit it was exported from.
COMMIT_MARKER = ".af3bench_commit"
#: The folder holding af3core: the root of an af3-bench checkout when it runs from one.
OWN_ROOT = Path(__file__).resolve().parent.parent


def recorded_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {k: v for k, v in sorted(env.items()) if k.startswith(RECORDED_ENV_PREFIXES)}


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    versions = {}
    for name in dict.fromkeys([*CORE_LIBRARIES, *extra]):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git(path: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(root: Path, short: int = 12) -> str | None:
    """The commit of the git checkout whose top folder is ``root``, '-dirty' with uncommitted
    changes; None when ``root`` is not the top of a checkout (a copy inside another repository
    must not record that repository's commit)."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None
    commit = _git(root, "rev-parse", f"--short={short}", "HEAD")
    if commit is None:
        return None
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit + ("-dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def own_commit() -> str | None:
    """af3-bench's own commit, when it runs from its own checkout."""
    return git_commit(OWN_ROOT)


def source_commit(root: Path) -> str | None:
    """The commit of an engine source tree: its marker file, else its own git checkout (never the
    checkout of a folder above it, such as af3-bench's own for third_party/)."""
    marker = root / COMMIT_MARKER
    if marker.is_file() and marker.read_text().strip():
        return marker.read_text().strip()
    if (root / ".git").exists():
        return git_commit(root, short=7)
    return None


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_facts() -> dict[str, Any]:
    """The short set that goes into every summary row."""
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "driver": devices.driver_version(),
        "python": platform.python_version(),
        "af3bench_version": __version__,
        "af3bench_commit": own_commit(),
        **{f"{name}_version": v for name, v in library_versions().items() if name in ("torch", "jax", "triton")},
    }


def full_meta(libraries: Iterable[str] = ()) -> dict[str, Any]:
    """Everything known about this machine, for meta.json."""
    import psutil

    return {
        **host_facts(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "executable": sys.executable,
        "gpus": [{"index": i, "name": devices.gpu_name(i), "uuid": devices.gpu_uuid(i)}
                 for i in range(devices.gpu_count())],
        "libraries": library_versions(libraries),
        "env": recorded_env(),
    }
