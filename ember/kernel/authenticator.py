"""The authenticator contract: a handshake, then per-frame protection.

An authenticator runs once per connection, right after the protocol's hello exchange,
over a :class:`HandshakeChannel` that carries opaque messages. It returns a
:class:`Session` that protects every later frame, header included, against tampering,
replay, reordering and reflection: each frame's tag is bound to its direction and to an
implicit sequence number that both sides count and that never travels on the wire.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

__all__ = ["Authenticator", "HandshakeChannel", "Session"]


class HandshakeChannel(ABC):
    """Opaque message exchange with the peer during a handshake."""

    @abstractmethod
    def send(self, message: bytes) -> None:
        """Send one handshake message."""

    @abstractmethod
    def receive(self) -> bytes:
        """Receive one handshake message.

        Raises :class:`~ember.kernel.errors.EmberTimeout` when the handshake timeout
        passes and :class:`~ember.kernel.errors.ProtocolError` for a message larger than
        the handshake limit.
        """

    @abstractmethod
    def get_peer_detail(self, key: str, default: object = None) -> object:
        """Return a detail of the underlying stream (see ``ember.kernel.transport``)."""


class Session(ABC):
    """Per-frame protection after a successful handshake. Not shared between threads:
    the connection calls :meth:`seal` under its write lock and :meth:`verify` from its
    single reader."""

    #: Identity the handshake proved for the peer (a key name), or ``None``.
    peer_identity: str | None = None
    #: Bytes of the tag appended to every frame; constant for the session.
    tag_size: int = 0

    @abstractmethod
    def seal(self, frame: bytes) -> bytes:
        """Return the tag for the next outgoing ``frame`` and advance the send counter."""

    @abstractmethod
    def verify(self, frame: bytes, tag: bytes) -> None:
        """Check the tag of the next incoming ``frame`` and advance the receive counter.

        Must compare in constant time and raise
        :class:`~ember.kernel.errors.SecurityError` for a wrong tag, which ends the
        connection.
        """


class Authenticator(ABC):
    """Proves the identity of one or both peers and derives a session."""

    #: Registry name (for example ``"hmac"``).
    name: ClassVar[str]

    def check_options(  # noqa: B027 - optional hook; checking nothing is a valid default
        self, options: Mapping[str, object], *, server: bool
    ) -> None:
        """Check that ``options`` hold the key material this side needs.

        Called once when a daemon (``server=True``) or a proxy (``server=False``) is
        created, so a missing, malformed or unsafely stored key fails there, with its
        setting named, instead of on every connection. Raises
        :class:`~ember.kernel.errors.UsageError` or
        :class:`~ember.kernel.errors.SecurityError`. The default checks nothing.
        """

    @abstractmethod
    def client_handshake(self, channel: HandshakeChannel, options: Mapping[str, object]) -> Session:
        """Run the client side of the handshake and return the session.

        Raises :class:`~ember.kernel.errors.AuthenticationFailed` (opaque message) if the
        server does not prove itself, or :class:`~ember.kernel.errors.UsageError` if
        ``options`` lacks the key material this authenticator needs.
        """

    @abstractmethod
    def server_handshake(self, channel: HandshakeChannel, options: Mapping[str, object]) -> Session:
        """Run the server side of the handshake and return the session.

        Raises :class:`~ember.kernel.errors.AuthenticationFailed` if the client fails.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
