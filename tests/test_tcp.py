"""Tests for the tcp transport: address parsing, and streams over real loopback sockets."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from ember.kernel.errors import (
    ConnectionClosed,
    EmberTimeout,
    TransportError,
    UsageError,
)
from ember.kernel.transport import LOCAL_ADDRESS, PEER_ADDRESS
from ember.plugins.transports import tcp as tcp_module
from ember.plugins.transports.tcp import TcpAddress, TcpListener, TcpStream, TcpTransport

TRANSPORT = TcpTransport()
NO_OPTIONS: dict[str, object] = {}

# Bounds for waits in these tests. They only stop a broken test from hanging; no test
# asserts how fast anything happens.
WAIT = 10.0
SHORT = 0.2


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


LOOPBACK_HOSTS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param(
        "::1",
        id="ipv6",
        marks=pytest.mark.skipif(
            not has_ipv6_loopback(), reason="this machine cannot bind the IPv6 loopback ::1"
        ),
    ),
]


@pytest.fixture(params=LOOPBACK_HOSTS)
def listener(request: pytest.FixtureRequest) -> Iterator[TcpListener]:
    listening = TRANSPORT.listen(TcpAddress(request.param, 0), NO_OPTIONS)
    yield listening
    listening.close()


@dataclasses.dataclass
class Pair:
    client: TcpStream
    server: TcpStream


@pytest.fixture
def pair(listener: TcpListener) -> Iterator[Pair]:
    client = TRANSPORT.connect(listener.address, WAIT, NO_OPTIONS)
    server = listener.accept(WAIT)
    assert server is not None
    for stream in (client, server):
        stream.set_timeout(WAIT)
    yield Pair(client, server)
    client.close()
    server.close()


def read_exactly(stream: TcpStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = stream.read(size - len(received))
        assert chunk, "the peer closed early"
        received += chunk
    return bytes(received)


def run_in_thread(function: Callable[[], object]) -> concurrent.futures.Future[object]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function)
    pool.shutdown(wait=False)
    return future


# --- Addresses --------------------------------------------------------------------------

VALID_ADDRESSES: list[tuple[str, TcpAddress, str]] = [
    ("127.0.0.1:5555", TcpAddress("127.0.0.1", 5555), "127.0.0.1:5555"),
    ("[::1]:5555", TcpAddress("::1", 5555), "[::1]:5555"),
    ("[2001:db8::1]:1", TcpAddress("2001:db8::1", 1), "[2001:db8::1]:1"),
    ("[::ffff:127.0.0.1]:80", TcpAddress("::ffff:127.0.0.1", 80), "[::ffff:127.0.0.1]:80"),
    ("localhost:80", TcpAddress("localhost", 80), "localhost:80"),
    ("example.org:65535", TcpAddress("example.org", 65535), "example.org:65535"),
    ("my_host-2.internal.:8080", TcpAddress("my_host-2.internal.", 8080),
     "my_host-2.internal.:8080"),
    ("xn--bcher-kva.example:443", TcpAddress("xn--bcher-kva.example", 443),
     "xn--bcher-kva.example:443"),
    ("0.0.0.0:1", TcpAddress("0.0.0.0", 1), "0.0.0.0:1"),
    ("127.0.0.1:00080", TcpAddress("127.0.0.1", 80), "127.0.0.1:80"),
]


@pytest.mark.parametrize(
    ("text", "address", "formatted"), VALID_ADDRESSES, ids=[case[0] for case in VALID_ADDRESSES]
)
def test_parse_valid_address(text: str, address: TcpAddress, formatted: str) -> None:
    parsed = TRANSPORT.parse_address(text)

    assert parsed == address
    assert TRANSPORT.format_address(parsed) == formatted
    assert TRANSPORT.parse_address(formatted) == parsed


INVALID_ADDRESSES: list[tuple[str, str]] = [
    ("", "the port is missing"),
    (":5555", "the host is empty"),
    ("127.0.0.1", "the port is missing"),
    ("127.0.0.1:", "the port is empty"),
    ("127.0.0.1:http", "'http' is not a number"),
    ("127.0.0.1:+80", "'+80' is not a number"),
    ("127.0.0.1: 80", "' 80' is not a number"),
    ("127.0.0.1:\uff18\uff10", "is not a number"),  # fullwidth digits
    ("127.0.0.1:-1", "the port -1 is negative"),
    ("127.0.0.1:65536", "the port 65536 is above 65535"),
    ("127.0.0.1:99999999999999999999", "is above 65535"),
    ("127.0.0.1:0", "port 0 is allowed only for a listen address"),
    ("::1:5555", "needs brackets before a port: write [::1]:5555"),
    ("2001:db8::1:80", "needs brackets"),
    ("[::1]x:5555", "'x:5555' follows ']'"),
    ("[::1]", "the port is missing"),
    ("[::1]:", "the port is empty"),
    ("[::1:5555", "'[' is not closed by ']'"),
    ("[]:5555", "the host is empty"),
    ("[127.0.0.1]:80", "'127.0.0.1' in brackets is not an IPv6 address"),
    ("[::g]:80", "'::g' is not a valid IPv6 address"),
    ("256.1.1.1:80", "'256.1.1.1' is not a valid IPv4 address"),
    ("1.2.3:80", "'1.2.3' is not a valid IPv4 address"),
    ("bad host:80", "'bad host' is not a valid host name"),
    ("-leading.example:80", "is not a valid host name"),
    ("bücher.example:80", "xn-- form"),
    ("a..b:80", "is not a valid host name"),
    ("user@host:80", "is not a valid host name"),
    ("host\n:80", "is not a valid host name"),
    ("host\x00:80", "is not a valid host name"),
    ("x" * 64 + ".example:80", "is not a valid host name"),
]


@pytest.mark.parametrize(
    ("text", "problem"), INVALID_ADDRESSES, ids=[repr(case[0])[:40] for case in INVALID_ADDRESSES]
)
def test_parse_invalid_address_names_part(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=re.escape(problem)) as caught:
        TRANSPORT.parse_address(text)
    assert repr(text) in str(caught.value)


def test_parse_port_zero_when_listening() -> None:
    assert TRANSPORT.parse_address("127.0.0.1:0", listening=True) == TcpAddress("127.0.0.1", 0)
    assert TRANSPORT.parse_address("[::1]:0", listening=True) == TcpAddress("::1", 0)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(UsageError, match="expected a str"):
        TRANSPORT.parse_address(5555)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "port", "problem"),
    [
        ("", 80, "the host is empty"),
        ("[::1]", 80, "is not a valid IPv6 address"),
        ("127.0.0.1", -1, "negative"),
        ("127.0.0.1", 65536, "above 65535"),
        ("127.0.0.1", True, "must be an int, not bool"),
        ("127.0.0.1", "80", "must be an int, not str"),
        (b"127.0.0.1", 80, "must be a str, not bytes"),
    ],
)
def test_address_constructor_validates(host: object, port: object, problem: str) -> None:
    with pytest.raises(UsageError, match=re.escape(problem)):
        TcpAddress(host, port)  # type: ignore[arg-type]


def test_address_is_frozen_slotted_and_hashable() -> None:
    address = TcpAddress("::1", 80)

    with pytest.raises(dataclasses.FrozenInstanceError):
        address.port = 81  # type: ignore[misc]
    assert not hasattr(address, "__dict__")
    assert {address: 1}[TcpAddress("::1", 80)] == 1
    assert str(address) == "[::1]:80"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("localhost.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("example.org", False),
        ("localhost.example.org", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert TRANSPORT.is_loopback(TcpAddress(host, 80)) is loopback


def test_foreign_address_object_is_rejected() -> None:
    with pytest.raises(UsageError, match="expected a TcpAddress"):
        TRANSPORT.format_address(("127.0.0.1", 80))
    with pytest.raises(UsageError, match="expected a TcpAddress"):
        TRANSPORT.connect("127.0.0.1:80", WAIT, NO_OPTIONS)


# --- Listening and connecting -----------------------------------------------------------


def test_listener_reports_real_port(listener: TcpListener) -> None:
    address = listener.address

    assert address.port != 0
    assert TRANSPORT.is_loopback(address)


def test_ipv6_listener_uses_ipv6_socket() -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine cannot bind the IPv6 loopback ::1")
    listening = TRANSPORT.listen(TRANSPORT.parse_address("[::1]:0", listening=True), NO_OPTIONS)
    try:
        assert listening._socket.family == socket.AF_INET6
    finally:
        listening.close()


def test_localhost_listener_accepts() -> None:
    listening = TRANSPORT.listen(TcpAddress("localhost", 0), NO_OPTIONS)
    try:
        client = TRANSPORT.connect(listening.address, WAIT, NO_OPTIONS)
        server = listening.accept(WAIT)
        assert server is not None
        client.close()
        server.close()
    finally:
        listening.close()


def test_accept_timeout_returns_none(listener: TcpListener) -> None:
    assert listener.accept(SHORT) is None
    assert listener.accept(0) is None


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1"])
def test_accept_rejects_invalid_timeout(listener: TcpListener, timeout: object) -> None:
    with pytest.raises(UsageError, match="invalid timeout"):
        listener.accept(timeout)  # type: ignore[arg-type]


def test_accept_after_close_raises(listener: TcpListener) -> None:
    listener.close()
    listener.close()  # idempotent

    with pytest.raises(ConnectionClosed, match="the listener is closed"):
        listener.accept(SHORT)


def test_close_from_thread_ends_blocked_accept(listener: TcpListener) -> None:
    started = threading.Event()

    def wait_for_client() -> object:
        started.set()
        return listener.accept(None)

    blocked = run_in_thread(wait_for_client)
    started.wait(WAIT)
    listener.close()

    with pytest.raises(ConnectionClosed):
        blocked.result(timeout=WAIT)


def test_listen_on_taken_port_fails(listener: TcpListener) -> None:
    with pytest.raises(TransportError, match=re.escape(f"cannot listen on {listener.address}")):
        TRANSPORT.listen(listener.address, NO_OPTIONS)


def test_listen_reuses_port_in_time_wait() -> None:
    listening = TRANSPORT.listen(TcpAddress("127.0.0.1", 0), NO_OPTIONS)
    address = listening.address
    client = TRANSPORT.connect(address, WAIT, NO_OPTIONS)
    server = listening.accept(WAIT)
    assert server is not None
    # The side that closes first keeps the port in TIME_WAIT.
    server.close()
    client.close()
    listening.close()

    again = TRANSPORT.listen(address, NO_OPTIONS)
    again.close()


@pytest.mark.parametrize("backlog", [0, -1, "8", 2.5, True])
def test_invalid_backlog_is_rejected(backlog: object) -> None:
    with pytest.raises(UsageError, match="invalid backlog"):
        TRANSPORT.listen(TcpAddress("127.0.0.1", 0), {"backlog": backlog})


def test_small_backlog_makes_connect_time_out() -> None:
    # With the accept queue full and no thread accepting, Linux drops further SYNs, so a
    # connect times out: a real timeout without a firewall.
    listening = TRANSPORT.listen(TcpAddress("127.0.0.1", 0), {"backlog": 1})
    clients: list[TcpStream] = []
    try:
        with pytest.raises(EmberTimeout) as caught:
            for _ in range(16):
                clients.append(TRANSPORT.connect(listening.address, SHORT, NO_OPTIONS))
        assert caught.value.operation == "connect"
        assert caught.value.timeout == SHORT
        assert str(listening.address) in str(caught.value)
        assert isinstance(caught.value.__cause__, TimeoutError)
    finally:
        for client in clients:
            client.close()
        listening.close()


def test_connect_refused_names_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.

    expected = re.escape(f"cannot connect to 127.0.0.1:{port}")
    with pytest.raises(TransportError, match=expected) as caught:
        TRANSPORT.connect(TcpAddress("127.0.0.1", port), WAIT, NO_OPTIONS)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_connect_unresolvable_host_names_it() -> None:
    # The .invalid top-level domain never resolves (RFC 2606).
    with pytest.raises(TransportError, match=re.escape("cannot resolve host 'ember-test.invalid'")):
        TRANSPORT.connect(TcpAddress("ember-test.invalid", 80), WAIT, NO_OPTIONS)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), None, "1"])
def test_connect_rejects_invalid_timeout(listener: TcpListener, timeout: object) -> None:
    with pytest.raises(UsageError, match="invalid timeout"):
        TRANSPORT.connect(listener.address, timeout, NO_OPTIONS)  # type: ignore[arg-type]


# --- Streams ----------------------------------------------------------------------------


def test_nodelay_on_both_sides(pair: Pair) -> None:
    for stream in (pair.client, pair.server):
        assert stream._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_write_then_read(pair: Pair) -> None:
    pair.client.write(b"hello")

    assert read_exactly(pair.server, 5) == b"hello"


def test_read_returns_at_most_max_bytes(pair: Pair) -> None:
    pair.client.write(b"abcdef")

    first = pair.server.read(2)

    assert 1 <= len(first) <= 2
    assert first + read_exactly(pair.server, 6 - len(first)) == b"abcdef"


def test_large_write_arrives_whole(pair: Pair) -> None:
    payload = bytes(range(256)) * 40_000  # about 10 MB, more than the socket buffers

    sender = run_in_thread(lambda: pair.client.write(payload))
    received = read_exactly(pair.server, len(payload))
    sender.result(timeout=WAIT)

    assert received == payload


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True])
def test_read_rejects_invalid_max_bytes(pair: Pair, max_bytes: object) -> None:
    with pytest.raises(UsageError, match="invalid max_bytes"):
        pair.server.read(max_bytes)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-1, float("nan"), "1", True])
def test_set_timeout_rejects_invalid_value(pair: Pair, seconds: object) -> None:
    with pytest.raises(UsageError, match="invalid timeout"):
        pair.server.set_timeout(seconds)  # type: ignore[arg-type]


def test_read_timeout(pair: Pair) -> None:
    pair.server.set_timeout(SHORT)

    with pytest.raises(EmberTimeout, match="timed out") as caught:
        pair.server.read(10)
    assert caught.value.operation == "read"
    assert caught.value.timeout == SHORT
    # The kernel's receive timeout surfaces as EAGAIN, which Python raises as
    # BlockingIOError on a socket in blocking mode.
    assert isinstance(caught.value.__cause__, (TimeoutError, BlockingIOError))


def test_write_timeout_when_peer_does_not_read(pair: Pair) -> None:
    pair.client.set_timeout(SHORT)

    with pytest.raises(EmberTimeout) as caught:
        pair.client.write(b"\x00" * (64 * 1024 * 1024))  # more than loopback buffers hold
    assert caught.value.operation == "write"
    assert str(pair.client.get_peer_detail(PEER_ADDRESS)) in str(caught.value)


def test_timeout_none_blocks_until_data(pair: Pair) -> None:
    pair.server.set_timeout(None)
    reader = run_in_thread(lambda: pair.server.read(3))

    pair.client.write(b"abc")

    assert reader.result(timeout=WAIT) == b"abc"


def test_shutdown_write_is_half_close(pair: Pair) -> None:
    pair.client.write(b"request")
    pair.client.shutdown_write()

    assert read_exactly(pair.server, 7) == b"request"
    assert pair.server.read(10) == b""  # end of stream
    pair.server.write(b"reply")
    assert read_exactly(pair.client, 5) == b"reply"


def test_peer_close_reads_empty(pair: Pair) -> None:
    pair.client.close()

    assert pair.server.read(10) == b""


def reset_by_peer(stream: TcpStream) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN. The socket is
    # closed directly, because TcpStream.close() shuts it down first, which sends FIN.
    stream._socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream._socket.close()


def test_read_after_reset_raises_transport_error(pair: Pair) -> None:
    reset_by_peer(pair.client)

    with pytest.raises(TransportError, match=r"reading from .* failed") as caught:
        pair.server.read(10)
    assert not isinstance(caught.value, ConnectionClosed)
    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_write_after_reset_raises_transport_error(pair: Pair) -> None:
    reset_by_peer(pair.client)

    with pytest.raises(TransportError, match=r"writing to .* failed") as caught:
        for _ in range(100):  # the first write may land before the RST is seen
            pair.server.write(b"x" * 65536)
    assert isinstance(caught.value.__cause__, (ConnectionResetError, BrokenPipeError))


def test_use_after_close_raises_connection_closed(pair: Pair) -> None:
    pair.server.close()
    pair.server.close()  # idempotent

    with pytest.raises(ConnectionClosed, match="the stream is closed"):
        pair.server.read(1)
    with pytest.raises(ConnectionClosed, match="the stream is closed"):
        pair.server.write(b"x")
    with pytest.raises(ConnectionClosed, match="the stream is closed"):
        pair.server.shutdown_write()
    pair.server.set_timeout(1.0)  # harmless after close


def test_close_from_thread_ends_blocked_read(pair: Pair) -> None:
    pair.server.set_timeout(None)
    started = threading.Event()

    def read_forever() -> bytes:
        started.set()
        return pair.server.read(10)

    blocked = run_in_thread(read_forever)
    started.wait(WAIT)
    pair.server.close()

    with pytest.raises(ConnectionClosed):
        blocked.result(timeout=WAIT)


def test_concurrent_close_is_safe(pair: Pair) -> None:
    barrier = threading.Barrier(8)

    def close() -> None:
        barrier.wait(WAIT)
        pair.server.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(close) for _ in range(8)]:
            future.result(timeout=WAIT)

    with pytest.raises(ConnectionClosed):
        pair.server.read(1)


def test_peer_details_on_both_sides(pair: Pair) -> None:
    client_local = pair.client.get_peer_detail(LOCAL_ADDRESS)
    server_local = pair.server.get_peer_detail(LOCAL_ADDRESS)

    assert isinstance(client_local, TcpAddress)
    assert pair.server.get_peer_detail(PEER_ADDRESS) == client_local
    assert pair.client.get_peer_detail(PEER_ADDRESS) == server_local
    assert pair.client.get_peer_detail("peer_uid") is None
    assert pair.client.get_peer_detail("peer_uid", "none") == "none"


def test_many_connections_at_once(listener: TcpListener) -> None:
    def talk(index: int) -> bytes:
        client = TRANSPORT.connect(listener.address, WAIT, NO_OPTIONS)
        client.set_timeout(WAIT)
        try:
            message = f"client {index:02d}".encode()
            client.write(message)
            return read_exactly(client, len(message))
        finally:
            client.close()

    def echo_all(count: int) -> None:
        for _ in range(count):
            server = listener.accept(WAIT)
            assert server is not None
            server.set_timeout(WAIT)
            server.write(read_exactly(server, 9))
            server.close()

    echoing = run_in_thread(lambda: echo_all(16))
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(talk, range(16)))
    echoing.result(timeout=WAIT)

    assert replies == [f"client {index:02d}".encode() for index in range(16)]


# --- Plugin surface ---------------------------------------------------------------------


def test_transport_declares_name_and_encryption() -> None:
    assert (TRANSPORT.name, TRANSPORT.is_encrypted) == ("tcp", False)


def test_hook_returns_one_tcp_transport() -> None:
    assert [type(transport) for transport in tcp_module.ember_transports()] == [TcpTransport]


def test_entry_point_loads_this_module() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="ember", name="tcp")

    assert entry_point.load() is tcp_module
