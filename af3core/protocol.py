"""Framed msgpack messages between a worker and the host.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Frames travel on a
dedicated pipe (never stdout, where frameworks print). Sizes are bounded and nothing is unpickled:
msgpack decodes to plain dicts, lists, strings and numbers only.
"""
from __future__ import annotations

import os
import struct
from typing import Any, BinaryIO

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20  # 1 MiB: a pass row is a few hundred bytes; anything bigger is a bug
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: dict[str, Any]) -> bytes:
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, message: dict[str, Any]) -> None:
    data = encode(message)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == n:
                return None  # clean end of stream between frames
            raise ProtocolError(f"stream ended inside a frame ({n - remaining} of {n} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """Next message, or None at a clean end of stream. Raises ProtocolError on a bad frame."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame announces {size} bytes, over the {MAX_FRAME_BYTES}-byte limit")
    payload = _read_exact(stream, size)
    if payload is None:
        raise ProtocolError("stream ended after a frame header")
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("frame is not a message (a map with a string 'type')")
    return message
