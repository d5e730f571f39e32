"""Misbehaving clients against a daemon in another process, over raw loopback sockets.

Each test checks three things: the daemon rejects or drops the bad connection, it does
so without spending memory or CPU on it, and a well-behaved proxy is served meanwhile.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable

import pytest
from conftest import (
    DaemonProcess,
    connect_raw,
    frame_header,
    hello_frame,
    read_until_closed,
)
from servers.probe import Probe

from ember import Daemon, Proxy, TransportError
from ember.kernel.protocol import HEADER, HEADER_SIZE, MessageType, decode_control
from ember.plugins.serializers.cbor import CborSerializer

CBOR_ID = CborSerializer.wire_id
FOUR_GIB_CLAIM = 0xFFFFFFFF
# The claimed body would be 4 GiB; a daemon that allocated even part of it would show
# a peak resident size far above this margin.
MEMORY_MARGIN_KIB = 64 * 1024
# CPU time a dropped connection may cost the daemon. A read loop spinning on end of
# stream would burn the whole observation window (about a second) instead.
CPU_BUDGET_SECONDS = 0.25


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one frame without a tag; return its message type and body."""
    header = read_exactly(sock, HEADER_SIZE)
    _, _, message_type, _, _, _, length = HEADER.unpack(header)
    return message_type, read_exactly(sock, length)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"the daemon closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def open_session(port: int) -> socket.socket:
    """Connect and complete the hello exchange, as a proxy would."""
    sock = connect_raw(port)
    sock.sendall(hello_frame())
    message_type, body = read_frame(sock)
    assert message_type == MessageType.WELCOME, decode_control(body)
    return sock


def first_error(data: bytes) -> dict[str, object]:
    """Decode the ERROR frame at the start of ``data``."""
    assert len(data) >= HEADER_SIZE, f"expected an ERROR frame, got {data!r}"
    _, _, message_type, _, _, _, length = HEADER.unpack(data[:HEADER_SIZE])
    assert message_type == MessageType.ERROR
    return decode_control(data[HEADER_SIZE:HEADER_SIZE + length])


def wait_for_log(daemon: DaemonProcess, pattern: str, timeout: float = 5.0) -> list[str]:
    """Return the daemon log lines matching ``pattern`` once there is at least one."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in daemon.log_text().splitlines() if re.search(pattern, line)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def assert_served(uri: str) -> None:
    with Proxy(uri, call_timeout=5.0) as proxy:
        assert proxy.echo("still served") == "still served"


# -- a frame that claims 4 GiB -------------------------------------------------------


@pytest.mark.parametrize("after_hello", [True, False], ids=["after-hello", "as-hello"])
def test_huge_length_rejected_before_allocation(
    spawn_daemon: Callable[..., DaemonProcess], after_hello: bool
) -> None:
    daemon = spawn_daemon()
    assert_served(daemon.uri)
    memory_before = daemon.peak_memory_kib()

    sock = open_session(daemon.port) if after_hello else connect_raw(daemon.port)
    peer = f"127.0.0.1:{sock.getsockname()[1]}"
    message_type = MessageType.CALL if after_hello else MessageType.HELLO
    serializer_id = CBOR_ID if after_hello else 0
    sock.sendall(frame_header(message_type, FOUR_GIB_CLAIM, serializer_id=serializer_id,
                              request_id=1) + b"\x00" * 7)

    # Other clients are served while the offending connection is still open.
    assert_served(daemon.uri)

    sock.shutdown(socket.SHUT_WR)
    reply = read_until_closed(sock, timeout=5.0)
    sock.close()
    assert first_error(reply)["code"] == "body-too-large"

    warnings = wait_for_log(daemon, rf"^WARNING .*{re.escape(peer)}\b")
    assert len(warnings) == 1, daemon.log_text()
    assert str(FOUR_GIB_CLAIM) in warnings[0]
    assert daemon.peak_memory_kib() - memory_before < MEMORY_MARGIN_KIB
    assert_served(daemon.uri)


def test_huge_length_warning_in_process(make_daemon: Callable[..., Daemon],
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ember")
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="echo")

    sock = open_session(daemon.address.port)
    peer = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.sendall(frame_header(MessageType.CALL, FOUR_GIB_CLAIM, serializer_id=CBOR_ID,
                              request_id=1) + b"\x01\x02\x03")
    assert_served(uri)
    sock.shutdown(socket.SHUT_WR)
    read_until_closed(sock, timeout=5.0)
    sock.close()

    deadline = time.monotonic() + 5.0
    while not _warnings_naming(caplog, peer) and time.monotonic() < deadline:
        time.sleep(0.05)
    warnings = _warnings_naming(caplog, peer)
    assert len(warnings) == 1, [record.getMessage() for record in caplog.records]
    assert warnings[0].name == "ember.daemon"
    assert str(FOUR_GIB_CLAIM) in warnings[0].getMessage()


def _warnings_naming(caplog: pytest.LogCaptureFixture, peer: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno == logging.WARNING and peer in record.getMessage()]


# -- a body that never arrives ---------------------------------------------------------


@pytest.mark.parametrize("after_hello", [True, False], ids=["after-hello", "as-hello"])
def test_truncated_body_dropped_without_spinning(
    spawn_daemon: Callable[..., DaemonProcess], after_hello: bool
) -> None:
    daemon = spawn_daemon()
    assert_served(daemon.uri)
    time.sleep(0.2)  # let start-up work finish before the CPU reading
    cpu_before = daemon.cpu_seconds()

    sock = open_session(daemon.port) if after_hello else connect_raw(daemon.port)
    message_type = MessageType.CALL if after_hello else MessageType.HELLO
    serializer_id = CBOR_ID if after_hello else 0
    sock.sendall(frame_header(message_type, 1000, serializer_id=serializer_id,
                              request_id=1) + b"\x00" * 10)
    sock.shutdown(socket.SHUT_WR)

    # Prompt: well within the default 5 s handshake and 60 s idle timeouts, which
    # shows the daemon reacted to the end of stream rather than to a timeout.
    read_until_closed(sock, timeout=2.0)
    sock.close()
    time.sleep(1.0)  # a spinning reader would keep burning CPU during this window
    cpu_used = daemon.cpu_seconds() - cpu_before

    assert cpu_used < CPU_BUDGET_SECONDS, f"daemon used {cpu_used:.2f} s of CPU"
    assert_served(daemon.uri)


# -- silent and abandoned connections --------------------------------------------------


def test_silent_connections_do_not_block_clients(
    spawn_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn_daemon(handshake_timeout=2.0, idle_timeout=2.0)
    silent = [connect_raw(daemon.port) for _ in range(5)]
    abandoned = connect_raw(daemon.port)
    abandoned.sendall(hello_frame()[:HEADER_SIZE + 3])
    idle = open_session(daemon.port)

    # The real client is served while every other connection is still open.
    started = time.monotonic()
    assert_served(daemon.uri)
    # Well under the 2 s timeouts: the client did not wait for the others to be dropped.
    assert time.monotonic() - started < 1.5, "served only after the silent ones timed out"

    for sock in [*silent, abandoned, idle]:
        read_until_closed(sock, timeout=5.0)
        sock.close()
    assert_served(daemon.uri)


def test_idle_connection_times_out(spawn_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = spawn_daemon(idle_timeout=0.5)
    sock = open_session(daemon.port)

    started = time.monotonic()
    read_until_closed(sock, timeout=5.0)
    sock.close()

    assert time.monotonic() - started >= 0.4
    lines = wait_for_log(daemon, r"timed out")
    assert lines, daemon.log_text()


def test_garbage_bytes_do_not_disturb_others(
    spawn_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn_daemon()
    with Proxy(daemon.uri, call_timeout=5.0) as proxy:
        assert proxy.echo(1) == 1
        sock = connect_raw(daemon.port)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_closed(sock, timeout=5.0)
        sock.close()

        assert first_error(reply)["code"] == "bad-magic"
        assert proxy.echo(2) == 2


# -- connection limit ------------------------------------------------------------------


def test_connection_limit_refuses_clearly(
    spawn_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn_daemon(max_connections=1)
    with Proxy(daemon.uri, call_timeout=5.0) as first:
        assert first.ping() == "pong"

        second = Proxy(daemon.uri, call_timeout=5.0)
        with pytest.raises(TransportError, match=r"limit of 1 connections.*max_connections"):
            second.ping()
        second._ember_close()

        assert first.ping() == "pong"

    # Once the first connection is gone, a new client gets the free slot.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            assert_served(daemon.uri)
            break
        except TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
