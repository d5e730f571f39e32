"""The nacl transports: handshake, pinned keys, records, and every kind of tampering."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.public
import pytest

from ember import Config, Daemon, Proxy, current_call, expose
from ember.kernel.errors import (
    ConfigError,
    EmberError,
    EmberTimeout,
    ProtocolError,
    SecurityError,
    UsageError,
)
from ember.kernel.keys import write_key_file
from ember.plugins.transports.nacl import (
    MAX_RECORD_PLAINTEXT,
    NaclStream,
    NaclTransport,
    _NaclOver,
    public_key_of,
)
from ember.plugins.transports.unix import UnixAddress, UnixStream

SERVER_KEY = bytes(nacl.public.PrivateKey.generate())
SERVER_PUBLIC = public_key_of(SERVER_KEY)
ADDRESS = UnixAddress(b"/socketpair")


# -- streams over socket pairs, with the test in the middle -------------------------

@dataclass
class Wire:
    """A client and a server NaclStream with the test relaying the raw bytes between."""

    client: NaclStream
    server: NaclStream
    client_side: socket.socket  # what the client sends arrives here
    server_side: socket.socket  # what is sent here reaches the server

    def take_record(self, from_client: bool = True) -> bytes:
        """Return the next raw record the client (or server) sent."""
        source = self.client_side if from_client else self.server_side
        header = recv_exact(source, 4)
        return header + recv_exact(source, int.from_bytes(header, "big"))

    def deliver(self, raw: bytes, to_server: bool = True) -> None:
        (self.server_side if to_server else self.client_side).sendall(raw)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the stream ended early"
        data += chunk
    return data


@pytest.fixture
def wire() -> Iterator[Wire]:
    client_sock, client_side = socket.socketpair()
    server_sock, server_side = socket.socketpair()
    for sock in (client_sock, client_side, server_sock, server_side):
        sock.settimeout(10)
    server = NaclStream(UnixStream(server_sock, ADDRESS), server_key=SERVER_KEY)
    result: dict[str, NaclStream] = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "client", NaclStream.client(UnixStream(client_sock, ADDRESS), SERVER_PUBLIC, 10)))
    thread.start()

    server_side.sendall(recv_exact(client_side, 36))  # client hello
    server._ensure_handshake()
    client_side.sendall(recv_exact(server_side, 68))  # server hello
    thread.join(10)
    server.set_timeout(10)
    result["client"].set_timeout(10)
    yield Wire(result["client"], server, client_side, server_side)
    for sock in (client_side, server_side):
        sock.close()
    result["client"].close()
    server.close()


def test_record_round_trip(wire: Wire) -> None:
    wire.client.write(b"hello")
    record = wire.take_record()
    assert b"hello" not in record
    wire.deliver(record)

    assert wire.server.read(100) == b"hello"


def test_server_to_client_direction(wire: Wire) -> None:
    wire.server.write(b"reply")
    wire.deliver(wire.take_record(from_client=False), to_server=False)

    assert wire.client.read(100) == b"reply"


def test_large_write_split_into_records(wire: Wire) -> None:
    payload = os.urandom(2 * MAX_RECORD_PLAINTEXT + 10)
    writer = threading.Thread(target=wire.client.write, args=(payload,))
    writer.start()
    records = [wire.take_record() for _ in range(3)]
    writer.join(10)
    deliverer = threading.Thread(target=wire.deliver, args=(b"".join(records),))
    deliverer.start()

    received = b""
    while len(received) < len(payload):
        received += wire.server.read(len(payload))
    deliverer.join(10)
    assert received == payload
    assert [len(r) for r in records] == [4 + MAX_RECORD_PLAINTEXT + 16] * 2 + [4 + 10 + 16]


@pytest.mark.parametrize("offset", [0, 3, 4, 8, -17, -1])
def test_flipped_record_byte_rejected(wire: Wire, offset: int) -> None:
    wire.client.write(b"call data")
    record = bytearray(wire.take_record())
    record[offset] ^= 0x01
    wire.deliver(bytes(record))
    if offset < 4:
        wire.server_side.shutdown(socket.SHUT_WR)  # a changed length may wait for more

    with pytest.raises(SecurityError):
        wire.server.read(100)


def test_replayed_record_rejected(wire: Wire) -> None:
    wire.client.write(b"once")
    record = wire.take_record()
    wire.deliver(record + record)

    assert wire.server.read(100) == b"once"
    with pytest.raises(SecurityError, match="failed authentication"):
        wire.server.read(100)


def test_reordered_records_rejected(wire: Wire) -> None:
    wire.client.write(b"first")
    first = wire.take_record()
    wire.client.write(b"second")
    second = wire.take_record()
    wire.deliver(second + first)

    with pytest.raises(SecurityError):
        wire.server.read(100)


def test_reflected_record_rejected(wire: Wire) -> None:
    wire.client.write(b"to the server")
    wire.deliver(wire.take_record(), to_server=False)

    with pytest.raises(SecurityError):
        wire.client.read(100)


def test_truncated_record_rejected(wire: Wire) -> None:
    wire.client.write(b"complete record")
    record = wire.take_record()
    wire.deliver(record[:-3])
    wire.server_side.shutdown(socket.SHUT_WR)

    with pytest.raises(SecurityError, match="truncated"):
        wire.server.read(100)


def test_oversized_length_rejected_before_reading(wire: Wire) -> None:
    wire.deliver((MAX_RECORD_PLAINTEXT + 17).to_bytes(4, "big"))

    with pytest.raises(SecurityError, match="declares"):
        wire.server.read(100)


def test_failed_stream_stays_failed(wire: Wire) -> None:
    wire.deliver(b"\x00\x00\x00\x20" + bytes(32))
    with pytest.raises(SecurityError):
        wire.server.read(100)

    with pytest.raises(SecurityError, match="failed earlier"):
        wire.server.read(100)


def test_clean_end_between_records(wire: Wire) -> None:
    wire.server_side.shutdown(socket.SHUT_WR)
    assert wire.server.read(100) == b""


# -- daemons and proxies -------------------------------------------------------------

@expose
class Echo:
    def echo(self, value: object) -> object:
        return value

    def public_key(self) -> object:
        return current_call().peer_details.get("peer_public_key")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "server.key"
    write_key_file(path, SERVER_KEY, comment="nacl server key", secret=True)
    return path


def nacl_daemon(transport: str, key_file: Path, tmp_path: Path) -> Daemon:
    address = str(tmp_path / "n.sock") if transport == "nacl-unix" else None
    config = Config.defaults().replace(transport=transport, nacl_server_key_file=str(key_file))
    daemon = Daemon(address=address, config=config)
    daemon.register(Echo, "echo")
    return daemon.start()


@pytest.mark.parametrize("transport", ["nacl", "nacl-unix"])
def test_end_to_end(transport: str, key_file: Path, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 1)
    with nacl_daemon(transport, key_file, tmp_path) as daemon:
        uri = daemon.uri_for("echo")
        assert f"nacl_server_public_key={SERVER_PUBLIC.hex()}" in uri
        with Proxy(uri, config=Config.defaults()) as proxy:
            assert proxy.echo(payload) == payload
            assert proxy.echo("small") == "small"


def test_wrong_pinned_key_fails_before_call(key_file: Path, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    wrong = public_key_of(bytes(nacl.public.PrivateKey.generate())).hex()
    with caplog.at_level(logging.DEBUG, logger="ember"), \
            nacl_daemon("nacl-unix", key_file, tmp_path) as daemon:
        uri = daemon.uri_for("echo").split("?")[0] + f"?nacl_server_public_key={wrong}"
        with pytest.raises(SecurityError, match="pinned"):
            Proxy(uri, config=Config.defaults()).echo(1)

    assert SERVER_KEY.hex() not in caplog.text


def test_missing_pinned_key_names_option(key_file: Path, tmp_path: Path) -> None:
    with nacl_daemon("nacl-unix", key_file, tmp_path) as daemon:
        uri = daemon.uri_for("echo").split("?")[0]
        with pytest.raises(ConfigError, match="nacl_server_public_key"):
            Proxy(uri, config=Config.defaults()).echo(1)


def test_daemon_without_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nacl_server_key_file"):
        Daemon(address=str(tmp_path / "n.sock"),
               config=Config.defaults().replace(transport="nacl-unix"))


def test_plain_client_to_nacl_daemon_fails_fast(key_file: Path, tmp_path: Path) -> None:
    config = Config.defaults().replace(transport="unix", handshake_timeout=30.0)
    with nacl_daemon("nacl-unix", key_file, tmp_path) as daemon:
        uri = daemon.uri_for("echo").split("?")[0].replace("ember+nacl-unix", "ember+unix")
        with pytest.raises(ProtocolError, match="encrypted nacl transport") as raised:
            Proxy(uri, config=config).echo(1)

    assert not isinstance(raised.value, EmberTimeout)


def test_nacl_client_to_plain_daemon_fails_fast(tmp_path: Path) -> None:
    plain = Daemon(address=str(tmp_path / "p.sock"),
                   config=Config.defaults().replace(transport="unix"))
    plain.register(Echo, "echo")
    with plain.start():
        uri = (plain.uri_for("echo").replace("ember+unix", "ember+nacl-unix")
               + f"?nacl_server_public_key={SERVER_PUBLIC.hex()}")
        with pytest.raises(SecurityError, match=r"not a nacl endpoint|closed the connection"):
            Proxy(uri, config=Config.defaults().replace(handshake_timeout=30.0)).echo(1)


def test_call_context_has_no_client_key(key_file: Path, tmp_path: Path) -> None:
    with nacl_daemon("nacl-unix", key_file, tmp_path) as daemon, \
            Proxy(daemon.uri_for("echo"), config=Config.defaults()) as proxy:
        assert proxy.public_key() is None


def test_nacl_over_itself_rejected() -> None:
    with pytest.raises(UsageError, match="already encrypted"):
        _NaclOver(NaclTransport())


def test_transport_is_encrypted() -> None:
    assert NaclTransport.is_encrypted
    assert isinstance(NaclTransport(), _NaclOver)
    assert issubclass(SecurityError, EmberError)
