"""Framed msgpack messages between the host and a worker, and what each message must hold.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Frames travel on
dedicated pipes (never stdout, where frameworks print). Sizes are bounded and nothing is unpickled:
msgpack decodes to plain maps, lists, strings and numbers only.

Host -> worker, on the control pipe: one ``case`` message; the pipe then stays open as the
worker's lifeline (end of file = the host is gone). Worker -> host, on the channel: ``hello``
first, then ``phase``, ``setup``, ``compile``, ``pass``, ``memory``, ``error`` and ``done``.
Every message the host receives is checked field by field (:func:`check`): the host trusts no
frame, since a plugin's code runs in the worker and can write anything to the channel.
"""
from __future__ import annotations

import math
import os
import struct
from typing import Any, Callable, Iterator

import msgpack

PROTOCOL_VERSION = 3
MAX_FRAME_BYTES = 1 << 20  # 1 MiB: a pass row is a few hundred bytes; anything bigger is a bug
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


def _fallback(value: Any) -> Any:
    """What msgpack cannot pack natively: numpy/torch scalars become numbers, the rest text."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except Exception:  # noqa: BLE001 - a tensor of many elements: fall through to text
            pass
    return str(value)


def encode(message: dict[str, Any]) -> bytes:
    payload = msgpack.packb(message, use_bin_type=True, default=_fallback)
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, message: dict[str, Any]) -> None:
    view = memoryview(encode(message))
    while view:
        view = view[os.write(fd, view):]


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not a message (a map with a string 'type')")
    return message


class FrameDecoder:
    """Incremental: feed it bytes as they arrive, iterate the whole messages they complete. A bad
    frame raises when iteration reaches it, after every good message before it was handed out."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME_BYTES:
                raise ProtocolError(f"frame announces {size} bytes, over the {MAX_FRAME_BYTES}-byte limit")
            if len(self._buffer) < _HEADER.size + size:
                return
            payload = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
            del self._buffer[:_HEADER.size + size]
            yield _decode(payload)

    @property
    def partial(self) -> int:
        """Bytes of an unfinished frame (at end of stream: a frame cut short)."""
        return len(self._buffer)


def _read_exact(fd: int, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict[str, Any] | None:
    """One whole message from a blocking descriptor, reading nothing past it; None at a clean end
    of stream."""
    header = _read_exact(fd, _HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise ProtocolError("stream ended inside a frame header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame announces {size} bytes, over the {MAX_FRAME_BYTES}-byte limit")
    payload = _read_exact(fd, size)
    if len(payload) < size:
        raise ProtocolError(f"stream ended inside a frame ({len(payload)} of {size} bytes)")
    return _decode(payload)


# ---------------------------------------------------------------- what each message holds

def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    return _number(v) and math.isfinite(v)


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "count": ("a non-negative integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "finite": ("a finite number", _finite),
    "number": ("a number", _number),  # may be NaN or infinite: the record decides what that means
    "map": ("a map with string keys", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
}

# field -> kind; a trailing "?" allows nil. Every field is required; no other field is allowed.
SCHEMA: dict[str, dict[str, str]] = {
    "case": {"runner": "str", "case": "map", "libraries": "list"},
    "hello": {"protocol": "int", "pid": "int", "python": "str", "executable": "str", "versions": "map"},
    "phase": {"phase": "str", "pass_index": "count?"},
    "setup": {"setup_ms": "finite", "info": "map"},
    "compile": {"compile_ms": "finite", "compile_info": "map"},
    "pass": {"pass_index": "count", "warmup": "bool", "start_ts": "finite", "elapsed_ms": "number?",
             "wall_ms": "finite", "ok": "bool", "error": "str", "error_kind": "str", "traceback": "str",
             "extra": "map"},
    "memory": {"framework": "str?", "framework_peak_bytes": "count?", "worker_peak_rss_bytes": "count?",
               "extra": "map"},
    "error": {"phase": "str", "error": "str", "error_kind": "str", "traceback": "str"},
    "stopped": {"stopped_by": "str"},
    "done": {"exit_code": "int"},
}
PHASES = ("importing", "setup", "compile", "warmup", "pass")
#: Why a case's timed passes stopped (af3core.stopping).
STOP_REASONS = ("passes", "min_time", "noise", "max_time", "failure", "interrupted")


def _compile(schema: dict[str, dict[str, str]]):
    """Each message type's fields as (name, optional, what, test) tuples: checked once per frame."""
    compiled = {}
    for kind, fields in schema.items():
        compiled[kind] = tuple((field, spec.endswith("?"), *_KINDS[spec.rstrip("?")]) for field, spec in fields.items())
    return compiled


_CHECKS = _compile(SCHEMA)


def check(message: dict[str, Any]) -> dict[str, Any]:
    """The message itself when every field is there with the right type; else ProtocolError."""
    kind = message["type"]
    fields = _CHECKS.get(kind)
    if fields is None:
        raise ProtocolError(f"unknown message type {_show(kind)}")
    for field, optional, what, ok in fields:
        try:
            value = message[field]
        except KeyError:
            raise ProtocolError(f"{kind} message lacks {field!r}") from None
        if not ok(value) and not (optional and value is None):
            raise ProtocolError(f"{kind} message: {field!r} must be {what}"
                                f"{' or nil' if optional else ''}, not {_show(value)}")
    if len(message) != len(fields) + 1:
        extra = set(message) - set(SCHEMA[kind]) - {"type"}
        raise ProtocolError(f"{kind} message has unexpected field(s) {', '.join(sorted(map(str, extra)))}")
    if kind == "phase" and message["phase"] not in PHASES:
        raise ProtocolError(f"phase message: unknown phase {_show(message['phase'])}")
    if kind == "stopped" and message["stopped_by"] not in STOP_REASONS:
        raise ProtocolError(f"stopped message: unknown reason {_show(message['stopped_by'])}")
    return message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
