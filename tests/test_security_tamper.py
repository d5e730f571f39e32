"""Tampering on the wire: a relay between proxy and daemon alters authenticated frames.

The relay forwards the hello and authentication frames unchanged, then applies one
change to the client's first protected frame: flip a byte in a header field, the body
or the tag, send the frame twice, or truncate it. The daemon must close the
connection with a security error, and the proxy must fail instead of getting a result.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ember import Config, Daemon, Proxy, expose
from ember.kernel.errors import EmberError
from ember.kernel.protocol import HEADER_SIZE

KEY = "5a" * 32
TAG_SIZE = 32
# The client's HELLO and its two hmac messages travel without a tag; every frame
# after them carries one.
UNPROTECTED_CLIENT_FRAMES = 3

Change = Callable[[bytes], bytes]


@expose
class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def bump(self) -> int:
        self.calls += 1
        return self.calls


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        with_suppressed_shutdown(target)


def with_suppressed_shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def relay_client_frames(client: socket.socket, server: socket.socket, change: Change) -> None:
    """Forward client frames, applying ``change`` to the first protected one."""
    index = 0
    try:
        while True:
            header = recv_exact(client, HEADER_SIZE)
            body_length = int.from_bytes(header[12:16], "big")
            tag_size = TAG_SIZE if index >= UNPROTECTED_CLIENT_FRAMES else 0
            frame = header + recv_exact(client, body_length + tag_size)
            if index == UNPROTECTED_CLIENT_FRAMES:
                frame = change(frame)
            server.sendall(frame)
            index += 1
    except OSError:
        pass
    finally:
        with_suppressed_shutdown(server)


@contextmanager
def relay(target: tuple[str, int], change: Change) -> Iterator[int]:
    """Listen on a loopback port and relay one connection to ``target``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    sockets: list[socket.socket] = []

    def serve() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        server = socket.create_connection(target, timeout=20)
        sockets.extend([client, server])
        threading.Thread(target=pump, args=(server, client), daemon=True).start()
        relay_client_frames(client, server, change)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for sock in sockets:
            sock.close()
        thread.join(10)


def flip(offset: int) -> Change:
    def change(frame: bytes) -> bytes:
        changed = bytearray(frame)
        changed[offset] ^= 0x01
        return bytes(changed)
    return change


CHANGES: dict[str, Change] = {
    "magic": flip(1),
    "version": flip(2),
    "type": flip(3),
    "flags": flip(5),
    "serializer id": flip(7),
    "request id": flip(11),
    "body length": flip(15),
    "body": flip(HEADER_SIZE + 2),
    "tag first byte": flip(-TAG_SIZE),
    "tag last byte": flip(-1),
    "replayed": lambda frame: frame + frame,
    "truncated": lambda frame: frame[:-5],
}


@pytest.mark.parametrize("case", sorted(CHANGES))
def test_tampered_frame_ends_connection(case: str, caplog: pytest.LogCaptureFixture) -> None:
    config = Config.defaults().replace(authenticator="hmac", hmac_key=KEY,
                                       call_timeout=2.0, handshake_timeout=10.0)
    with caplog.at_level(logging.INFO, logger="ember"), Daemon(config=config) as daemon:
        daemon.register(Counter, "counter")
        daemon.start()
        with relay((daemon.address.host, daemon.address.port), CHANGES[case]) as port:
            proxy = Proxy(f"ember+tcp://127.0.0.1:{port}/counter", config=config)
            with pytest.raises(EmberError):
                proxy.bump()
            proxy._ember_close()

    assert "authentication failed" not in caplog.text
    if case not in ("truncated", "body length"):
        assert "security check failed" in caplog.text or "protocol violation" in caplog.text
