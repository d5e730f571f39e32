"""ember's wire format, without I/O: bytes in, frames out, and back.

Every message is one frame: a fixed 16-byte header, a body, and a tag whose size the
session fixes after authentication (0 bytes without an authenticator). All integers are
big-endian and unsigned::

    offset  size  field
    0       2     magic, the bytes 0x45 0x4D ("EM")
    2       1     protocol version, currently 1
    3       1     message type (MessageType)
    4       2     flags (Flag); bits not defined for the type must be zero
    6       2     serializer wire id; 0 means a protocol control body
    8       4     request id, chosen by the client, echoed by the server
    12      4     body length in bytes
    16      n     body
    16+n    t     tag, computed by the session over header and body

:class:`FrameDecoder` checks each header field, and the body length against its limit,
before it keeps a single body byte, so a peer cannot make it allocate memory by
claiming a large frame. Only then may it allocate the body's buffer at its declared size,
which a caller can fill straight from the stream (:meth:`FrameDecoder.get_buffer`). Any
violation raises :class:`~ember.kernel.errors.ProtocolError` with a ``code`` naming the
field, and the decoder stays broken afterwards: a connection that saw one malformed frame
is closed, never resynchronised.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from ember.kernel.errors import ProtocolError, UsageError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER",
    "HEADER_SIZE",
    "CONTROL_SERIALIZER_ID",
    "MAX_CONTROL_BODY",
    "MAX_REQUEST_ID",
    "MessageType",
    "Flag",
    "Frame",
    "FrameDecoder",
    "encode_frame",
    "encode_header",
    "encode_control",
    "decode_control",
]

MAGIC: Final = b"EM"
VERSION: Final = 1
HEADER: Final = struct.Struct("!2sBBHHII")
HEADER_SIZE: Final = HEADER.size
CONTROL_SERIALIZER_ID: Final = 0
#: Control bodies (hello, welcome, errors, authentication messages) are small by
#: nature; this bound applies whatever the configured message size.
MAX_CONTROL_BODY: Final = 64 * 1024
MAX_REQUEST_ID: Final = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    """Frame kinds. The comment after each names the sender and the body."""

    HELLO = 1  # client: control body, the client's offer (protocol, serializer, authenticator)
    WELCOME = 2  # server: control body, the accepted settings
    AUTH = 3  # either: raw bytes of the authenticator's handshake
    CALL = 4  # client: serialized [object_id, member, args, kwargs]
    RESULT = 5  # server: serialized return value of the request with the same id
    EXCEPTION = 6  # server: serialized description of the exception the call raised
    ERROR = 7  # either: control body {"code", "message"}; request id 0 ends the connection
    METADATA = 8  # client: serialized object_id; the reply is a RESULT listing exposed members


class Flag(enum.IntFlag):
    """Header flag bits."""

    NONE = 0
    ONEWAY = 0x0001  # CALL only: the client expects no reply
    GET_ATTRIBUTE = 0x0002  # CALL only: read the exposed property named by member
    SET_ATTRIBUTE = 0x0004  # CALL only: write the exposed property named by member


_FLAGS_ALLOWED: Final = {
    MessageType.CALL: Flag.ONEWAY | Flag.GET_ATTRIBUTE | Flag.SET_ATTRIBUTE,
}
_GET_AND_SET: Final = int(Flag.GET_ATTRIBUTE | Flag.SET_ATTRIBUTE)
_CONTROL_TYPES: Final = frozenset(
    {MessageType.HELLO, MessageType.WELCOME, MessageType.AUTH, MessageType.ERROR}
)
_KNOWN_TYPES: Final = frozenset(int(t) for t in MessageType)
# Enum construction by value is slow on the per-frame path, so frames use these lookups.
_TYPES: Final = {int(t): t for t in MessageType}
_COMMON_FLAGS: Final = {value: Flag(value) for value in range(8)}


def _flags(value: int) -> Flag:
    flag = _COMMON_FLAGS.get(value)
    return flag if flag is not None else Flag(value)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: header fields, body, and the tag that followed the body."""

    type: MessageType
    flags: Flag
    serializer_id: int
    request_id: int
    body: bytes
    tag: bytes = b""

    @property
    def is_control(self) -> bool:
        return self.serializer_id == CONTROL_SERIALIZER_ID

    def signed_bytes(self) -> bytes:
        """Rebuild the header plus body that the tag covers."""
        return encode_frame(self.type, self.body, serializer_id=self.serializer_id,
                            request_id=self.request_id, flags=self.flags)


def encode_frame(
    message_type: MessageType,
    body: bytes,
    *,
    serializer_id: int = CONTROL_SERIALIZER_ID,
    request_id: int = 0,
    flags: Flag = Flag.NONE,
    max_body: int = 0xFFFFFFFF,
) -> bytes:
    """Return header plus body, ready for a tag to be appended.

    Raises :class:`~ember.kernel.errors.ProtocolError` (code ``"body-too-large"``) if
    ``body`` is longer than ``max_body``, so an oversized message fails locally instead
    of being sent and rejected by the peer.
    """
    header = encode_header(message_type, len(body), serializer_id=serializer_id,
                           request_id=request_id, flags=flags, max_body=max_body)
    return header + body


def encode_header(
    message_type: MessageType,
    body_length: int,
    *,
    serializer_id: int = CONTROL_SERIALIZER_ID,
    request_id: int = 0,
    flags: Flag = Flag.NONE,
    max_body: int = 0xFFFFFFFF,
) -> bytes:
    """Return the header of a frame whose body is ``body_length`` bytes long.

    A sender of a large body writes this header and the body as separate buffers, which
    saves joining them into a new one. Raises like :func:`encode_frame`.
    """
    if body_length > max_body:
        raise ProtocolError(
            f"message body of {body_length} bytes exceeds the limit of {max_body} bytes; "
            "send less data per call or raise max_message_size on both sides",
            code="body-too-large",
        )
    return HEADER.pack(MAGIC, VERSION, message_type, flags, serializer_id, request_id,
                       body_length)


class FrameDecoder:
    """Incremental frame parser: feed bytes, then take frames until it needs more.

    ``max_body`` bounds non-control bodies; control bodies are bounded by
    :data:`MAX_CONTROL_BODY`. ``tag_size`` is the number of tag bytes after each body; the
    connection raises it once the session is established. Feeding ``b""`` marks the end
    of the stream: a stream that ends inside a frame is a protocol error, and one that
    ends between frames makes :meth:`next_frame` return :data:`FrameDecoder.EOF`.

    Bytes arrive in one of two ways, which may be mixed. :meth:`feed` copies them into
    the decoder. For a large body, :meth:`get_buffer` instead hands out the body's own
    buffer, allocated once at its declared size, which the caller fills straight from
    the stream and reports with :meth:`buffer_updated`. This saves gathering the body in
    pieces and growing a buffer for it.
    """

    NEED_DATA: Final = "need-data"
    EOF: Final = "eof"

    __slots__ = ("_body", "_body_filled", "_buffer", "_ended", "_failed", "_header",
                 "max_body", "tag_size")

    def __init__(self, max_body: int, tag_size: int = 0) -> None:
        self.max_body = max_body
        self.tag_size = tag_size
        # Bytes not yet part of a frame: the header, then the body and tag of a frame
        # read through feed() alone. With a body buffer, the tag and what follows it.
        self._buffer = bytearray()
        self._header: tuple[int, int, int, int, int] | None = None
        # The current frame's body at its final size, once get_buffer() allocated it.
        self._body: bytearray | None = None
        self._body_filled = 0
        self._ended = False
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed the stream."""
        if self._ended and data:
            raise ProtocolError("data fed after the end of the stream", code="after-eof")
        if not data:
            self._ended = True
            return

        body = self._body
        if body is None or self._body_filled == len(body):
            self._buffer += data
            return
        # A body buffer is being filled: its share of data goes there, the rest (tag
        # and later frames) into the buffer.
        count = min(len(body) - self._body_filled, len(data))
        view = memoryview(data)
        body[self._body_filled:self._body_filled + count] = view[:count]
        self._body_filled += count
        if count < len(data):
            self._buffer += view[count:]

    def get_buffer(self, min_body_size: int = 0) -> memoryview | None:
        """Return the unfilled part of the current frame's body buffer, or ``None``.

        The buffer exists only once :meth:`next_frame` has parsed a header that passed
        every check, so its size is a length already checked against the limit. The
        first call allocates it, for a body of at least ``min_body_size`` bytes, and
        moves the body bytes already fed into it. Write received bytes to the start of
        the returned view, then call :meth:`buffer_updated` with their count. Returns
        ``None`` when there is no header yet, for a shorter body, when the body is
        complete, or after the end of the stream; the caller then uses :meth:`feed`.
        Raises the decoder's earlier ProtocolError, if any.
        """
        if self._failed is not None:
            raise self._failed
        header = self._header
        if header is None or self._ended:
            return None

        body = self._body
        if body is None:
            body_length = header[4]
            buffered = len(self._buffer) - HEADER_SIZE
            if buffered >= body_length or body_length < min_body_size:
                return None
            body = bytearray(body_length)
            body[:buffered] = memoryview(self._buffer)[HEADER_SIZE:]
            self._buffer.clear()
            self._body = body
            self._body_filled = buffered

        if self._body_filled == len(body):
            return None
        return memoryview(body)[self._body_filled:]

    def buffer_updated(self, nbytes: int) -> None:
        """Record that ``nbytes`` bytes were written at the start of the last buffer.

        Raises :class:`~ember.kernel.errors.UsageError` if no buffer was handed out or
        ``nbytes`` is not between 1 and the buffer's size; report the end of the stream
        with ``feed(b"")`` instead.
        """
        body = self._body
        room = 0 if body is None else len(body) - self._body_filled
        if type(nbytes) is not int or not 0 < nbytes <= room:
            raise UsageError(
                f"invalid nbytes {nbytes!r} for buffer_updated(): expected an int from 1 "
                f"to {room}, the size of the buffer from get_buffer()"
            )
        self._body_filled += nbytes

    @property
    def bytes_needed(self) -> int:
        """Bytes still missing for the frame being read (a read-size hint, at least 1)."""
        return max(1, self._expected_size() - self._received_size())

    @property
    def has_partial_frame(self) -> bool:
        return bool(self._buffer) or self._body is not None

    def next_frame(self) -> Frame | str:
        """Return the next complete frame, :attr:`NEED_DATA` or :attr:`EOF`.

        Raises :class:`~ember.kernel.errors.ProtocolError` for a malformed frame, and
        again on every later call.
        """
        if self._failed is not None:
            raise self._failed
        try:
            return self._next_frame()
        except ProtocolError as error:
            self._failed = error
            self._buffer.clear()
            self._body = None
            raise

    def _next_frame(self) -> Frame | str:
        if self._header is None:
            if len(self._buffer) < HEADER_SIZE:
                return self._incomplete("header")
            self._header = self._parse_header()

        message_type, flags, serializer_id, request_id, body_length = self._header
        body_buffer = self._body
        if body_buffer is None:
            frame_end = HEADER_SIZE + body_length + self.tag_size
            if len(self._buffer) < frame_end:
                return self._incomplete("body")
            body_end = HEADER_SIZE + body_length
            body = bytes(self._buffer[HEADER_SIZE:body_end])
            tag = bytes(self._buffer[body_end:frame_end])
            del self._buffer[:frame_end]
        else:
            if self._body_filled < body_length or len(self._buffer) < self.tag_size:
                return self._incomplete("body")
            # NOTE: Frame.body and Serializer.loads() take bytes, so the body is copied
            # once more here; a bytearray body would need every serializer to accept one.
            body = bytes(body_buffer)
            tag = bytes(self._buffer[:self.tag_size])
            del self._buffer[:self.tag_size]
            self._body = None
            self._body_filled = 0

        self._header = None
        return Frame(_TYPES[message_type], _flags(flags), serializer_id, request_id, body, tag)

    def _incomplete(self, part: str) -> str:
        if not self._ended:
            return self.NEED_DATA
        if not self._buffer and self._header is None:
            return self.EOF
        raise ProtocolError(
            f"connection closed in the middle of a frame {part} "
            f"({self._received_size()} of {self._expected_size()} bytes received)",
            code="truncated",
        )

    def _received_size(self) -> int:
        if self._body is None:
            return len(self._buffer)
        return HEADER_SIZE + self._body_filled + len(self._buffer)

    def _expected_size(self) -> int:
        if self._header is None:
            return HEADER_SIZE
        return HEADER_SIZE + self._header[4] + self.tag_size

    def _parse_header(self) -> tuple[int, int, int, int, int]:
        magic, version, message_type, flags, serializer_id, request_id, body_length = (
            HEADER.unpack_from(self._buffer, 0)
        )
        if magic != MAGIC:
            raise ProtocolError(
                f"invalid magic bytes {bytes(magic)!r}, expected {MAGIC!r}: the peer does not "
                "speak the ember protocol",
                code="bad-magic",
            )
        if version != VERSION:
            raise ProtocolError(
                f"unsupported protocol version {version}; this side speaks version {VERSION}",
                code="bad-version",
            )
        if message_type not in _KNOWN_TYPES:
            raise ProtocolError(f"unknown message type {message_type}", code="bad-type")

        kind = MessageType(message_type)
        # Plain ints here: the complement of an IntFlag covers only its defined bits.
        unknown_flags = flags & ~int(_FLAGS_ALLOWED.get(kind, Flag.NONE)) & 0xFFFF
        if unknown_flags:
            raise ProtocolError(
                f"flags 0x{unknown_flags:04x} are not defined for {kind.name} frames",
                code="bad-flags",
            )
        if flags & _GET_AND_SET == _GET_AND_SET:
            raise ProtocolError(
                "CALL frame sets both GET_ATTRIBUTE and SET_ATTRIBUTE; a request reads or "
                "writes a property, never both",
                code="bad-flags",
            )

        is_control = kind in _CONTROL_TYPES
        if is_control and serializer_id != CONTROL_SERIALIZER_ID:
            raise ProtocolError(
                f"{kind.name} frame names serializer id {serializer_id}; control frames "
                f"must use id {CONTROL_SERIALIZER_ID}",
                code="bad-serializer-id",
            )
        if not is_control and serializer_id == CONTROL_SERIALIZER_ID:
            raise ProtocolError(
                f"{kind.name} frame names no serializer (id 0)", code="bad-serializer-id"
            )

        limit = MAX_CONTROL_BODY if is_control else self.max_body
        if body_length > limit:
            raise ProtocolError(
                f"{kind.name} frame declares a body of {body_length} bytes, over the limit "
                f"of {limit} bytes",
                code="body-too-large",
            )
        return message_type, flags, serializer_id, request_id, body_length


def encode_control(fields: dict[str, Any]) -> bytes:
    """Encode a control body: a JSON object in UTF-8, as documented in docs/protocol.md."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def decode_control(body: bytes) -> dict[str, Any]:
    """Decode a control body from the peer, which must be a JSON object.

    Raises :class:`~ember.kernel.errors.ProtocolError` (code ``"bad-control"``) for
    anything else. Bodies are already bounded by :data:`MAX_CONTROL_BODY`.
    """
    try:
        fields = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError(f"invalid control body: {error}", code="bad-control") from None
    if not isinstance(fields, dict):
        raise ProtocolError(
            f"control body must be a JSON object, got {type(fields).__name__}",
            code="bad-control",
        )
    return fields


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")
