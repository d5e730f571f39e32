"""Attacks from a peer that has not finished the handshake.

Before the handshake ends only control frames are legal, so the daemon applies the
control body limit to every frame until then. Otherwise a peer without the key could
make an authenticated daemon buffer a body of max_message_size bytes on each of its
connections.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from conftest import connect_raw, frame_header, read_until_closed

from ember import Daemon
from ember.kernel.protocol import (
    HEADER_SIZE,
    MAX_CONTROL_BODY,
    MessageType,
    decode_control,
    encode_control,
)

SHARED_KEY = secrets.token_bytes(32).hex()


def hmac_hello() -> bytes:
    body = encode_control({"protocol": 1, "serializer": "cbor", "serializer_id": 1,
                           "authenticator": "hmac", "client": "attack-test"})
    return frame_header(MessageType.HELLO, len(body)) + body


def error_codes(received: bytes) -> list[str]:
    """Return the codes of the ERROR frames in ``received``, skipping other frames."""
    codes = []
    offset = 0
    while offset + HEADER_SIZE <= len(received):
        message_type = received[offset + 3]
        length = int.from_bytes(received[offset + 12:offset + 16], "big")
        body = received[offset + HEADER_SIZE:offset + HEADER_SIZE + length]
        if message_type == MessageType.ERROR:
            codes.append(decode_control(body)["code"])
        offset += HEADER_SIZE + length
    return codes


def test_large_call_before_auth_rejected_at_header(
        make_daemon: Callable[..., Daemon]) -> None:
    # A long handshake timeout, so a daemon that waits for the body is caught by the
    # read timeout below rather than closing for lack of time.
    daemon = make_daemon(authenticator="hmac", hmac_key=SHARED_KEY, handshake_timeout=60.0)
    port = daemon.address.port

    with connect_raw(port) as sock:
        sock.sendall(hmac_hello())
        sock.sendall(frame_header(MessageType.CALL, MAX_CONTROL_BODY + 1,
                                  serializer_id=1, request_id=1))
        received = read_until_closed(sock, timeout=5.0)

    assert "body-too-large" in error_codes(received)


def test_large_auth_frame_rejected_at_header(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(authenticator="hmac", hmac_key=SHARED_KEY, handshake_timeout=60.0)
    port = daemon.address.port

    with connect_raw(port) as sock:
        sock.sendall(hmac_hello())
        sock.sendall(frame_header(MessageType.AUTH, MAX_CONTROL_BODY + 1))
        received = read_until_closed(sock, timeout=5.0)

    assert "body-too-large" in error_codes(received)


def test_large_call_before_hello_rejected(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(handshake_timeout=60.0)
    port = daemon.address.port

    with connect_raw(port) as sock:
        sock.sendall(frame_header(MessageType.CALL, 1024 * 1024, serializer_id=1))
        received = read_until_closed(sock, timeout=5.0)

    assert "body-too-large" in error_codes(received)
