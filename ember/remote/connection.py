"""A framed, optionally authenticated connection over a transport stream.

This is the only place where the sans-I/O protocol meets a real stream: it reads bytes
into a :class:`~ember.kernel.protocol.FrameDecoder`, checks each frame against the
connection state table and the session tag, and writes whole frames. The daemon and the
proxy both build on it.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from ember.kernel.authenticator import HandshakeChannel, Session
from ember.kernel.errors import (
    ConnectionClosed,
    EmberTimeout,
    ProtocolError,
    SecurityError,
)
from ember.kernel.protocol import (
    CONTROL_SERIALIZER_ID,
    MAX_CONTROL_BODY,
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
from ember.kernel.transport import PEER_ADDRESS, Stream

__all__ = ["FramedConnection"]

# Reads ask the transport for what the current frame still needs, within two bounds. At
# least 64 KiB, so small frames arrive in one system call. At most 256 KiB, because each
# recv() allocates its full size before it shrinks.
_MIN_READ = 64 * 1024
_MAX_READ = 256 * 1024

# A body of at least this size is received straight into a buffer of its declared size
# (FrameDecoder.get_buffer) instead of through those reads. Measured with echo calls on
# one Linux VM, when each read still allocated its own bytes: the reads were 15-25%
# faster for 1 MiB bodies, and the two were within 10% of each other for 4 MiB. For
# 16 MiB the body buffer was as fast or up to 40% faster, depending on how much freed
# memory glibc kept.
_MIN_DIRECT_BODY = 4 * 1024 * 1024

# Bodies up to this size are joined to their header and written as one buffer, which for
# small frames costs less than passing the parts separately.
_MAX_JOINED_BODY = 64 * 1024

_connection_ids = itertools.count(1)


class FramedConnection:
    """Sends and receives whole frames on one stream, for one role.

    Writes are serialized by a lock, so several threads may send; exactly one thread
    receives at a time.
    """

    def __init__(self, stream: Stream, role: Role, max_body: int) -> None:
        self.stream = stream
        self.role = role
        self.max_body = max_body
        self.id = next(_connection_ids)
        self.state = ConnectionState(role)
        self.session: Session | None = None
        self.peer_address: object = stream.get_peer_detail(PEER_ADDRESS)
        self._decoder = FrameDecoder(MAX_CONTROL_BODY)
        self._write_lock = threading.Lock()
        self._closed = False
        self._timeout: float | None = -1.0  # unknown until the first read sets it
        #: time.monotonic() of the last frame sent or received
        self.last_activity = time.monotonic()


    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def has_partial_frame(self) -> bool:
        return self._decoder.has_partial_frame

    def start_session(self, session: Session | None) -> None:
        """Protect every later frame with ``session`` (``None``: no authenticator)."""
        self.session = session
        if session is not None:
            self._decoder.tag_size = session.tag_size

    def send(
        self,
        message_type: MessageType,
        body: bytes,
        *,
        serializer_id: int = CONTROL_SERIALIZER_ID,
        request_id: int = 0,
        flags: Flag = Flag.NONE,
    ) -> None:
        if len(body) > _MAX_JOINED_BODY:
            self._send_parts(message_type, body, serializer_id, request_id, flags)
            return

        frame = encode_frame(message_type, body, serializer_id=serializer_id,
                             request_id=request_id, flags=flags, max_body=self.max_body)
        # Sealing and writing happen under one lock so the session's send counter
        # follows the order in which frames reach the wire.
        with self._write_lock:
            session = self.session
            if session is not None:
                frame += session.seal(frame)
            self.stream.write(frame)
        self.last_activity = time.monotonic()

    def _send_parts(self, message_type: MessageType, body: bytes, serializer_id: int,
                    request_id: int, flags: Flag) -> None:
        # A large body is written beside its header and tag rather than joined to them,
        # which would copy it into a freshly allocated buffer.
        header = encode_header(message_type, len(body), serializer_id=serializer_id,
                               request_id=request_id, flags=flags, max_body=self.max_body)
        with self._write_lock:
            session = self.session
            if session is None:
                self.stream.write_parts((header, body))
            else:
                # NOTE: Session.seal() takes the frame as one bytes object, so an
                # authenticated session still pays for one joined copy here.
                tag = session.seal(header + body)
                self.stream.write_parts((header, body, tag))
        self.last_activity = time.monotonic()

    def send_control(self, message_type: MessageType, fields: dict[str, Any],
                     request_id: int = 0) -> None:
        self.send(message_type, encode_control(fields), request_id=request_id)

    def send_error(self, code: str, message: str, request_id: int = 0) -> None:
        self.send_control(MessageType.ERROR, {"code": code, "message": message}, request_id)

    def receive(self, timeout: float | None, *, operation: str = "read") -> Frame:
        """Return the next frame, waiting at most ``timeout`` seconds for all of it.

        The timeout bounds the whole frame, not each read, so a peer that trickles bytes
        cannot hold the connection longer than one timeout. Raises
        :class:`~ember.kernel.errors.ConnectionClosed` at a clean end of stream,
        :class:`~ember.kernel.errors.EmberTimeout`, ProtocolError or SecurityError.
        """
        decoder = self._decoder
        # Before the handshake ends only control frames are legal, so a peer that has
        # not authenticated cannot make this side buffer a body of max_body bytes.
        decoder.max_body = self.max_body if self.state.state is State.READY else MAX_CONTROL_BODY
        result = decoder.next_frame()
        if isinstance(result, Frame):
            return self._accept(result)

        # The first read waits the full timeout, and the stream keeps that setting
        # between calls, so the common case (a frame in one read) costs no extra system
        # call. Later reads of the same frame wait only for what is left.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._set_timeout(timeout)
        first_read = True
        # Allocated at the second read of a frame, and reused by every later read.
        scratch: memoryview | None = None
        while True:
            if result == FrameDecoder.EOF:
                raise ConnectionClosed(f"the peer {self._describe_peer()} closed the connection")

            if not first_read and deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EmberTimeout(
                        f"{operation} from {self._describe_peer()} timed out after "
                        f"{timeout:.3g} s",
                        operation=operation,
                        timeout=timeout,
                    )
                self._set_timeout(remaining)
                if scratch is None:
                    scratch = memoryview(bytearray(_MAX_READ))
            first_read = False

            try:
                self._read_more(decoder, scratch)
            except EmberTimeout as error:
                raise EmberTimeout(
                    f"{operation} from {self._describe_peer()} timed out after {timeout:.3g} s",
                    operation=operation,
                    timeout=timeout,
                ) from error
            result = decoder.next_frame()
            if isinstance(result, Frame):
                return self._accept(result)

    def _read_more(self, decoder: FrameDecoder, scratch: memoryview | None) -> None:
        # Once a header has passed its checks, the rest of a large body is received
        # straight into the body's buffer. Everything else goes through feed(): the first
        # read of a frame with read(), later ones into the reused scratch buffer. One
        # recv() allocation per read of a 1 MiB body made echo calls about twice as slow
        # in bench/run.py, because glibc kept handing back freshly mapped memory.
        buffer = decoder.get_buffer(_MIN_DIRECT_BODY)
        if buffer is None:
            size = min(max(decoder.bytes_needed, _MIN_READ), _MAX_READ)
            if scratch is None:
                decoder.feed(self.stream.read(size))
                return
            count = self.stream.read_into(scratch[:size])
            decoder.feed(scratch[:count])
            return

        count = self.stream.read_into(buffer)
        if count:
            decoder.buffer_updated(count)
        else:
            decoder.feed(b"")

    def _set_timeout(self, seconds: float | None) -> None:
        if seconds != self._timeout:
            self.stream.set_timeout(seconds)
            self._timeout = seconds

    def _accept(self, frame: Frame) -> Frame:
        session = self.session
        if session is not None:
            session.verify(frame.signed_bytes(), frame.tag)
        self.state.receive(frame.type)
        self.last_activity = time.monotonic()
        return frame

    def handshake_channel(self, timeout: float) -> HandshakeChannel:
        return _FrameHandshakeChannel(self, timeout)

    def close(self) -> None:
        self._closed = True
        self.stream.close()

    def _describe_peer(self) -> str:
        address = self.peer_address
        return str(address) if address is not None else "peer"


class _FrameHandshakeChannel(HandshakeChannel):
    """Carries authenticator messages in AUTH frames, within one overall deadline."""

    def __init__(self, connection: FramedConnection, timeout: float) -> None:
        self._connection = connection
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout

    def send(self, message: bytes) -> None:
        if len(message) > MAX_CONTROL_BODY:
            raise ProtocolError(
                f"handshake message of {len(message)} bytes exceeds {MAX_CONTROL_BODY} bytes",
                code="body-too-large",
            )
        self._connection.send(MessageType.AUTH, message)

    def receive(self) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise EmberTimeout(f"handshake timed out after {self._timeout:.3g} s",
                               operation="handshake", timeout=self._timeout)
        frame = self._connection.receive(remaining, operation="handshake")
        if frame.type is MessageType.ERROR:
            raise SecurityError(_error_text(frame))
        return frame.body

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return self._connection.stream.get_peer_detail(key, default)


def _error_text(frame: Frame) -> str:
    fields = decode_control(frame.body)
    return str(fields.get("message", "the peer reported an error"))
