"""Frames and messages: the codec, the incremental decoder, and the field checks that keep a bad
frame from reaching the results."""
import math
import os

import msgpack
import pytest

from af3core import protocol

PASS = {"type": "pass", "pass_index": 0, "warmup": False, "start_ts": 1.0, "elapsed_ms": 1.5, "wall_ms": 1.6,
        "ok": True, "error": "", "error_kind": "", "traceback": "", "extra": {"floor_ms": 0.1}}


def test_round_trip_in_pieces():
    data = protocol.encode({"type": "done", "exit_code": 0}) + protocol.encode(PASS)
    decoder = protocol.FrameDecoder()
    got = []
    for i in range(len(data)):  # one byte at a time: frames split anywhere still decode
        got += decoder.feed(data[i:i + 1])
    assert got == [{"type": "done", "exit_code": 0}, PASS] and decoder.partial == 0


def test_read_message_over_a_real_pipe_reads_nothing_past_it():
    r, w = os.pipe()
    protocol.write_frame(w, {"type": "done", "exit_code": 3})
    os.write(w, b"lifeline")
    os.close(w)
    assert protocol.read_message(r) == {"type": "done", "exit_code": 3}
    assert os.read(r, 100) == b"lifeline"
    os.close(r)


def test_numpy_like_scalars_are_packed_as_numbers():
    class Scalar:
        def item(self):
            return 2.5

    [message] = protocol.FrameDecoder().feed(protocol.encode({"type": "x", "v": Scalar(), "o": object()}))
    assert message["v"] == 2.5 and isinstance(message["o"], str)


def test_encoding_an_oversized_message_is_refused():
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.encode({"type": "x", "blob": "a" * (protocol.MAX_FRAME_BYTES + 1)})


def test_oversized_header_is_rejected_before_the_payload_arrives():
    with pytest.raises(protocol.ProtocolError, match="over the"):
        list(protocol.FrameDecoder().feed((protocol.MAX_FRAME_BYTES + 1).to_bytes(4, "big")))


@pytest.mark.parametrize("payload", [b"\xc1\xc1\xc1", msgpack.packb([1, 2]), msgpack.packb({"no_type": 1}),
                                     msgpack.packb({"type": 5}), msgpack.packb({1: 2, "type": "x"})])
def test_garbage_and_non_messages_are_rejected(payload):
    with pytest.raises(protocol.ProtocolError):
        list(protocol.FrameDecoder().feed(len(payload).to_bytes(4, "big") + payload))


def test_a_stream_cut_inside_a_frame_is_an_error():
    r, w = os.pipe()
    os.write(w, protocol.encode(PASS)[:-3])
    os.close(w)
    with pytest.raises(protocol.ProtocolError, match="inside a frame"):
        protocol.read_message(r)
    os.close(r)


def test_a_well_formed_pass_passes_the_check():
    assert protocol.check(dict(PASS)) == PASS
    assert protocol.check({**PASS, "elapsed_ms": math.nan})["elapsed_ms"] != 0  # NaN is the record's to judge


@pytest.mark.parametrize("change, message", [
    ({"elapsed_ms": "fast"}, "'elapsed_ms' must be a number"),
    ({"wall_ms": math.inf}, "'wall_ms' must be a finite number"),
    ({"extra": [1, 2]}, "'extra' must be a map"),
    ({"ok": 1}, "'ok' must be true or false"),
    ({"pass_index": -1}, "non-negative integer"),
    ({"pass_index": True}, "non-negative integer"),
    ({"surprise": 1}, "unexpected field"),
])
def test_wrongly_typed_fields_are_protocol_errors(change, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.check({**PASS, **change})


def test_missing_fields_and_unknown_types_are_protocol_errors():
    incomplete = dict(PASS)
    del incomplete["ok"]
    with pytest.raises(protocol.ProtocolError, match="lacks 'ok'"):
        protocol.check(incomplete)
    with pytest.raises(protocol.ProtocolError, match="unknown message type"):
        protocol.check({"type": "surprise"})
    with pytest.raises(protocol.ProtocolError, match="unknown phase"):
        protocol.check({"type": "phase", "phase": "dancing", "pass_index": None})
