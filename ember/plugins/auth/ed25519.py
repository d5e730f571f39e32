"""The ``ed25519`` authenticator: each client proves its own key pair; the daemon lists
the public keys it accepts in an authorized-keys file.

Handshake (AUTH messages; ``|`` is concatenation, ``sign`` is Ed25519)::

    C1  client -> server   b"EME1" | client_ephemeral (32) | client_nonce (32)
    S2  server -> client   server_ephemeral (32) | server_public (32) | server_signature (64)
                           server_signature = sign(server key, b"ember-ed25519-v1 server"
                                                   | C1 | server_ephemeral | server_public)
    C3  client -> server   client_public (32) | client_signature (64)
                           client_signature = sign(client key, b"ember-ed25519-v1 client"
                                                   | C1 | S2 | client_public)
    S4  server -> client   b"OK"

The ephemeral keys are fresh X25519 keys. The frame keys come from HKDF-SHA256 over
their shared secret, salted with SHA-256 of ``C1 | S2 | C3``, so the session has forward
secrecy, and a signature covers both ephemeral keys, so it is useless on any other
connection. A daemon without a key of its own sends 96 zero bytes after its ephemeral
key. A client that pins the daemon's key (``ed25519_server_key``) then fails.

Authorized-keys file: one ``NAME HEX_PUBLIC_KEY`` per line, ``#`` starts a comment.
The daemon checks the file's size and modification time on every handshake and rereads
it when either changed, so deleting a line revokes that key for every later connection.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.public
import nacl.signing

from ember.kernel.authenticator import Authenticator, HandshakeChannel, Session
from ember.kernel.errors import ConfigError, SecurityError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.keys import decode_hex_key, load_secret
from ember.plugins.auth.session import (
    MacSession,
    authentication_failure,
    derive_keys,
    x25519,
)

__all__ = ["Ed25519Authenticator", "AuthorizedKeys", "public_key_hex", "fingerprint"]

log = logging.getLogger("ember.auth.ed25519")

_MAGIC: Final = b"EME1"
_KEY_SIZE: Final = 32
_SIGNATURE_SIZE: Final = 64
_NONCE_SIZE: Final = 32
_HELLO_SIZE: Final = len(_MAGIC) + _KEY_SIZE + _NONCE_SIZE
_CHALLENGE_SIZE: Final = 2 * _KEY_SIZE + _SIGNATURE_SIZE
_PROOF_SIZE: Final = _KEY_SIZE + _SIGNATURE_SIZE
_NO_KEY: Final = bytes(_KEY_SIZE + _SIGNATURE_SIZE)
_SERVER_LABEL: Final = b"ember-ed25519-v1 server"
_CLIENT_LABEL: Final = b"ember-ed25519-v1 client"
_SESSION_LABEL: Final = b"ember-ed25519-v1 session"
_DONE: Final = b"OK"
_NAME: Final = re.compile(r"[A-Za-z0-9._@+-]{1,64}")


def public_key_hex(signing_key: nacl.signing.SigningKey) -> str:
    """Return the public half of ``signing_key`` in hexadecimal."""
    return bytes(signing_key.verify_key).hex()


def fingerprint(public_key: bytes) -> str:
    """Return a short, loggable fingerprint of a public key (first 8 bytes of SHA-256)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def load_signing_key(options: Mapping[str, object]) -> nacl.signing.SigningKey | None:
    seed = load_secret(options, file_setting="ed25519_key_file", value_setting="ed25519_key",
                       what="Ed25519 private key", size=_KEY_SIZE)
    return None if seed is None else nacl.signing.SigningKey(seed)


@dataclass(frozen=True, slots=True)
class _FileVersion:
    device: int
    inode: int
    size: int
    modified_ns: int


class AuthorizedKeys:
    """The public keys one authorized-keys file accepts, reread when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._version: _FileVersion | None = None
        self._names: dict[bytes, str] = {}

    def lookup(self, public_key: bytes) -> str | None:
        """Return the name listed for ``public_key``, or ``None`` if it is not listed."""
        with self._lock:
            self._refresh()
            for listed, name in self._names.items():
                if hmac.compare_digest(listed, public_key):
                    return name
            return None

    def _refresh(self) -> None:
        try:
            info = self.path.stat()
        except OSError as error:
            raise ConfigError(f"cannot read the authorized-keys file {str(self.path)!r}: "
                              f"{error.strerror}", setting="ed25519_authorized_keys") from None
        # Anyone who can write this file can let themselves in.
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SecurityError(
                f"authorized-keys file {str(self.path)!r} is writable by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run 'chmod 644 {self.path}' and retry")
        version = _FileVersion(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if version == self._version:
            return
        self._names = self._parse(self.path.read_text(encoding="utf-8"))
        self._version = version
        log.info("loaded %d authorized keys from %s", len(self._names), self.path)

    def _parse(self, text: str) -> dict[bytes, str]:
        names: dict[bytes, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0].strip()
            if not stripped:
                continue
            where = f"line {number} of {str(self.path)!r}"
            fields = stripped.split()
            if len(fields) != 2 or _NAME.fullmatch(fields[0]) is None:
                raise ConfigError(f"invalid entry on {where}: expected 'NAME HEX_PUBLIC_KEY' "
                                  "with a name of letters, digits and . _ @ + -",
                                  setting="ed25519_authorized_keys")
            key = decode_hex_key(fields[1], what=f"public key on {where}", size=_KEY_SIZE)
            if key in names:
                raise ConfigError(f"the public key on {where} is already listed as "
                                  f"{names[key]!r}; list each key once",
                                  setting="ed25519_authorized_keys")
            names[key] = fields[0]
        return names


class Ed25519Authenticator(Authenticator):
    """Client key pairs checked against an authorized-keys file; optional server key."""

    name = "ed25519"

    def __init__(self) -> None:
        self._files: dict[Path, AuthorizedKeys] = {}
        self._files_lock = threading.Lock()

    def check_options(self, options: Mapping[str, object], *, server: bool) -> None:
        signing_key = load_signing_key(options)
        if server:
            # Reading the file once checks that it exists, parses and is not writable by
            # other users.
            self._authorized_keys(options).lookup(bytes(_KEY_SIZE))
            return
        if signing_key is None:
            raise ConfigError(
                "the ed25519 authenticator needs this client's private key: set "
                "ed25519_key_file (EMBER_ED25519_KEY_FILE) to a file made by 'ember keygen "
                "ed25519'", setting="ed25519_key_file")
        pinned_text = str(options.get("ed25519_server_key") or "")
        if pinned_text:
            decode_hex_key(pinned_text, what="ed25519_server_key", size=_KEY_SIZE)

    def client_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        signing_key = load_signing_key(options)
        if signing_key is None:
            raise ConfigError(
                "the ed25519 authenticator needs this client's private key: set "
                "ed25519_key_file (EMBER_ED25519_KEY_FILE) to a file made by 'ember keygen "
                "ed25519'", setting="ed25519_key_file")
        pinned_text = str(options.get("ed25519_server_key") or "")
        pinned = (decode_hex_key(pinned_text, what="ed25519_server_key", size=_KEY_SIZE)
                  if pinned_text else None)

        ephemeral = nacl.public.PrivateKey.generate()
        hello = (_MAGIC + bytes(ephemeral.public_key)
                 + os.urandom(_NONCE_SIZE))
        channel.send(hello)

        challenge = _receive(channel)
        if len(challenge) != _CHALLENGE_SIZE:
            raise authentication_failure(f"the server's reply has {len(challenge)} bytes, "
                                         f"expected {_CHALLENGE_SIZE}")
        server_ephemeral = challenge[:_KEY_SIZE]
        server_public = challenge[_KEY_SIZE:2 * _KEY_SIZE]
        server_signature = challenge[2 * _KEY_SIZE:]
        has_server_key = not hmac.compare_digest(challenge[_KEY_SIZE:], _NO_KEY)
        if pinned is not None and not has_server_key:
            raise authentication_failure("the server has no key, but ed25519_server_key "
                                         "pins one")
        if pinned is not None and not hmac.compare_digest(server_public, pinned):
            raise authentication_failure(
                f"the server's key {fingerprint(server_public)} is not the pinned key "
                f"{fingerprint(pinned)}")
        if has_server_key and not _is_valid(
                server_public, _SERVER_LABEL + hello + server_ephemeral + server_public,
                server_signature):
            raise authentication_failure("the server's signature is invalid")

        client_public = bytes(signing_key.verify_key)
        signature = signing_key.sign(_CLIENT_LABEL + hello + challenge + client_public)
        proof = client_public + signature.signature
        channel.send(proof)
        if _receive(channel) != _DONE:
            raise authentication_failure("the server did not confirm the handshake")

        shared = x25519(bytes(ephemeral), server_ephemeral)
        if shared is None:
            raise authentication_failure("the server's ephemeral key is of small order")
        to_server, to_client = derive_keys(shared, _transcript(hello, challenge, proof),
                                           _SESSION_LABEL)
        identity = fingerprint(server_public) if has_server_key else None
        return MacSession(send_key=to_server, receive_key=to_client, peer_identity=identity)

    def server_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        authorized = self._authorized_keys(options)
        signing_key = load_signing_key(options)

        hello = channel.receive()
        if len(hello) != _HELLO_SIZE or not hello.startswith(_MAGIC):
            raise authentication_failure(
                f"the client's first ed25519 message is malformed ({len(hello)} bytes)")
        client_ephemeral = hello[len(_MAGIC):len(_MAGIC) + _KEY_SIZE]

        ephemeral = nacl.public.PrivateKey.generate()
        server_ephemeral = bytes(ephemeral.public_key)
        if signing_key is None:
            challenge = server_ephemeral + _NO_KEY
        else:
            server_public = bytes(signing_key.verify_key)
            signed = signing_key.sign(_SERVER_LABEL + hello + server_ephemeral + server_public)
            challenge = server_ephemeral + server_public + signed.signature
        channel.send(challenge)

        proof = channel.receive()
        if len(proof) != _PROOF_SIZE:
            raise authentication_failure(f"the client's proof has {len(proof)} bytes, "
                                         f"expected {_PROOF_SIZE}")
        client_public, client_signature = proof[:_KEY_SIZE], proof[_KEY_SIZE:]
        name = authorized.lookup(client_public)
        if name is None:
            raise authentication_failure(
                f"the client's key {fingerprint(client_public)} is not in "
                f"{str(authorized.path)!r}")
        if not _is_valid(client_public, _CLIENT_LABEL + hello + challenge + client_public,
                         client_signature):
            raise authentication_failure(f"the signature of key {name!r} is invalid")
        shared = x25519(bytes(ephemeral), client_ephemeral)
        if shared is None:
            raise authentication_failure("the client's ephemeral key is of small order")

        channel.send(_DONE)
        to_server, to_client = derive_keys(shared, _transcript(hello, challenge, proof),
                                           _SESSION_LABEL)
        log.debug("ed25519 handshake with %s complete: key %r",
                  channel.get_peer_detail("peer_address"), name)
        return MacSession(send_key=to_client, receive_key=to_server, peer_identity=name)

    def _authorized_keys(self, options: Mapping[str, object]) -> AuthorizedKeys:
        path_text = str(options.get("ed25519_authorized_keys") or "")
        if not path_text:
            raise ConfigError(
                "the ed25519 authenticator needs the daemon's authorized-keys file: set "
                "ed25519_authorized_keys (EMBER_ED25519_AUTHORIZED_KEYS) to a file of "
                "'NAME HEX_PUBLIC_KEY' lines", setting="ed25519_authorized_keys")
        path = Path(path_text).expanduser().resolve()
        with self._files_lock:
            authorized = self._files.get(path)
            if authorized is None:
                authorized = self._files[path] = AuthorizedKeys(path)
        return authorized


def _is_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError):
        return False
    return True


def _transcript(hello: bytes, challenge: bytes, proof: bytes) -> bytes:
    return hashlib.sha256(hello + challenge + proof).digest()


def _receive(channel: HandshakeChannel) -> bytes:
    """Receive a handshake message; an ERROR from the daemon becomes the opaque failure."""
    try:
        return channel.receive()
    except SecurityError as error:
        raise authentication_failure(f"the daemon rejected the handshake: {error}") from None


@hookimpl
def ember_authenticators() -> list[Authenticator]:
    return [Ed25519Authenticator()]
