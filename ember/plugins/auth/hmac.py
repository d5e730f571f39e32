"""The ``hmac`` authenticator: both sides prove they hold the same shared key.

Handshake (AUTH messages; ``K`` is the shared key, ``|`` concatenation)::

    client -> server   b"EMH1" | client_nonce (32 random bytes)
    server -> client   server_nonce (32) | HMAC(K, b"ember-hmac-v1 server" | cn | sn)
    client -> server   HMAC(K, b"ember-hmac-v1 client" | cn | sn)
    server -> client   b"OK"

Both proofs cover both fresh nonces, and the two labels differ, so neither proof can be
replayed on another connection or reflected to its sender. The server proves itself
first; a client that finds the server's proof wrong sends nothing further. The frame
keys come from HKDF-SHA256 with ``K`` as input key and ``cn | sn`` as salt (see
:mod:`ember.plugins.auth.session`), so every connection gets fresh keys.

The key is read from ``hmac_key_file`` (owner-only permissions) or the secret setting
``hmac_key`` (``EMBER_HMAC_KEY``), in hexadecimal, at least 32 bytes.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Final

from ember.kernel.authenticator import Authenticator, HandshakeChannel, Session
from ember.kernel.errors import ConfigError, SecurityError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.keys import load_secret
from ember.plugins.auth.session import MacSession, authentication_failure, derive_keys

__all__ = ["HmacAuthenticator", "MIN_KEY_SIZE", "load_shared_key"]

log = logging.getLogger("ember.auth.hmac")

#: Shortest shared key accepted, in bytes.
MIN_KEY_SIZE: Final = 32
_MAGIC: Final = b"EMH1"
_NONCE_SIZE: Final = 32
_PROOF_SIZE: Final = 32
_SERVER_LABEL: Final = b"ember-hmac-v1 server"
_CLIENT_LABEL: Final = b"ember-hmac-v1 client"
_SESSION_LABEL: Final = b"ember-hmac-v1 session"
_DONE: Final = b"OK"


def load_shared_key(options: Mapping[str, object]) -> bytes:
    """Return the shared key from ``options``, or raise ConfigError saying how to set it."""
    key = load_secret(options, file_setting="hmac_key_file", value_setting="hmac_key",
                      what="HMAC key", min_size=MIN_KEY_SIZE)
    if key is None:
        raise ConfigError(
            "the hmac authenticator needs a shared key: set hmac_key_file (EMBER_HMAC_KEY_FILE) "
            "to a file made by 'ember keygen hmac', or EMBER_HMAC_KEY, on both sides",
            setting="hmac_key_file")
    return key


class HmacAuthenticator(Authenticator):
    """Mutual challenge-response over a shared key, then HMAC-SHA256 on every frame."""

    name = "hmac"

    def check_options(self, options: Mapping[str, object], *, server: bool) -> None:
        load_shared_key(options)

    def client_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        key = load_shared_key(options)
        client_nonce = secrets.token_bytes(_NONCE_SIZE)
        channel.send(_MAGIC + client_nonce)

        reply = _receive(channel)
        if len(reply) != _NONCE_SIZE + _PROOF_SIZE:
            raise authentication_failure(
                f"the server's challenge has {len(reply)} bytes, expected "
                f"{_NONCE_SIZE + _PROOF_SIZE}")
        server_nonce, server_proof = reply[:_NONCE_SIZE], reply[_NONCE_SIZE:]
        if hmac.compare_digest(server_nonce, client_nonce):
            raise authentication_failure("the server echoed the client's nonce")
        expected = _proof(key, _SERVER_LABEL, client_nonce, server_nonce)
        if not hmac.compare_digest(server_proof, expected):
            raise authentication_failure("the server's proof does not match the shared key")

        channel.send(_proof(key, _CLIENT_LABEL, client_nonce, server_nonce))
        if _receive(channel) != _DONE:
            raise authentication_failure("the server did not confirm the handshake")
        to_server, to_client = derive_keys(key, client_nonce + server_nonce, _SESSION_LABEL)
        return MacSession(send_key=to_server, receive_key=to_client)

    def server_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        key = load_shared_key(options)
        hello = channel.receive()
        if len(hello) != len(_MAGIC) + _NONCE_SIZE or not hello.startswith(_MAGIC):
            raise authentication_failure(
                f"the client's first hmac message is malformed ({len(hello)} bytes)")
        client_nonce = hello[len(_MAGIC):]
        server_nonce = secrets.token_bytes(_NONCE_SIZE)
        channel.send(server_nonce + _proof(key, _SERVER_LABEL, client_nonce, server_nonce))

        client_proof = channel.receive()
        expected = _proof(key, _CLIENT_LABEL, client_nonce, server_nonce)
        if not hmac.compare_digest(client_proof, expected):
            raise authentication_failure("the client's proof does not match the shared key")

        channel.send(_DONE)
        to_server, to_client = derive_keys(key, client_nonce + server_nonce, _SESSION_LABEL)
        log.debug("hmac handshake with %s complete",
                  channel.get_peer_detail("peer_address"))
        return MacSession(send_key=to_client, receive_key=to_server)


def _proof(key: bytes, label: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.digest(key, label + client_nonce + server_nonce, "sha256")


def _receive(channel: HandshakeChannel) -> bytes:
    """Receive a handshake message; an ERROR from the daemon becomes the opaque failure."""
    try:
        return channel.receive()
    except SecurityError as error:
        raise authentication_failure(f"the daemon rejected the handshake: {error}") from None


@hookimpl
def ember_authenticators() -> list[Authenticator]:
    return [HmacAuthenticator()]
