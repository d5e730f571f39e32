"""The sans-I/O frame codec and state table, tested without sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ember.kernel.errors import ProtocolError, UsageError
from ember.kernel.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_CONTROL_BODY,
    VERSION,
    Flag,
    Frame,
    FrameDecoder,
    MessageType,
    decode_control,
    encode_control,
    encode_frame,
    encode_header,
)
from ember.kernel.state import ConnectionState, Role, State

CALL_FRAME = encode_frame(MessageType.CALL, b"call body", serializer_id=1, request_id=7,
                          flags=Flag.ONEWAY)
HELLO_FRAME = encode_frame(MessageType.HELLO, encode_control({"protocol": 1}))


def decode_all(data: bytes, *, chunk: int | None = None, max_body: int = 1 << 20,
               tag_size: int = 0) -> list[Frame | str]:
    decoder = FrameDecoder(max_body, tag_size)
    results: list[Frame | str] = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in [*pieces, b""]:
        decoder.feed(piece)
        while True:
            result = decoder.next_frame()
            if result == FrameDecoder.NEED_DATA:
                break
            results.append(result)
            if result == FrameDecoder.EOF:
                return results
    return results


def header(*, magic: bytes = MAGIC, version: int = VERSION, message_type: int = 4,
           flags: int = 0, serializer_id: int = 1, request_id: int = 1,
           length: int = 0) -> bytes:
    return HEADER.pack(magic, version, message_type, flags, serializer_id, request_id, length)


def test_frame_whole_roundtrip() -> None:
    frames = decode_all(CALL_FRAME + HELLO_FRAME)

    assert len(frames) == 3
    call, hello, end = frames
    assert isinstance(call, Frame)
    assert call.type is MessageType.CALL
    assert call.flags == Flag.ONEWAY
    assert call.serializer_id == 1
    assert call.request_id == 7
    assert call.body == b"call body"
    assert isinstance(hello, Frame)
    assert decode_control(hello.body) == {"protocol": 1}
    assert end == FrameDecoder.EOF


def test_frame_byte_by_byte() -> None:
    frames = decode_all(CALL_FRAME + HELLO_FRAME, chunk=1)

    assert [f.type for f in frames if isinstance(f, Frame)] == [MessageType.CALL,
                                                                 MessageType.HELLO]
    assert frames[-1] == FrameDecoder.EOF


def test_frame_split_at_every_boundary() -> None:
    data = CALL_FRAME + HELLO_FRAME
    for split in range(1, len(data)):
        decoder = FrameDecoder(1 << 20)
        decoder.feed(data[:split])
        first = []
        while (result := decoder.next_frame()) != FrameDecoder.NEED_DATA:
            first.append(result)
        decoder.feed(data[split:])
        rest = []
        while (result := decoder.next_frame()) != FrameDecoder.NEED_DATA:
            rest.append(result)
        assert [f.type for f in first + rest] == [MessageType.CALL, MessageType.HELLO], split


def test_trailing_partial_frame_is_truncation() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(CALL_FRAME + HELLO_FRAME[:5])
    assert isinstance(decoder.next_frame(), Frame)
    assert decoder.next_frame() == FrameDecoder.NEED_DATA
    decoder.feed(b"")

    with pytest.raises(ProtocolError, match="closed in the middle of a frame header") as info:
        decoder.next_frame()
    assert info.value.code == "truncated"


def test_trailing_data_after_frame_waits() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(CALL_FRAME + b"EM\x01")

    assert isinstance(decoder.next_frame(), Frame)
    assert decoder.next_frame() == FrameDecoder.NEED_DATA
    assert decoder.has_partial_frame


def test_truncated_body_rejected() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=1000) + b"x" * 10)
    decoder.feed(b"")

    with pytest.raises(ProtocolError, match=r"frame body .*26 of 1016 bytes") as info:
        decoder.next_frame()
    assert info.value.code == "truncated"


@pytest.mark.parametrize(
    ("bad_header", "code", "message"),
    [
        (header(magic=b"GE"), "bad-magic", "invalid magic bytes b'GE'"),
        (header(version=2), "bad-version", "unsupported protocol version 2"),
        (header(version=0), "bad-version", "unsupported protocol version 0"),
        (header(message_type=0), "bad-type", "unknown message type 0"),
        (header(message_type=99), "bad-type", "unknown message type 99"),
        (header(flags=0x8000), "bad-flags", "flags 0x8000 are not defined for CALL"),
        (header(message_type=5, flags=Flag.ONEWAY), "bad-flags",
         "flags 0x0001 are not defined for RESULT"),
        (header(message_type=1, serializer_id=1), "bad-serializer-id",
         "HELLO frame names serializer id 1"),
        (header(message_type=4, serializer_id=0), "bad-serializer-id",
         "CALL frame names no serializer"),
        (header(length=(1 << 20) + 1), "body-too-large",
         "declares a body of 1048577 bytes, over the limit of 1048576"),
        (header(length=0xFFFFFFFF), "body-too-large", "declares a body of 4294967295 bytes"),
        (header(message_type=1, serializer_id=0, length=MAX_CONTROL_BODY + 1),
         "body-too-large", "HELLO frame declares a body of 65537 bytes"),
    ],
)
def test_malformed_header_rejected(bad_header: bytes, code: str, message: str) -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(bad_header)

    with pytest.raises(ProtocolError, match=message) as info:
        decoder.next_frame()
    assert info.value.code == code


def test_oversized_claim_keeps_no_body() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=0xFFFFFFFF) + b"abc")

    with pytest.raises(ProtocolError):
        decoder.next_frame()
    assert not decoder.has_partial_frame


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(magic=b"XX"))
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    decoder.feed(CALL_FRAME)

    with pytest.raises(ProtocolError, match="invalid magic"):
        decoder.next_frame()


def test_tag_bytes_follow_body() -> None:
    frame = CALL_FRAME + b"T" * 32
    frames = decode_all(frame, chunk=3, tag_size=32)

    first = frames[0]
    assert isinstance(first, Frame)
    assert first.body == b"call body"
    assert first.tag == b"T" * 32
    assert first.signed_bytes() == CALL_FRAME


def test_encode_rejects_oversized_body() -> None:
    with pytest.raises(ProtocolError, match="11 bytes exceeds the limit of 10 bytes"):
        encode_frame(MessageType.CALL, b"x" * 11, serializer_id=1, max_body=10)


def test_feed_after_eof_rejected() -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(b"")

    with pytest.raises(ProtocolError, match="after the end of the stream"):
        decoder.feed(b"x")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff", "invalid control body"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"a": NaN}', "non-standard JSON constant NaN"),
        (b"{", "invalid control body"),
    ],
)
def test_control_body_rejected(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_control(body)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(data)
    decoder.feed(b"")
    try:
        while decoder.next_frame() != FrameDecoder.EOF:
            pass
    except ProtocolError:
        pass


@given(st.binary(max_size=2000), st.integers(0, 0xFFFFFFFF), st.integers(1, 50))
def test_any_body_roundtrips_in_chunks(body: bytes, request_id: int, chunk: int) -> None:
    data = encode_frame(MessageType.RESULT, body, serializer_id=1, request_id=request_id)
    frames = decode_all(data, chunk=chunk)

    frame = frames[0]
    assert isinstance(frame, Frame)
    assert frame.body == body
    assert frame.request_id == request_id


def test_header_layout_is_sixteen_bytes() -> None:
    assert HEADER_SIZE == 16
    assert CALL_FRAME[:16] == b"EM\x01\x04\x00\x01\x00\x01\x00\x00\x00\x07" + struct.pack(
        "!I", 9)


def test_server_state_accepts_in_order() -> None:
    state = ConnectionState(Role.SERVER)
    state.receive(MessageType.HELLO)
    state.hello_done(authenticating=True)
    state.receive(MessageType.AUTH)
    state.authenticated()
    state.receive(MessageType.CALL)
    state.receive(MessageType.METADATA)

    assert state.state is State.READY


@pytest.mark.parametrize(
    ("role", "message_type", "message"),
    [
        (Role.SERVER, MessageType.CALL, "unexpected CALL frame for the server in state hello"),
        (Role.SERVER, MessageType.RESULT, "unexpected RESULT frame for the server"),
        (Role.CLIENT, MessageType.RESULT, "unexpected RESULT frame for the client in state"),
        (Role.CLIENT, MessageType.HELLO, "unexpected HELLO frame for the client"),
    ],
)
def test_state_rejects_out_of_order(role: Role, message_type: MessageType,
                                    message: str) -> None:
    state = ConnectionState(role)

    with pytest.raises(ProtocolError, match=message):
        state.receive(message_type)
    assert state.state is State.FAILED


def test_server_rejects_call_before_authentication() -> None:
    state = ConnectionState(Role.SERVER)
    state.receive(MessageType.HELLO)
    state.hello_done(authenticating=True)

    with pytest.raises(ProtocolError, match=r"unexpected CALL frame .* authenticating"):
        state.receive(MessageType.CALL)


# -- the body buffer: a large body written straight into the decoder ----------------


def fill_through_buffer(decoder: FrameDecoder, data: bytes, step: int) -> int:
    """Write ``data`` into the decoder's body buffer, ``step`` bytes per call.

    Returns how many bytes of ``data`` went in before get_buffer() returned None.
    """
    written = 0
    while written < len(data):
        buffer = decoder.get_buffer()
        if buffer is None:
            break
        count = min(step, len(buffer), len(data) - written)
        buffer[:count] = data[written:written + count]
        decoder.buffer_updated(count)
        written += count
    return written


def test_body_buffer_receives_large_body() -> None:
    body = bytes(range(256)) * 4096
    frame = encode_frame(MessageType.RESULT, body, serializer_id=1, request_id=3)
    decoder = FrameDecoder(1 << 20)
    decoder.feed(frame[:HEADER_SIZE + 100])
    assert decoder.next_frame() == FrameDecoder.NEED_DATA

    written = fill_through_buffer(decoder, frame[HEADER_SIZE + 100:], 7000)
    result = decoder.next_frame()

    assert written == len(body) - 100
    assert isinstance(result, Frame)
    assert result.body == body
    assert type(result.body) is bytes
    assert result.request_id == 3
    assert not decoder.has_partial_frame


def test_body_buffer_size_is_what_remains() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=1000) + bytes(300))
    decoder.next_frame()

    buffer = decoder.get_buffer()

    assert buffer is not None
    assert len(buffer) == 700
    assert decoder.bytes_needed == 700


def test_body_buffer_none_before_header() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=1000)[:10])

    assert decoder.get_buffer() is None
    assert decoder.next_frame() == FrameDecoder.NEED_DATA
    assert decoder.get_buffer() is None


def test_body_buffer_skips_small_body() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=1000))
    decoder.next_frame()

    assert decoder.get_buffer(min_body_size=1001) is None
    assert decoder.bytes_needed == 1000
    buffer = decoder.get_buffer(min_body_size=1000)
    assert buffer is not None
    assert len(buffer) == 1000


def test_body_buffer_none_when_body_buffered() -> None:
    decoder = FrameDecoder(1 << 20, tag_size=4)
    decoder.feed(header(length=10) + bytes(10))
    assert decoder.next_frame() == FrameDecoder.NEED_DATA

    assert decoder.get_buffer() is None
    assert decoder.bytes_needed == 4


def test_body_buffer_with_tag_and_next_frame() -> None:
    body = b"b" * 5000
    first = encode_frame(MessageType.RESULT, body, serializer_id=1, request_id=1) + b"TAG1"
    second = encode_frame(MessageType.RESULT, b"next", serializer_id=1, request_id=2) + b"TAG2"
    decoder = FrameDecoder(1 << 20, tag_size=4)
    decoder.feed(first[:HEADER_SIZE])
    assert decoder.next_frame() == FrameDecoder.NEED_DATA

    fill_through_buffer(decoder, body, 1024)
    assert decoder.get_buffer() is None
    assert decoder.next_frame() == FrameDecoder.NEED_DATA
    decoder.feed(b"TAG1" + second)
    results = [decoder.next_frame(), decoder.next_frame(), decoder.next_frame()]

    assert isinstance(results[0], Frame)
    assert results[0].body == body
    assert results[0].tag == b"TAG1"
    assert isinstance(results[1], Frame)
    assert results[1].body == b"next"
    assert results[1].tag == b"TAG2"
    assert results[2] == FrameDecoder.NEED_DATA


def test_feed_fills_allocated_body_buffer() -> None:
    body = bytes(range(200)) * 50
    frame = encode_frame(MessageType.RESULT, body, serializer_id=1, request_id=1)
    following = encode_frame(MessageType.RESULT, b"after", serializer_id=1, request_id=2)
    decoder = FrameDecoder(1 << 20)
    decoder.feed(frame[:HEADER_SIZE + 10])
    decoder.next_frame()
    assert decoder.get_buffer() is not None

    decoder.feed(frame[HEADER_SIZE + 10:] + following)
    first, second = decoder.next_frame(), decoder.next_frame()

    assert isinstance(first, Frame)
    assert first.body == body
    assert isinstance(second, Frame)
    assert second.body == b"after"


def test_body_buffer_never_for_rejected_header() -> None:
    decoder = FrameDecoder(max_body=1000)
    decoder.feed(header(length=1001))

    with pytest.raises(ProtocolError, match="over the limit of 1000 bytes"):
        decoder.next_frame()
    with pytest.raises(ProtocolError, match="over the limit of 1000 bytes"):
        decoder.get_buffer()


def test_body_buffer_control_frame_capped() -> None:
    decoder = FrameDecoder(max_body=1 << 30)
    decoder.feed(header(message_type=MessageType.HELLO, serializer_id=0,
                        length=MAX_CONTROL_BODY + 1))

    with pytest.raises(ProtocolError) as caught:
        decoder.next_frame()

    assert caught.value.code == "body-too-large"


def test_body_buffer_truncated_stream_rejected() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=5000))
    decoder.next_frame()
    fill_through_buffer(decoder, bytes(3000), 3000)
    decoder.feed(b"")

    assert decoder.get_buffer() is None
    with pytest.raises(ProtocolError, match=r"3016 of 5016 bytes received") as caught:
        decoder.next_frame()
    assert caught.value.code == "truncated"


def test_body_buffer_truncated_inside_tag() -> None:
    decoder = FrameDecoder(1 << 20, tag_size=8)
    decoder.feed(header(length=100))
    decoder.next_frame()
    fill_through_buffer(decoder, bytes(100), 100)
    decoder.feed(b"1234")
    decoder.feed(b"")

    with pytest.raises(ProtocolError, match=r"120 of 124 bytes received"):
        decoder.next_frame()


@pytest.mark.parametrize("nbytes", [0, -1, 701, 1.5])
def test_buffer_updated_rejects_bad_count(nbytes: object) -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(header(length=1000) + bytes(300))
    decoder.next_frame()
    decoder.get_buffer()

    with pytest.raises(UsageError, match="expected an int from 1 to 700"):
        decoder.buffer_updated(nbytes)  # type: ignore[arg-type]


def test_buffer_updated_without_buffer() -> None:
    decoder = FrameDecoder(1 << 20)

    with pytest.raises(UsageError, match="expected an int from 1 to 0"):
        decoder.buffer_updated(1)


@given(body=st.binary(min_size=0, max_size=3000), split=st.integers(0, 3000),
       step=st.integers(1, 900), tag=st.binary(min_size=0, max_size=16))
def test_any_body_through_buffer(body: bytes, split: int, step: int, tag: bytes) -> None:
    frame = encode_frame(MessageType.RESULT, body, serializer_id=2, request_id=5) + tag
    split = min(split, len(frame))
    decoder = FrameDecoder(1 << 20, tag_size=len(tag))
    if split:
        decoder.feed(frame[:split])
    result = decoder.next_frame()

    # Bytes go through the body buffer whenever the decoder offers one, else through
    # feed(), so every mix of the two paths is exercised.
    position = split
    while not isinstance(result, Frame):
        position += fill_through_buffer(decoder, frame[position:], step)
        result = decoder.next_frame()
        if not isinstance(result, Frame):
            decoder.feed(frame[position:position + step])
            position += step
            result = decoder.next_frame()

    assert result.body == body
    assert result.tag == tag


def test_encode_header_is_frame_prefix() -> None:
    frame = encode_frame(MessageType.CALL, b"abc", serializer_id=1, request_id=9,
                         flags=Flag.ONEWAY)

    assert encode_header(MessageType.CALL, 3, serializer_id=1, request_id=9,
                         flags=Flag.ONEWAY) == frame[:HEADER_SIZE]


def test_encode_header_rejects_large_body() -> None:
    with pytest.raises(ProtocolError, match="11 bytes exceeds the limit of 10 bytes"):
        encode_header(MessageType.RESULT, 11, serializer_id=1, max_body=10)
