"""The ed25519 authenticator: authorized keys, revocation, mutual mode, frame tags."""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

import nacl.signing
import pytest

from ember import Config, Daemon, Proxy, current_call, expose
from ember.kernel.authenticator import HandshakeChannel
from ember.kernel.errors import AuthenticationFailed, ConfigError, SecurityError
from ember.kernel.keys import write_key_file
from ember.kernel.protocol import MessageType, encode_frame
from ember.plugins.auth.ed25519 import AuthorizedKeys, Ed25519Authenticator, fingerprint


class QueueChannel(HandshakeChannel):
    """One end of an in-process handshake channel."""

    def __init__(self, inbox: queue.Queue[bytes], outbox: queue.Queue[bytes]) -> None:
        self.inbox = inbox
        self.outbox = outbox

    def send(self, message: bytes) -> None:
        self.outbox.put(message)

    def receive(self) -> bytes:
        return self.inbox.get(timeout=5)

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return default


@expose
class Vault:
    def identity(self) -> object:
        return current_call().identity

    def echo(self, value: object) -> object:
        return value


class Keys:
    """Key files for one daemon and its clients, in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.authorized = folder / "authorized_keys"
        self.authorized.write_text("")
        self.authorized.chmod(0o644)
        self.server_key = nacl.signing.SigningKey.generate()
        self.server_key_file = self.write_private("server", self.server_key)

    def write_private(self, name: str, key: nacl.signing.SigningKey) -> Path:
        path = self.folder / f"{name}.key"
        write_key_file(path, bytes(key), comment=f"{name} private key", secret=True,
                       overwrite=True)
        return path

    def client(self, name: str, *, authorize: bool = True) -> Path:
        key = nacl.signing.SigningKey.generate()
        if authorize:
            with self.authorized.open("a") as file:
                file.write(f"{name} {bytes(key.verify_key).hex()}\n")
        return self.write_private(name, key)

    def daemon_config(self, **settings: object) -> Config:
        return Config.defaults().replace(authenticator="ed25519",
                                         ed25519_authorized_keys=str(self.authorized),
                                         **settings)

    def client_config(self, key_file: Path, **settings: object) -> Config:
        return Config.defaults().replace(authenticator="ed25519",
                                         ed25519_key_file=str(key_file),
                                         handshake_timeout=30.0, **settings)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def start(config: Config) -> Daemon:
    daemon = Daemon(config=config)
    daemon.register(Vault, "vault")
    return daemon.start()


def test_identity_is_key_name(keys: Keys) -> None:
    alice = keys.client("alice")
    with start(keys.daemon_config()) as daemon, \
            Proxy(daemon.uri_for("vault"), config=keys.client_config(alice)) as proxy:
        assert proxy.identity() == "alice"
        assert proxy.echo(b"x" * 70_000) == b"x" * 70_000


def test_unknown_key_rejected(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    mallory = keys.client("mallory", authorize=False)
    with caplog.at_level(logging.WARNING, logger="ember"), \
            start(keys.daemon_config()) as daemon, \
            pytest.raises(AuthenticationFailed) as raised:
        Proxy(daemon.uri_for("vault"), config=keys.client_config(mallory)).identity()

    assert str(raised.value) == "authentication failed"
    assert "is not in" in caplog.text
    assert mallory.read_text().splitlines()[1] not in caplog.text


def test_revoked_key_rejected_without_restart(keys: Keys) -> None:
    alice = keys.client("alice")
    bob = keys.client("bob")
    with start(keys.daemon_config()) as daemon:
        uri = daemon.uri_for("vault")
        with Proxy(uri, config=keys.client_config(alice)) as proxy:
            assert proxy.identity() == "alice"

        lines = keys.authorized.read_text().splitlines()
        keys.authorized.write_text("\n".join(line for line in lines
                                             if not line.startswith("alice")) + "\n")
        with pytest.raises(AuthenticationFailed):
            Proxy(uri, config=keys.client_config(alice)).identity()
        with Proxy(uri, config=keys.client_config(bob)) as proxy:
            assert proxy.identity() == "bob"


def test_added_key_accepted_without_restart(keys: Keys) -> None:
    with start(keys.daemon_config()) as daemon:
        carol = keys.client("carol")
        with Proxy(daemon.uri_for("vault"), config=keys.client_config(carol)) as proxy:
            assert proxy.identity() == "carol"


def test_mutual_mode_checks_pinned_key(keys: Keys) -> None:
    alice = keys.client("alice")
    server_public = bytes(keys.server_key.verify_key).hex()
    daemon_config = keys.daemon_config(ed25519_key_file=str(keys.server_key_file))
    with start(daemon_config) as daemon:
        uri = daemon.uri_for("vault")
        config = keys.client_config(alice, ed25519_server_key=server_public)
        with Proxy(uri, config=config) as proxy:
            assert proxy.identity() == "alice"

        wrong = bytes(nacl.signing.SigningKey.generate().verify_key).hex()
        with pytest.raises(AuthenticationFailed) as raised:
            Proxy(uri, config=keys.client_config(alice, ed25519_server_key=wrong)).identity()
        assert "not the pinned key" in " ".join(raised.value.__notes__)


def test_pinned_key_without_server_key_fails(keys: Keys) -> None:
    alice = keys.client("alice")
    pinned = bytes(keys.server_key.verify_key).hex()
    with start(keys.daemon_config()) as daemon, pytest.raises(AuthenticationFailed):
        Proxy(daemon.uri_for("vault"),
              config=keys.client_config(alice, ed25519_server_key=pinned)).identity()


def test_client_without_key_fails_fast(keys: Keys) -> None:
    config = Config.defaults().replace(authenticator="ed25519", handshake_timeout=30.0)
    with start(keys.daemon_config()) as daemon, \
            pytest.raises(ConfigError, match="ed25519_key_file"):
        Proxy(daemon.uri_for("vault"), config=config).identity()


def test_daemon_without_authorized_keys_fails_at_start() -> None:
    config = Config.defaults().replace(authenticator="ed25519")

    with pytest.raises(ConfigError, match="ed25519_authorized_keys"):
        start(config)


def test_writable_authorized_keys_refused(keys: Keys) -> None:
    keys.client("alice")
    keys.authorized.chmod(0o666)

    with pytest.raises(SecurityError, match="chmod 644"):
        AuthorizedKeys(keys.authorized).lookup(bytes(32))


def test_malformed_authorized_line_named(keys: Keys) -> None:
    keys.authorized.write_text("alice not-hex\n")

    with pytest.raises(ConfigError, match="line 1"):
        AuthorizedKeys(keys.authorized).lookup(bytes(32))


def test_duplicate_authorized_key_rejected(keys: Keys) -> None:
    public = bytes(nacl.signing.SigningKey.generate().verify_key).hex()
    keys.authorized.write_text(f"alice {public}\nbob {public}\n")

    with pytest.raises(ConfigError, match="already listed as 'alice'"):
        AuthorizedKeys(keys.authorized).lookup(bytes(32))


def test_private_key_file_readable_by_others_refused(keys: Keys) -> None:
    alice = keys.client("alice")
    alice.chmod(0o644)
    with start(keys.daemon_config()) as daemon, \
            pytest.raises(SecurityError, match="chmod 600"):
        Proxy(daemon.uri_for("vault"), config=keys.client_config(alice)).identity()


def test_fingerprint_is_short_and_stable() -> None:
    public = bytes(32)
    assert fingerprint(public) == fingerprint(public)
    assert len(fingerprint(public)) == 16


def test_sessions_bind_direction(keys: Keys) -> None:
    """The per-frame tags of an ed25519 session reject a reflected frame."""
    alice = keys.client("alice")
    to_server: queue.Queue[bytes] = queue.Queue()
    to_client: queue.Queue[bytes] = queue.Queue()
    authenticator = Ed25519Authenticator()
    sessions: dict[str, object] = {}
    thread = threading.Thread(target=lambda: sessions.setdefault(
        "server", authenticator.server_handshake(
            QueueChannel(to_server, to_client),
            {"ed25519_authorized_keys": str(keys.authorized)})))
    thread.start()
    client = authenticator.client_handshake(QueueChannel(to_client, to_server),
                                            {"ed25519_key_file": str(alice)})
    thread.join(10)
    server = sessions["server"]

    frame = encode_frame(MessageType.CALL, os.urandom(40), serializer_id=1, request_id=3)
    tag = client.seal(frame)
    with pytest.raises(SecurityError):
        client.verify(frame, tag)
    server.verify(frame, tag)  # type: ignore[attr-defined]
    assert server.peer_identity == "alice"  # type: ignore[attr-defined]
