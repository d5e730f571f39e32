"""The transport contract: listeners and byte streams.

A transport only moves bytes. Framing, authentication and serialization happen above it
(the protocol is sans-I/O), so a transport never parses what it carries. Operating system
errors become ember errors at this seam, chained with ``from`` so the cause stays visible.

Closing is idempotent everywhere: calling ``close()`` twice is harmless, and after
``close()`` every ``read``/``write`` raises :class:`~ember.kernel.errors.ConnectionClosed`.
``close()`` may be called from another thread to abort a blocked ``read``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ember.kernel.errors import TransportError

__all__ = ["Address", "Listener", "Stream", "Transport", "PEER_ADDRESS", "PEER_UID",
           "PEER_GID", "PEER_PID", "PEER_PUBLIC_KEY", "LOCAL_ADDRESS"]

#: Keys for :meth:`Stream.get_peer_detail`. Transports add their own keys freely.
PEER_ADDRESS = "peer_address"
LOCAL_ADDRESS = "local_address"
PEER_UID = "peer_uid"
PEER_GID = "peer_gid"
PEER_PID = "peer_pid"
PEER_PUBLIC_KEY = "peer_public_key"

#: A transport-specific, hashable, immutable address (a frozen dataclass in practice).
#: Only the transport that produced it interprets it.
Address = Any


class Stream(ABC):
    """A connected, ordered, reliable byte stream to one peer."""

    @abstractmethod
    def read(self, max_bytes: int) -> bytes:
        """Return between 1 and ``max_bytes`` bytes, or ``b""`` once the peer closed.

        Blocks at most the current timeout. Must raise
        :class:`~ember.kernel.errors.EmberTimeout` when it expires,
        :class:`~ember.kernel.errors.ConnectionClosed` after ``close()``, and
        :class:`~ember.kernel.errors.TransportError` for any other failure.
        """

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data`` or raise; never send part of it silently.

        A frame is passed in one call, so a transport can send it in one system call.
        Raises like :meth:`read`.
        """

    def read_into(self, buffer: memoryview) -> int:
        """Read between 1 and ``len(buffer)`` bytes into the start of ``buffer``.

        Returns the count, or 0 once the peer closed. Raises like :meth:`read`. This
        default calls :meth:`read` and copies; a socket transport overrides it to receive
        straight into ``buffer``, which saves a copy of every large frame body.
        """
        data = self.read(len(buffer))
        if len(data) > len(buffer):
            raise TransportError(
                f"{type(self).__name__}.read({len(buffer)}) returned {len(data)} bytes; "
                "a stream must return at most the number of bytes requested"
            )
        buffer[:len(data)] = data
        return len(data)

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Send the concatenation of ``parts`` like :meth:`write` sends one buffer.

        A frame is passed in one call, as its header, body and tag, so a transport can
        send it in one system call without joining the parts first. This default joins
        them and calls :meth:`write`. Raises like :meth:`write`.
        """
        self.write(b"".join(parts))

    @abstractmethod
    def set_timeout(self, seconds: float | None) -> None:
        """Bound each later ``read``/``write`` to ``seconds`` (``None`` blocks forever)."""

    @abstractmethod
    def shutdown_write(self) -> None:
        """Half-close: tell the peer no more data follows, while still reading."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Idempotent and safe from any thread."""

    @abstractmethod
    def get_peer_detail(self, key: str, default: object = None) -> object:
        """Return a detail about the connection, such as :data:`PEER_ADDRESS`.

        Returns ``default`` for a key this transport does not provide.
        """


class Listener(ABC):
    """A bound endpoint that accepts incoming streams."""

    #: The address actually bound (with the real port when port 0 was requested).
    address: Address
    #: URI options a client needs to reach this listener, as (name, value) pairs; the
    #: daemon adds them to every URI it returns. The nacl transports publish their
    #: public key this way. Optional: a listener without it adds nothing.
    uri_params: tuple[tuple[str, str], ...] = ()

    @abstractmethod
    def accept(self, timeout: float | None) -> Stream | None:
        """Wait up to ``timeout`` seconds for a connection.

        Returns the new stream, or ``None`` when the timeout passed without one. Raises
        :class:`~ember.kernel.errors.ConnectionClosed` once the listener is closed.
        A transport may also return ``None`` for a connection it rejected itself (for
        example a Unix peer whose uid is not allowed).
        """

    @abstractmethod
    def close(self) -> None:
        """Stop listening and release the address. Idempotent."""


class Transport(ABC):
    """Creates listeners and outgoing streams for one kind of address."""

    #: Registry name, also the transport part of URIs (``ember+tcp://``).
    name: ClassVar[str]
    #: ``True`` when the transport encrypts and authenticates every byte itself.
    is_encrypted: ClassVar[bool] = False

    @abstractmethod
    def parse_address(self, text: str, *, listening: bool = False) -> Address:
        """Parse the address part of a URI (for TCP, ``host:port``).

        ``listening`` is ``True`` for an address to bind, where a transport may accept
        wildcards such as TCP port 0 (any free port). Must raise
        :class:`~ember.kernel.errors.UsageError` naming the invalid part.
        """

    @abstractmethod
    def format_address(self, address: Address) -> str:
        """Format ``address`` so that :meth:`parse_address` returns it unchanged."""

    @abstractmethod
    def is_loopback(self, address: Address) -> bool:
        """Return ``True`` if only processes on this machine can reach ``address``."""

    @abstractmethod
    def listen(self, address: Address, options: Mapping[str, object]) -> Listener:
        """Bind ``address`` and start listening.

        ``options`` holds transport settings from configuration (for example a socket
        file mode); unknown keys are ignored. Raises
        :class:`~ember.kernel.errors.TransportError` when binding fails.
        """

    @abstractmethod
    def connect(self, address: Address, timeout: float, options: Mapping[str, object]) -> Stream:
        """Open a stream to ``address`` within ``timeout`` seconds.

        Raises :class:`~ember.kernel.errors.EmberTimeout` or
        :class:`~ember.kernel.errors.TransportError` naming the address.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
