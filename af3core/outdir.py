"""The results folder of one run: claimed under a lock, its files listed in a manifest.

- A run holds an exclusive lock on ``.af3-lock`` in its folder until it exits (the kernel drops
  it even if the run is killed): a second run into the same folder exits 2 instead of mixing rows.
- Default folders are ``results/<timestamp>`` made unique with a suffix when two runs start in
  the same second.
- Every file a run writes is listed in ``.af3-manifest`` as it is created; ``--force`` deletes
  those (or, for a folder without a manifest, only the fixed names af3 writes), never a user's
  own files.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from af3core.errors import ResultsWriteError, UsageError
from af3core.writers import META_FILE, SUMMARY_FILE

LOCK_FILE = ".af3-lock"
MANIFEST_FILE = ".af3-manifest"
LOGS = "logs"
#: What a run writes under fixed names (the rest is listed in its manifest).
FIXED_NAMES = (SUMMARY_FILE, META_FILE, "time_vs_seq_len.png", "memory_vs_seq_len.png")


class OutputFolder:
    def __init__(self, path: Path, lock_fd: int):
        self.path = path
        self._lock_fd = lock_fd
        self._listed: set[str] = set()

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    def track(self, path: Path) -> None:
        """List ``path`` (inside the folder) in the manifest before it is first written."""
        relative = path.relative_to(self.path).as_posix()
        if relative in self._listed:
            return
        try:
            with open(self.path / MANIFEST_FILE, "a", encoding="utf-8") as f:
                f.write(relative + "\n")
        except OSError as exc:
            raise ResultsWriteError(f"cannot write {self.path / MANIFEST_FILE}: {exc.strerror or exc}") from None
        self._listed.add(relative)

    def release(self) -> None:
        try:
            os.close(self._lock_fd)
        except OSError:
            pass


def _lock(path: Path) -> int:
    """An exclusive, non-blocking lock on the folder's lock file; UsageError when another run holds it."""
    import fcntl

    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UsageError(f"--out {path}: another af3 bench (pid {holder}) is writing there; wait for it or "
                         "choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _previous_files(path: Path) -> list[Path]:
    """What an earlier af3 run wrote in ``path``: its manifest's entries, else the fixed names."""
    manifest = path / MANIFEST_FILE
    names: list[str] = []
    if manifest.is_file():
        names = [line.strip() for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    names += list(FIXED_NAMES)
    base = path.resolve()
    files = []
    for name in dict.fromkeys(names):
        candidate = (path / name).resolve()
        if candidate.parent == base or candidate.parent == base / LOGS:  # never outside the folder
            files.append(path / name)
    return files


def _clear_previous(path: Path) -> None:
    for f in _previous_files(path):
        if f.is_file() and not f.is_symlink():
            f.unlink()
    for name in (MANIFEST_FILE,):
        (path / name).unlink(missing_ok=True)
    logs = path / LOGS
    if logs.is_dir() and not any(logs.iterdir()):
        logs.rmdir()


def _user_entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)


def _claim_new(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``...: the first that this process creates itself."""
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"{base}: could not find a free folder name")


def claim(out: str | None, force: bool) -> OutputFolder:
    """The folder for this run, locked; UsageError (exit 2) when it cannot be used."""
    try:
        if out is None:
            path = _claim_new(Path("results") / time.strftime("%Y%m%d-%H%M%S"))
        else:
            path = Path(out)
            if path.exists() and not path.is_dir():
                raise UsageError(f"--out {path}: exists and is not a folder")
            path.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path)
    except OSError as exc:
        raise UsageError(f"--out {out or 'results/'}: cannot write there ({exc.strerror or exc})") from None
    try:
        entries = _user_entries(path)
        if entries and not force:
            raise UsageError(f"--out {path}: folder exists and is not empty (use --force to replace an earlier "
                             "run's results)")
        if force:
            _clear_previous(path)
        probe = path / ".af3-write-test"
        probe.write_text("")
        probe.unlink()
    except UsageError:
        os.close(lock_fd)
        raise
    except OSError as exc:
        os.close(lock_fd)
        raise UsageError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None
    return OutputFolder(path, lock_fd)


def remove_if_empty(folder: OutputFolder) -> None:
    """After a run that wrote nothing (a usage error found late), leave no empty folder behind."""
    if not _user_entries(folder.path) or set(_user_entries(folder.path)) <= {MANIFEST_FILE}:
        shutil.rmtree(folder.path, ignore_errors=True)
