"""The result files, one writer per format; writers only serialise what the record gives them.

- ``<plugin>.jsonl``: one row per pass, appended and flushed as each arrives (a crash loses nothing);
- ``summary.csv``: one row per case; ``meta.json``: the run's command line and environment.
Output is always strict JSON / valid UTF-8: NaN and infinities become null, text that is not
valid Unicode (bytes in --notes that are not UTF-8) gets replacement characters. A write that
fails (disk full) raises ResultsWriteError; a failed append leaves no partial line behind.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from af3core.errors import ResultsWriteError

SUMMARY_FILE = "summary.csv"
META_FILE = "meta.json"


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (undecodable bytes from the command line) become
    U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # bytes the command line could not decode come back as they were, then get replaced
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def plain(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict):
        return {clean_text(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return clean_text(str(value))


def dumps(value: Any, **kwargs) -> str:
    """Strict JSON text in valid Unicode."""
    return encode(value, **kwargs).decode("utf-8")


def encode(value: Any, **kwargs) -> bytes:
    """Strict JSON as UTF-8 bytes; the fast path skips the cleaning copy when nothing needs it."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, **kwargs).encode("utf-8")
    except (ValueError, TypeError):  # NaN/Inf, lone surrogates (UnicodeEncodeError), unknown types
        return json.dumps(plain(value), allow_nan=False, ensure_ascii=False, **kwargs).encode("utf-8")


def _failed(path: Path, exc: OSError) -> ResultsWriteError:
    return ResultsWriteError(f"cannot write {path}: {exc.strerror or exc}")


class JsonlWriter:
    """Appends rows to ``<plugin>.jsonl`` in ``out_dir``, each flushed to the OS at once."""

    def __init__(self, out_dir: Path, on_new_file: Callable[[Path], None] = lambda path: None):
        self.out_dir = out_dir
        self.on_new_file = on_new_file
        self._fds: dict[str, int] = {}
        self._plugins: list[str] = []  # every plugin written to, kept after close()

    def path(self, plugin: str) -> Path:
        return self.out_dir / f"{plugin}.jsonl"

    def paths(self) -> list[Path]:
        """The files written to (also after close)."""
        return [self.path(plugin) for plugin in self._plugins]

    def write(self, plugin: str, row: dict[str, Any]) -> None:
        data = encode(row) + b"\n"
        try:
            fd = self._fds.get(plugin)
            if fd is None:
                self.on_new_file(self.path(plugin))
                fd = self._fds[plugin] = os.open(self.path(plugin), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._plugins.append(plugin)
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                os.ftruncate(fd, end)  # no partial line: readers see whole rows only
                raise
        except OSError as exc:
            raise _failed(self.path(plugin), exc) from None

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


def _replace(path: Path, write: Callable[[Any], None], newline: str | None = None) -> Path:
    """Write to a temporary file beside ``path``, then rename: a failed write keeps the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise _failed(path, exc) from None
    return path


def reorder_jsonl(path: Path, order: dict[str, int]) -> Path:
    """Rewrite ``path`` with its rows sorted by their case's place in ``order`` (case_id -> index),
    each case's rows in the order they were written; a line that is not a row keeps its place at
    the end. Atomic: a failure keeps the file as it was."""
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError as exc:
        raise _failed(path, exc) from None

    def place(item: tuple[int, bytes]) -> tuple[int, int]:
        index, line = item
        try:
            case = json.loads(line).get("case_id")
        except (ValueError, AttributeError):
            case = None
        return order.get(case, len(order)), index

    ordered = [line.decode("utf-8", errors="replace") for _, line in sorted(enumerate(lines), key=place)]
    return _replace(path, lambda f: f.writelines(ordered))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (dict, list)):
        return dumps(value, sort_keys=True)
    if isinstance(value, str):
        return clean_text(value)
    return value


def write_summary(out_dir: Path, rows: list[dict[str, Any]], leading: list[str]) -> Path:
    """summary.csv: ``leading`` columns first, then every other column any row has."""
    columns = list(leading)
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})

    return _replace(out_dir / SUMMARY_FILE, write, newline="")


def write_meta(out_dir: Path, meta: dict[str, Any]) -> Path:
    return _replace(out_dir / META_FILE, lambda f: f.write(dumps(meta, indent=2) + "\n"))


def read_summary(out_dir: Path) -> list[dict[str, str]]:
    with open(out_dir / SUMMARY_FILE, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))
