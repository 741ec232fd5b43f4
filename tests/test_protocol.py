import io
import os

import msgpack
import pytest

from af3core import protocol


def frames(*messages) -> io.BytesIO:
    return io.BytesIO(b"".join(protocol.encode(m) for m in messages))


def test_round_trip_keeps_order_and_types():
    stream = frames({"type": "hello", "protocol": 1, "pid": 7}, {"type": "pass", "elapsed_ms": 1.5, "ok": True})
    assert protocol.read_frame(stream) == {"type": "hello", "protocol": 1, "pid": 7}
    assert protocol.read_frame(stream) == {"type": "pass", "elapsed_ms": 1.5, "ok": True}
    assert protocol.read_frame(stream) is None  # clean end


def test_write_frame_over_a_real_pipe():
    r, w = os.pipe()
    protocol.write_frame(w, {"type": "phase", "phase": "setup"})
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        assert protocol.read_frame(stream)["phase"] == "setup"
        assert protocol.read_frame(stream) is None


def test_encoding_an_oversized_message_is_refused():
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.encode({"type": "x", "blob": "a" * (protocol.MAX_FRAME_BYTES + 1)})


def test_oversized_header_is_rejected_before_reading_the_payload():
    stream = io.BytesIO((protocol.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(protocol.ProtocolError, match="over the"):
        protocol.read_frame(stream)


@pytest.mark.parametrize("payload", [b"\xc1\xc1\xc1", msgpack.packb([1, 2]), msgpack.packb({"no_type": 1}),
                                     msgpack.packb({"type": 5})])
def test_garbage_and_non_messages_are_rejected(payload):
    stream = io.BytesIO(len(payload).to_bytes(4, "big") + payload)
    with pytest.raises(protocol.ProtocolError):
        protocol.read_frame(stream)


def test_truncated_frame_is_an_error_not_a_clean_end():
    data = protocol.encode({"type": "pass"})
    with pytest.raises(protocol.ProtocolError, match="inside a frame"):
        protocol.read_frame(io.BytesIO(data[:-2]))


def test_nothing_is_unpickled():
    # msgpack's ext types would be the route to arbitrary objects; they must not decode to anything live.
    payload = msgpack.packb({"type": "x", "obj": msgpack.ExtType(1, b"cos\nsystem\n")})
    message = protocol.read_frame(io.BytesIO(len(payload).to_bytes(4, "big") + payload))
    assert isinstance(message["obj"], msgpack.ExtType)
