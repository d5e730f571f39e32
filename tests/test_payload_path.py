"""The path of large payloads: read_into() and write_parts() on real sockets, and whole
frames through FramedConnection, a Daemon and a Proxy on loopback."""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import frame_header

from ember import Config, Daemon, Proxy, expose
from ember.kernel.errors import ConnectionClosed, ProtocolError, TransportError, UsageError
from ember.kernel.protocol import MAX_CONTROL_BODY, MessageType
from ember.kernel.state import Role
from ember.kernel.transport import Stream
from ember.plugins.transports.tcp import TcpAddress, TcpTransport
from ember.plugins.transports.unix import UnixAddress, UnixTransport
from ember.remote.connection import FramedConnection

TIMEOUT = 10.0
HMAC_KEY = bytes(range(32))

StreamPair = tuple[Stream, Stream]


def tcp_pair(tmp_path: Path) -> StreamPair:
    transport = TcpTransport()
    listener = transport.listen(TcpAddress("127.0.0.1", 0), {})
    try:
        client = transport.connect(listener.address, TIMEOUT, {})
        server = listener.accept(TIMEOUT)
    finally:
        listener.close()
    assert server is not None
    return client, server


def unix_pair(tmp_path: Path) -> StreamPair:
    transport = UnixTransport()
    listener = transport.listen(UnixAddress(os.fsencode(tmp_path / "payload.sock")), {})
    try:
        client = transport.connect(listener.address, TIMEOUT, {})
        server = listener.accept(TIMEOUT)
    finally:
        listener.close()
    assert server is not None
    return client, server


@pytest.fixture(params=[tcp_pair, unix_pair], ids=["tcp", "unix"])
def streams(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StreamPair]:
    make: Callable[[Path], StreamPair] = request.param
    client, server = make(tmp_path)
    client.set_timeout(TIMEOUT)
    server.set_timeout(TIMEOUT)
    yield client, server
    client.close()
    server.close()


def pattern(size: int) -> bytes:
    """Bytes whose every 4-byte word differs, so a lost or repeated piece shows."""
    return b"".join(index.to_bytes(4, "big") for index in range(size // 4 + 1))[:size]


def read_exactly(stream: Stream, size: int) -> bytes:
    received = bytearray(size)
    view = memoryview(received)
    filled = 0
    while filled < size:
        count = stream.read_into(view[filled:])
        assert count > 0, f"the stream ended after {filled} of {size} bytes"
        filled += count
    return bytes(received)


# -- read_into and write_parts on each socket transport ---------------------------------


def test_write_parts_sends_in_order(streams: StreamPair) -> None:
    client, server = streams
    parts = [b"head", bytearray(b"-body-"), memoryview(b"0123456789")[2:8], b"", b"tail"]

    client.write_parts(parts)

    expected = b"head-body-234567tail"
    assert read_exactly(server, len(expected)) == expected


def test_write_parts_large_with_reader(streams: StreamPair) -> None:
    client, server = streams
    body = pattern(8 * 1024 * 1024 + 5)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_exactly(server, len(body) + 4)))
    reader.start()

    client.write_parts([b"HEAD", body])
    reader.join(TIMEOUT)

    assert not reader.is_alive()
    assert received[0][:4] == b"HEAD"
    assert received[0][4:] == body


def test_read_into_returns_zero_at_end(streams: StreamPair) -> None:
    client, server = streams
    client.write(b"last")
    client.shutdown_write()
    buffer = bytearray(16)

    count = server.read_into(memoryview(buffer))
    end = server.read_into(memoryview(buffer)[count:])

    assert buffer[:count] == b"last"
    assert end == 0


def test_read_into_rejects_empty_buffer(streams: StreamPair) -> None:
    _client, server = streams

    with pytest.raises(UsageError, match="invalid buffer of 0 bytes"):
        server.read_into(memoryview(bytearray()))


def test_read_into_after_close_raises(streams: StreamPair) -> None:
    _client, server = streams
    server.close()

    with pytest.raises(ConnectionClosed):
        server.read_into(memoryview(bytearray(8)))


def test_write_parts_after_close_raises(streams: StreamPair) -> None:
    client, _server = streams
    client.close()

    with pytest.raises(ConnectionClosed):
        client.write_parts([b"x"])


# -- the contract's default implementations -------------------------------------------


class ReadWriteOnly(Stream):
    """Forwards to a real stream but keeps the contract's read_into and write_parts."""

    def __init__(self, inner: Stream, extra: int = 0) -> None:
        self.inner = inner
        self.extra = extra
        self.writes: list[bytes] = []

    def read(self, max_bytes: int) -> bytes:
        return self.inner.read(max_bytes + self.extra)

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.inner.write(data)

    def set_timeout(self, seconds: float | None) -> None:
        self.inner.set_timeout(seconds)

    def shutdown_write(self) -> None:
        self.inner.shutdown_write()

    def close(self) -> None:
        self.inner.close()

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return self.inner.get_peer_detail(key, default)


def test_default_write_parts_joins_once(streams: StreamPair) -> None:
    client, server = streams
    wrapped = ReadWriteOnly(client)

    wrapped.write_parts([b"ab", bytearray(b"cd"), memoryview(b"ef")])

    assert wrapped.writes == [b"abcdef"]
    assert read_exactly(server, 6) == b"abcdef"


def test_default_read_into_copies(streams: StreamPair) -> None:
    client, server = streams
    client.write(b"payload")
    buffer = bytearray(7)

    count = ReadWriteOnly(server).read_into(memoryview(buffer)[2:])

    assert count == 5
    assert buffer == bytearray(b"\0\0paylo")


def test_default_read_into_rejects_long_read(streams: StreamPair) -> None:
    client, server = streams
    client.write(b"0123456789")
    greedy = ReadWriteOnly(server, extra=4)

    with pytest.raises(TransportError, match=r"read\(4\) returned 8 bytes"):
        greedy.read_into(memoryview(bytearray(4)))


# -- FramedConnection ------------------------------------------------------------------


def test_large_call_before_auth_not_allocated(tmp_path: Path) -> None:
    client, server = tcp_pair(tmp_path)
    connection = FramedConnection(server, Role.SERVER, max_body=1 << 30)
    client.write(frame_header(MessageType.CALL, 512 * 1024 * 1024, serializer_id=1)
                 + bytes(1000))

    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as caught:
            connection.receive(TIMEOUT)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
        connection.close()

    assert caught.value.code == "body-too-large"
    assert peak < 1024 * 1024


def test_truncated_large_frame_rejected(tmp_path: Path) -> None:
    client, server = tcp_pair(tmp_path)
    connection = FramedConnection(server, Role.SERVER, max_body=1 << 30)
    declared = MAX_CONTROL_BODY - 16
    client.write(frame_header(MessageType.HELLO, declared) + b"{" * 20_000)
    client.shutdown_write()

    try:
        with pytest.raises(ProtocolError, match=r"20016 of 65536 bytes received") as caught:
            connection.receive(TIMEOUT)
    finally:
        client.close()
        connection.close()

    assert caught.value.code == "truncated"


# -- end to end ------------------------------------------------------------------------


@expose
class Echo:
    def echo(self, value: object) -> object:
        return value


@pytest.mark.parametrize("stack", ["tcp", "unix", "tcp+hmac"])
def test_echo_large_payload(stack: str, tmp_path: Path) -> None:
    settings: dict[str, object] = {}
    address = None
    if stack.startswith("unix"):
        settings["transport"] = "unix"
        address = str(tmp_path / "echo.sock")
    if stack.endswith("hmac"):
        settings.update(authenticator="hmac", hmac_key=HMAC_KEY.hex())
    config = Config.defaults().replace(**settings)
    payload = pattern(16 * 1024 * 1024 + 3)

    with Daemon(config=config, address=address) as daemon:
        uri = daemon.register(Echo, "echo")
        daemon.start()
        with Proxy(uri, config=config) as proxy:
            first = proxy.echo(payload)
            second = proxy.echo(payload[:70_000])
            small = proxy.echo(b"small")

    assert first == payload
    assert second == payload[:70_000]
    assert small == b"small"
