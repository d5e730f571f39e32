"""The two floors: the least a Python RPC over loopback TCP can cost.

Both floors use the same framing: a 4-byte big-endian body length, then the body. Both
servers run one thread per connection with blocking sockets and ``TCP_NODELAY`` set on
every connection, which is the model Pyro5's threaded server and ember's daemon follow.

* raw: the server sends every frame back unchanged. A ping is a fixed 16-byte body, and
  an echo carries the payload itself. Nothing is decoded or dispatched.
* cbor-loop: the client sends ``[object_id, method, args, kwargs]`` encoded with cbor2,
  and the server decodes it, looks the object and method up, calls it and replies
  ``[status, value]`` encoded with cbor2. This is the work any CBOR-over-TCP RPC must
  do for every call, without a protocol version, a header, authentication or limits.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
from typing import Any

import cbor2
from contract import CALL_TIMEOUT_SECONDS, ServerHandle

__all__ = [
    "CborLoopClient",
    "RawClient",
    "start_cbor_loop_server",
    "start_raw_server",
]

HEADER = struct.Struct("!I")

# Largest body either floor accepts. The biggest workload echoes 16 MiB, so this leaves
# room for the cbor-loop envelope without letting a bad length allocate gigabytes.
MAX_BODY_SIZE = 64 * 2**20

# Bodies up to this size are joined to their header and sent with one sendall(), which
# costs one copy but saves a system call. Larger bodies are sent after the header
# without a copy.
JOIN_LIMIT = 64 * 1024

RECEIVE_SIZE = 256 * 1024
PING_BODY = b"ping-0123456789a"
OBJECT_ID = "bench"
ACCEPT_POLL_SECONDS = 0.25

STATUS_OK = 0
STATUS_ERROR = 1


def send_frame(sock: socket.socket, body: bytes | bytearray) -> None:
    """Send one length-prefixed frame."""
    header = HEADER.pack(len(body))
    if len(body) <= JOIN_LIMIT:
        sock.sendall(header + body)
    else:
        sock.sendall(header)
        sock.sendall(body)


class FrameReader:
    """Reads length-prefixed frames from a blocking socket.

    Small frames come out of one ``recv`` into a reusable buffer. The rest of a large
    body is read with ``recv_into`` straight into a buffer of its final size, so a
    16 MiB body is not assembled from many small chunks.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def read_frame(self) -> bytes | bytearray | None:
        """Return the next body, or ``None`` if the peer closed between frames."""
        while len(self._buffer) < HEADER.size:
            chunk = self._sock.recv(RECEIVE_SIZE)
            if not chunk:
                if self._buffer:
                    raise ConnectionError("peer closed the connection inside a frame header")
                return None
            self._buffer += chunk

        (length,) = HEADER.unpack_from(self._buffer)
        if length > MAX_BODY_SIZE:
            raise ValueError(
                f"frame body of {length} bytes exceeds the floor's limit of {MAX_BODY_SIZE}"
                " bytes; raise MAX_BODY_SIZE in bench/floors.py for larger workloads"
            )

        end = HEADER.size + length
        if len(self._buffer) >= end:
            body = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            return body

        large_body = bytearray(length)
        received = len(self._buffer) - HEADER.size
        large_body[:received] = self._buffer[HEADER.size :]
        self._buffer.clear()
        view = memoryview(large_body)
        while received < length:
            count = self._sock.recv_into(view[received:])
            if count == 0:
                raise ConnectionError(
                    f"peer closed the connection after {received} of {length} body bytes"
                )
            received += count
        return large_body


def connect_loopback(address: str) -> socket.socket:
    """Connect to ``host:port`` with TCP_NODELAY and the benchmark's call timeout."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=CALL_TIMEOUT_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class FrameServer:
    """Accepts loopback connections and serves each in its own thread.

    ``handle_body`` maps a request body to a reply body. ``serve_forever`` polls
    accept() and returns within ``ACCEPT_POLL_SECONDS`` of ``close``, because on Linux
    closing a listening socket does not wake a thread blocked in accept().
    """

    def __init__(self, handle_body: Any) -> None:
        self._handle_body = handle_body
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        host, port = self._listener.getsockname()[:2]
        self.address = f"{host}:{port}"

    def serve_forever(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                thread = threading.Thread(target=self._serve_connection, args=(conn,), daemon=True)
                thread.start()
        finally:
            self._listener.close()

    def close(self) -> None:
        self._closed.set()

    def _serve_connection(self, conn: socket.socket) -> None:
        reader = FrameReader(conn)
        with conn:
            try:
                while True:
                    body = reader.read_frame()
                    if body is None:
                        return
                    send_frame(conn, self._handle_body(body))
            except (ConnectionError, ValueError) as error:
                # A floor has no error reply, so it drops the connection and the
                # client's call fails. The worker's stderr is shown if the run fails.
                print(f"floor server dropped a connection: {error}", file=sys.stderr)
                return


def start_raw_server() -> ServerHandle:
    """Start the raw floor: every frame is sent back as it came."""
    server = FrameServer(lambda body: body)
    return ServerHandle(server.address, server.serve_forever, server.close)


class RawClient:
    """Client of the raw floor: ping-pong of a fixed body, or echo of a payload."""

    echo_note: str | None = None

    def __init__(self, address: str) -> None:
        self._sock = connect_loopback(address)
        self._reader = FrameReader(self._sock)

    def ping(self) -> None:
        send_frame(self._sock, PING_BODY)
        reply = self._read_reply()
        if len(reply) != len(PING_BODY):
            raise ValueError(f"raw ping reply has {len(reply)} bytes, expected {len(PING_BODY)}")

    def echo(self, payload: bytes) -> bytes | bytearray:
        send_frame(self._sock, payload)
        return self._read_reply()

    def close(self) -> None:
        self._sock.close()

    def _read_reply(self) -> bytes | bytearray:
        reply = self._reader.read_frame()
        if reply is None:
            raise ConnectionError("server closed the connection before replying")
        return reply


class FloorService:
    """The object the cbor-loop server calls; the same two methods as every system."""

    def ping(self) -> None:
        return None

    def echo(self, value: Any) -> Any:
        return value


class CborDispatcher:
    """Decodes a cbor-loop call, calls the method and encodes ``[status, value]``."""

    ALLOWED_METHODS = frozenset({"ping", "echo"})

    def __init__(self) -> None:
        self._objects = {OBJECT_ID: FloorService()}

    def __call__(self, body: bytes | bytearray) -> bytes:
        object_id, method, args, kwargs = cbor2.loads(body)
        target = self._objects.get(object_id)
        if target is None or method not in self.ALLOWED_METHODS:
            return cbor2.dumps([STATUS_ERROR, f"no method {method!r} on object {object_id!r}"])
        result = getattr(target, method)(*args, **kwargs)
        return cbor2.dumps([STATUS_OK, result])


def start_cbor_loop_server() -> ServerHandle:
    """Start the cbor-loop floor."""
    server = FrameServer(CborDispatcher())
    return ServerHandle(server.address, server.serve_forever, server.close)


class CborLoopClient:
    """Client of the cbor-loop floor."""

    echo_note: str | None = None

    def __init__(self, address: str) -> None:
        self._sock = connect_loopback(address)
        self._reader = FrameReader(self._sock)

    def ping(self) -> None:
        self._call("ping", [])

    def echo(self, payload: bytes) -> bytes:
        result: bytes = self._call("echo", [payload])
        return result

    def close(self) -> None:
        self._sock.close()

    def _call(self, method: str, args: list[Any]) -> Any:
        send_frame(self._sock, cbor2.dumps([OBJECT_ID, method, args, {}]))
        body = self._reader.read_frame()
        if body is None:
            raise ConnectionError("server closed the connection before replying")
        status, value = cbor2.loads(body)
        if status != STATUS_OK:
            raise RuntimeError(f"cbor-loop call {method!r} failed on the server: {value}")
        return value
