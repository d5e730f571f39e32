"""The hmac authenticator: handshake, per-frame tags, keys, and failures over real sockets."""

from __future__ import annotations

import base64
import logging
import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ember import Config, Daemon, Proxy, expose
from ember.kernel.authenticator import HandshakeChannel, Session
from ember.kernel.errors import (
    AuthenticationFailed,
    ConfigError,
    EmberTimeout,
    SecurityError,
)
from ember.kernel.keys import write_key_file
from ember.kernel.protocol import HEADER_SIZE, MessageType, encode_frame
from ember.plugins.auth.hmac import HmacAuthenticator
from ember.plugins.auth.session import MacSession

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class QueueChannel(HandshakeChannel):
    """One end of an in-process handshake channel, for driving two authenticators."""

    def __init__(self, inbox: queue.Queue[bytes], outbox: queue.Queue[bytes]) -> None:
        self.inbox = inbox
        self.outbox = outbox

    def send(self, message: bytes) -> None:
        self.outbox.put(message)

    def receive(self) -> bytes:
        try:
            return self.inbox.get(timeout=5)
        except queue.Empty:
            raise EmberTimeout("no handshake message within 5 s") from None

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return default


def handshake(client_options: Mapping[str, object],
              server_options: Mapping[str, object]) -> tuple[Any, Any]:
    """Run both sides; return (client result, server result), each a Session or error."""
    to_server: queue.Queue[bytes] = queue.Queue()
    to_client: queue.Queue[bytes] = queue.Queue()
    authenticator = HmacAuthenticator()
    results: dict[str, Any] = {}

    def serve() -> None:
        try:
            results["server"] = authenticator.server_handshake(
                QueueChannel(to_server, to_client), server_options)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results["server"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        results["client"] = authenticator.client_handshake(
            QueueChannel(to_client, to_server), client_options)
    except Exception as error:  # noqa: BLE001 - the test inspects it
        results["client"] = error
        to_server.put(b"")  # unblock a server waiting for the client's proof
    thread.join(10)
    return results["client"], results["server"]


def session_pair() -> tuple[Session, Session]:
    client, server = handshake({"hmac_key": KEY.hex()}, {"hmac_key": KEY.hex()})
    assert isinstance(client, Session)
    assert isinstance(server, Session)
    return client, server


def sample_frame(body: bytes = b"\x83abc", request_id: int = 7) -> bytes:
    return encode_frame(MessageType.CALL, body, serializer_id=1, request_id=request_id)


# -- sessions ------------------------------------------------------------------------

def test_handshake_protects_both_directions() -> None:
    client, server = session_pair()
    frame = sample_frame()
    server.verify(frame, client.seal(frame))
    reply = encode_frame(MessageType.RESULT, b"\xf6", serializer_id=1, request_id=7)
    client.verify(reply, server.seal(reply))


# Offsets of each header field, the body, and the tag (negative: from the end).
REGIONS = {
    "magic": 0, "version": 2, "type": 3, "flags": 4, "serializer id": 6,
    "request id": 8, "body length": 12, "body": HEADER_SIZE + 1,
}


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_flipped_frame_byte_rejected(region: str) -> None:
    client, server = session_pair()
    frame = sample_frame()
    tag = client.seal(frame)
    tampered = bytearray(frame)
    tampered[REGIONS[region]] ^= 0x01

    with pytest.raises(SecurityError, match="integrity check"):
        server.verify(bytes(tampered), tag)


@pytest.mark.parametrize("index", [0, 15, 31])
def test_flipped_tag_byte_rejected(index: int) -> None:
    client, server = session_pair()
    frame = sample_frame()
    tag = bytearray(client.seal(frame))
    tag[index] ^= 0x80

    with pytest.raises(SecurityError):
        server.verify(frame, bytes(tag))


def test_truncated_tag_rejected() -> None:
    client, server = session_pair()
    frame = sample_frame()
    tag = client.seal(frame)

    with pytest.raises(SecurityError):
        server.verify(frame, tag[:-1])


def test_replayed_frame_rejected() -> None:
    client, server = session_pair()
    frame = sample_frame()
    tag = client.seal(frame)
    server.verify(frame, tag)

    with pytest.raises(SecurityError):
        server.verify(frame, tag)


def test_reordered_frames_rejected() -> None:
    client, server = session_pair()
    first, second = sample_frame(request_id=1), sample_frame(request_id=2)
    client.seal(first)
    second_tag = client.seal(second)

    with pytest.raises(SecurityError):
        server.verify(second, second_tag)


def test_reflected_frame_rejected() -> None:
    client, _ = session_pair()
    frame = sample_frame()
    tag = client.seal(frame)

    with pytest.raises(SecurityError):
        client.verify(frame, tag)


def test_forged_frame_rejected_genuine_accepted() -> None:
    client, server = session_pair()
    genuine = sample_frame(b"\x01")
    tag = client.seal(genuine)
    forged = sample_frame(b"\x02")

    with pytest.raises(SecurityError):
        server.verify(forged, tag)
    server.verify(genuine, tag)


def test_frame_from_other_connection_rejected() -> None:
    first_client, _ = session_pair()
    _, second_server = session_pair()
    frame = sample_frame()

    with pytest.raises(SecurityError):
        second_server.verify(frame, first_client.seal(frame))


def test_large_frame_tagged_incrementally() -> None:
    client, server = session_pair()
    frame = sample_frame(os.urandom(3 * 1024 * 1024))
    tag = client.seal(frame)
    server.verify(frame, tag)
    assert len(tag) == MacSession.tag_size


# -- keys and failures ---------------------------------------------------------------

def test_wrong_key_fails_both_sides() -> None:
    client, server = handshake({"hmac_key": KEY.hex()}, {"hmac_key": OTHER_KEY.hex()})

    assert isinstance(client, AuthenticationFailed)
    assert str(client) == "authentication failed"
    assert "server's proof" in " ".join(client.__notes__)
    assert not isinstance(server, Session)


def test_short_key_rejected() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        HmacAuthenticator().client_handshake(
            QueueChannel(queue.Queue(), queue.Queue()), {"hmac_key": "00" * 16})


def test_missing_key_names_settings() -> None:
    with pytest.raises(ConfigError, match="hmac_key_file"):
        HmacAuthenticator().client_handshake(QueueChannel(queue.Queue(), queue.Queue()), {})


def test_key_file_readable_by_others_rejected(tmp_path: Path) -> None:
    path = tmp_path / "shared.key"
    write_key_file(path, KEY, comment="test key", secret=True)
    path.chmod(0o640)

    with pytest.raises(SecurityError, match=r"chmod 600 .*shared\.key"):
        HmacAuthenticator().client_handshake(
            QueueChannel(queue.Queue(), queue.Queue()), {"hmac_key_file": str(path)})


def test_key_file_and_value_both_set_rejected(tmp_path: Path) -> None:
    path = tmp_path / "shared.key"
    write_key_file(path, KEY, comment="test key", secret=True)

    with pytest.raises(ConfigError, match="set only one"):
        HmacAuthenticator().client_handshake(
            QueueChannel(queue.Queue(), queue.Queue()),
            {"hmac_key_file": str(path), "hmac_key": KEY.hex()})


# -- over real sockets ---------------------------------------------------------------

@expose
class Whoami:
    def identity(self) -> object:
        from ember import current_call
        return current_call().identity

    def echo(self, value: object) -> object:
        return value


def test_daemon_and_proxy_share_key(tmp_path: Path) -> None:
    key_file = tmp_path / "shared.key"
    write_key_file(key_file, KEY, comment="test key", secret=True)
    config = Config.defaults().replace(authenticator="hmac", hmac_key_file=str(key_file))

    with Daemon(config=config) as daemon:
        uri = daemon.register(Whoami, "whoami")
        daemon.start()
        with Proxy(uri, config=config) as proxy:
            assert proxy.echo(b"\x00" * 100_000) == b"\x00" * 100_000


def test_wrong_key_rejected_with_opaque_error(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    server_config = Config.defaults().replace(authenticator="hmac", hmac_key=KEY.hex())
    client_config = Config.defaults().replace(authenticator="hmac", hmac_key=OTHER_KEY.hex(),
                                              handshake_timeout=30.0)

    with caplog.at_level(logging.DEBUG, logger="ember"), \
            Daemon(config=server_config) as daemon:
        uri = daemon.register(Whoami, "whoami")
        daemon.start()
        with pytest.raises(AuthenticationFailed) as raised:
            Proxy(uri, config=client_config).echo(1)

    assert str(raised.value) == "authentication failed"
    for secret in (KEY, OTHER_KEY):
        for form in (secret.hex(), base64.b64encode(secret).decode()):
            assert form not in caplog.text
            assert form not in str(raised.value)
