"""What the bundled authenticators share: key derivation, the per-frame MAC session,
and opaque authentication failures.

Per-frame protection: after a handshake each side has two 32-byte keys, one per
direction. The tag of a frame is ``HMAC-SHA256(direction_key, counter || frame)``,
where ``counter`` is the 8-byte big-endian number of frames sent before it in that
direction, starting at 0. The counter never travels on the wire. So a replayed or
reordered frame meets the wrong counter, a frame reflected back to its sender meets
the wrong key, and any changed byte of header or body changes the tag. Keys are
derived fresh for every connection from nonces both sides chose, so a frame captured
on one connection fails on every other one.
"""

from __future__ import annotations

import hmac
from typing import Final

import nacl.bindings
import nacl.exceptions

from ember.kernel.authenticator import Session
from ember.kernel.errors import AuthenticationFailed, SecurityError

__all__ = ["MacSession", "authentication_failure", "derive_keys", "hkdf_expand",
           "hkdf_extract", "x25519", "TAG_SIZE"]

TAG_SIZE: Final = 32
_HASH: Final = "sha256"
_HASH_SIZE: Final = 32
# The counter is 8 bytes; a session ends long before it could wrap.
_MAX_COUNTER: Final = 2**64 - 1


def hkdf_extract(salt: bytes, input_key: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869, section 2.2)."""
    return hmac.digest(salt, input_key, _HASH)


def hkdf_expand(pseudo_random_key: bytes, info: bytes, length: int = _HASH_SIZE) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869, section 2.3)."""
    if length > 255 * _HASH_SIZE:
        raise ValueError(f"HKDF cannot expand to {length} bytes; the maximum is "
                         f"{255 * _HASH_SIZE}")
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(pseudo_random_key, block + info + bytes([counter]), _HASH)
        output += block
        counter += 1
    return output[:length]


def derive_keys(secret: bytes, salt: bytes, label: bytes) -> tuple[bytes, bytes]:
    """Derive the client-to-server and server-to-client frame keys of one session."""
    pseudo_random_key = hkdf_extract(salt, secret)
    client_to_server = hkdf_expand(pseudo_random_key, label + b" client to server")
    server_to_client = hkdf_expand(pseudo_random_key, label + b" server to client")
    return client_to_server, server_to_client


def x25519(private_key: bytes, peer_public_key: bytes) -> bytes | None:
    """Return the X25519 shared secret, or ``None`` for a peer key of small order.

    libsodium rejects a result of all zeros, which a peer forces by sending a point of
    small order. The caller treats ``None`` as a failed handshake.
    """
    try:
        return bytes(nacl.bindings.crypto_scalarmult(private_key, peer_public_key))
    except nacl.exceptions.RuntimeError:
        return None


def authentication_failure(reason: str) -> AuthenticationFailed:
    """Return the opaque error for a failed handshake, with ``reason`` as a note.

    The message stays "authentication failed", so the peer learns nothing from it.
    The daemon logs the notes locally. ``reason`` must never contain key material.
    """
    error = AuthenticationFailed()
    error.add_note(reason)
    return error


class MacSession(Session):
    """HMAC-SHA256 tags over every frame, bound to direction and sequence number.

    Not thread-safe by itself; the connection seals under its write lock and verifies
    from its single reader, as the Session contract requires.
    """

    tag_size = TAG_SIZE

    def __init__(self, send_key: bytes, receive_key: bytes,
                 peer_identity: str | None = None) -> None:
        if len(send_key) != _HASH_SIZE or len(receive_key) != _HASH_SIZE:
            raise ValueError("session keys must be 32 bytes each")
        if hmac.compare_digest(send_key, receive_key):
            raise ValueError("the send and receive keys of a session must differ")
        # Keyed once: copying a keyed HMAC context costs half of keying a new one for
        # every frame, which is most of the cost of tagging a small frame.
        self._send_mac = hmac.new(send_key, digestmod=_HASH)
        self._receive_mac = hmac.new(receive_key, digestmod=_HASH)
        self._sent = 0
        self._received = 0
        self.peer_identity = peer_identity

    def seal(self, frame: bytes) -> bytes:
        if self._sent >= _MAX_COUNTER:
            raise SecurityError("the session sent 2**64 - 1 frames; open a new connection")
        tag = _tag(self._send_mac, self._sent, frame)
        self._sent += 1
        return tag

    def verify(self, frame: bytes, tag: bytes) -> None:
        if self._received >= _MAX_COUNTER:
            raise SecurityError("the session received 2**64 - 1 frames; open a new "
                                "connection")
        expected = _tag(self._receive_mac, self._received, frame)
        if not hmac.compare_digest(expected, tag):
            raise SecurityError(
                f"frame {self._received} failed its integrity check (altered, replayed, "
                "reordered or reflected); the connection is closed")
        self._received += 1

    def __repr__(self) -> str:
        return f"<MacSession peer={self.peer_identity!r} sent={self._sent} " \
               f"received={self._received}>"


def _tag(keyed: hmac.HMAC, counter: int, frame: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(counter.to_bytes(8, "big"))
    mac.update(frame)
    return mac.digest()
