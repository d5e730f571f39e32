"""The ``tcp`` transport: plain TCP over IPv4 and IPv6.

Addresses are written ``host:port`` or ``[ipv6]:port`` and parsed into :class:`TcpAddress`.
Operating system errors become ember errors at this seam, chained with ``from``:
``socket.timeout`` becomes :class:`~ember.kernel.errors.EmberTimeout`, every other
``OSError`` a :class:`~ember.kernel.errors.TransportError` that names ``host:port``, and
any use after ``close()`` raises :class:`~ember.kernel.errors.ConnectionClosed`.

Streams set ``TCP_NODELAY``, because ember writes each frame in one call and waits for
the reply, which Nagle's algorithm would delay. The transport does not encrypt; use it
beyond loopback only with an authenticator, or through the ``nacl`` transport.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import selectors
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ember.kernel.errors import (
    ConnectionClosed,
    EmberTimeout,
    TransportError,
    UsageError,
)
from ember.kernel.hookspecs import hookimpl
from ember.kernel.transport import (
    LOCAL_ADDRESS,
    PEER_ADDRESS,
    Listener,
    Stream,
    Transport,
)

__all__ = ["DEFAULT_BACKLOG", "SocketStream", "TcpAddress", "TcpListener", "TcpStream",
           "TcpTransport", "ember_transports"]

#: Pending connections the kernel queues for ``accept`` unless ``options["backlog"]``
#: sets another number.
DEFAULT_BACKLOG = 128

_MAX_PORT = 65535
_EXAMPLE = "expected HOST:PORT, for example 127.0.0.1:5555, [::1]:5555 or example.org:5555"

# A DNS name (RFC 1123 labels, plus '_', which internal names often use), with an optional
# final dot. Non-ASCII names must be given in their IDNA ("xn--") form.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?"
)
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A TCP endpoint: a host name, IPv4 address or IPv6 address, and a port.

    An IPv6 address is stored without brackets. Port 0 is valid here, because a listener
    binds it to pick a free port, but :meth:`TcpTransport.parse_address` accepts it only
    for a listening address.
    """

    host: str
    port: int

    def __post_init__(self) -> None:
        problem = _host_problem(self.host) or _port_problem(self.port)
        if problem is not None:
            raise UsageError(f"invalid TCP address: {problem}")

    def __str__(self) -> str:
        return _format(self)


def _host_problem(host: object) -> str | None:
    """Describe what is wrong with ``host``, or return ``None`` if it is valid."""
    if not isinstance(host, str):
        return f"the host must be a str, not {type(host).__name__}"
    if not host:
        return "the host is empty"

    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"the host {host!r} is not a valid IPv6 address"
        return None

    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"the host {host!r} is not a valid IPv4 address"
        return None

    if not _HOST_NAME.fullmatch(host):
        return (
            f"the host {host!r} is not a valid host name (letters, digits, '-', '_' and "
            f"dots; write other names in their xn-- form)"
        )
    return None


def _port_problem(port: object) -> str | None:
    """Describe what is wrong with ``port``, or return ``None`` if it is valid."""
    if type(port) is not int:
        return f"the port must be an int, not {type(port).__name__}"
    if port < 0:
        return f"the port {port} is negative"
    if port > _MAX_PORT:
        return f"the port {port} is above {_MAX_PORT}"
    return None


def _format(address: TcpAddress) -> str:
    if ":" in address.host:
        return f"[{address.host}]:{address.port}"
    return f"{address.host}:{address.port}"


def _split_address(text: str) -> tuple[str, str]:
    """Split ``text`` into host and port text, or raise ValueError naming the part."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError("'[' is not closed by ']'")
        if not host:
            raise ValueError("the host is empty")
        if ":" not in host:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address")
        if not rest:
            raise ValueError("the port is missing")
        if not rest.startswith(":"):
            raise ValueError(f"{rest!r} follows ']', where only ':PORT' may")
        return host, rest[1:]

    host, colon, port_text = text.rpartition(":")
    if not colon:
        raise ValueError("the port is missing")
    if ":" in host:
        raise ValueError(
            f"an IPv6 address needs brackets before a port: write [{host}]:{port_text}"
        )
    return host, port_text


def _parse_port(port_text: str) -> int:
    if not port_text:
        raise ValueError("the port is empty")
    if port_text.startswith("-") and port_text[1:].isascii() and port_text[1:].isdigit():
        raise ValueError(f"the port {port_text} is negative")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"the port {port_text!r} is not a number")

    port = int(port_text)
    if port > _MAX_PORT:
        raise ValueError(f"the port {port_text} is above {_MAX_PORT}")
    return port


def send_all_parts(sock: socket.socket, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """Send every byte of ``parts``, in order, with as few ``sendmsg`` calls as possible.

    A blocking socket sends everything in one call unless a send timeout or a signal
    interrupts it; then the call returns the count sent, and the loop resumes after it.
    """
    pending = [memoryview(part).cast("B") for part in parts if len(part)]
    while pending:
        sent = sock.sendmsg(pending)
        while sent:
            first = pending[0]
            if sent < len(first):
                pending[0] = first[sent:]
                break
            sent -= len(first)
            del pending[0]


def _timeval(seconds: float | None) -> bytes:
    """Pack ``seconds`` as a ``struct timeval`` for SO_RCVTIMEO and SO_SNDTIMEO.

    A zero timeval means "no timeout" to the kernel, so ``None`` packs as zero and a
    requested 0 packs as one microsecond, the shortest wait the kernel can express.
    """
    if seconds is None:
        return struct.pack("@ll", 0, 0)
    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000)
    if whole == 0 and micro == 0:
        micro = 1
    return struct.pack("@ll", whole, micro)


def _describe_os_error(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def _check_timeout(seconds: float | None) -> None:
    """Accept ``None`` (wait forever) or a finite number of seconds >= 0."""
    if seconds is not None and not (_is_finite_number(seconds) and seconds >= 0):
        raise UsageError(
            f"invalid timeout {seconds!r}: expected None or a number of seconds >= 0"
        )


def _check_connect_timeout(seconds: float) -> None:
    if not (_is_finite_number(seconds) and seconds > 0):
        raise UsageError(f"invalid timeout {seconds!r}: expected a number of seconds > 0")


def _is_finite_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


class SocketStream(Stream):
    """A connected stream socket; the TCP and Unix transports share it.

    ``write`` sends each call with one ``sendall``, and ``write_parts`` with one
    ``sendmsg`` unless the kernel accepts only part of the data. A write that times out
    or fails may have sent part of the data, so the caller must close the stream
    afterwards. The stream starts without a timeout; :meth:`set_timeout` sets one.
    """

    def __init__(self, sock: socket.socket, peer_address: object,
                 local_address: object) -> None:
        sock.settimeout(None)
        self._socket = sock
        self._peer_address = peer_address
        self._local_address = local_address
        self._timeout: float | None = None
        self._close_lock = threading.Lock()
        self._closed = False

    def read(self, max_bytes: int) -> bytes:
        if type(max_bytes) is not int or max_bytes < 1:
            raise UsageError(f"invalid max_bytes {max_bytes!r}: expected an int >= 1")
        self._raise_if_closed("read from")

        try:
            data = self._socket.recv(max_bytes)
        except (TimeoutError, BlockingIOError) as error:
            raise self._timeout_error("reading from", "read") from error
        except OSError as error:
            raise self._failure("reading from", error) from error

        # close() in another thread shuts the socket down, which ends a blocked recv
        # with b"" as if the peer had closed.
        if not data:
            self._raise_if_closed("read from")
        return data

    def read_into(self, buffer: memoryview) -> int:
        if len(buffer) < 1:
            raise UsageError("invalid buffer of 0 bytes for read_into(): pass at least 1 byte")
        self._raise_if_closed("read from")

        try:
            count = self._socket.recv_into(buffer)
        except (TimeoutError, BlockingIOError) as error:
            raise self._timeout_error("reading from", "read") from error
        except OSError as error:
            raise self._failure("reading from", error) from error

        if not count:
            self._raise_if_closed("read from")
        return count

    def write(self, data: bytes) -> None:
        self._raise_if_closed("write to")

        try:
            self._socket.sendall(data)
        except (TimeoutError, BlockingIOError) as error:
            raise self._timeout_error("writing to", "write") from error
        except OSError as error:
            raise self._failure("writing to", error) from error

    def write_parts(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self._raise_if_closed("write to")

        try:
            send_all_parts(self._socket, parts)
        except (TimeoutError, BlockingIOError) as error:
            raise self._timeout_error("writing to", "write") from error
        except OSError as error:
            raise self._failure("writing to", error) from error

    def set_timeout(self, seconds: float | None) -> None:
        _check_timeout(seconds)
        with self._close_lock:
            if self._closed:
                return
            # The socket stays in blocking mode and the kernel enforces the timeout
            # (SO_RCVTIMEO, SO_SNDTIMEO). Python's own socket timeout polls before every
            # recv and send, which costs a system call and a second release of the GIL
            # per operation; in bench/run.py it made a threaded daemon about twice as slow.
            timeval = _timeval(seconds)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            self._timeout = seconds

    def shutdown_write(self) -> None:
        self._raise_if_closed("shut down")

        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as error:
            raise self._failure("shutting down writing to", error) from error

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True

        # shutdown() wakes a recv or sendall blocked in another thread; close() alone
        # does not on Linux. ENOTCONN means the peer is already gone, which is fine.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()

    def get_peer_detail(self, key: str, default: object = None) -> object:
        if key == PEER_ADDRESS:
            return self._peer_address
        if key == LOCAL_ADDRESS:
            return self._local_address
        return default

    def _raise_if_closed(self, action: str) -> None:
        if self._closed:
            raise ConnectionClosed(
                f"cannot {action} {self._peer_address}: the stream is closed"
            )

    def _timeout_error(self, action: str, operation: str) -> EmberTimeout:
        return EmberTimeout(
            f"{action} {self._peer_address} timed out after {self._timeout} s",
            operation=operation,
            timeout=self._timeout,
        )

    def _failure(self, action: str, error: OSError) -> TransportError:
        if self._closed:
            return ConnectionClosed(f"{action} {self._peer_address} failed: the stream is closed")
        return TransportError(
            f"{action} {self._peer_address} failed: {_describe_os_error(error)}"
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._local_address} -> {self._peer_address} {state}>"


class TcpStream(SocketStream):
    """A connected TCP socket with ``TCP_NODELAY`` set."""

    def __init__(self, sock: socket.socket, peer_address: TcpAddress) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        local_host, local_port = sock.getsockname()[:2]
        super().__init__(sock, peer_address, TcpAddress(local_host, local_port))


class TcpListener(Listener):
    """A listening TCP socket.

    ``accept`` waits in a selector on the socket and on a wake-up socket pair, so
    :meth:`close` from another thread ends a blocked ``accept`` at once. Closing a
    listening socket alone does not wake ``accept`` on Linux.
    """

    def __init__(self, sock: socket.socket, address: TcpAddress) -> None:
        self.address = address

        sock.setblocking(False)
        self._socket = sock
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)

        # The selector and the wake-up pair are released by whichever of close() and
        # the last running accept() finishes last.
        self._lock = threading.Lock()
        self._closed = False
        self._running_accepts = 0

    def accept(self, timeout: float | None) -> TcpStream | None:
        _check_timeout(timeout)
        with self._lock:
            if self._closed:
                raise ConnectionClosed(f"cannot accept on {self.address}: the listener is closed")
            self._running_accepts += 1

        try:
            return self._accept_one(timeout)
        finally:
            self._leave_accept()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            release = self._running_accepts == 0

        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\x00")
        self._socket.close()
        if release:
            self._release_wakeup()

    def _accept_one(self, timeout: float | None) -> TcpStream | None:
        ready = self._selector.select(timeout)
        if self._closed:
            raise ConnectionClosed(f"cannot accept on {self.address}: the listener is closed")
        if not ready:
            return None

        try:
            sock, peer = self._socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            # Another thread took the connection, or the client gave up before accept.
            return None
        except OSError as error:
            if self._closed:
                raise ConnectionClosed(
                    f"cannot accept on {self.address}: the listener is closed"
                ) from error
            raise TransportError(
                f"accepting a connection on {self.address} failed: "
                f"{_describe_os_error(error)}"
            ) from error

        try:
            return TcpStream(sock, TcpAddress(peer[0], peer[1]))
        except OSError:
            # The client reset the connection before it could be set up.
            sock.close()
            return None

    def _leave_accept(self) -> None:
        with self._lock:
            self._running_accepts -= 1
            release = self._closed and self._running_accepts == 0
        if release:
            self._release_wakeup()

    def _release_wakeup(self) -> None:
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening"
        return f"<TcpListener {self.address} {state}>"


class TcpTransport(Transport):
    """TCP streams and listeners for ``ember+tcp://HOST:PORT/...`` URIs."""

    name = "tcp"
    is_encrypted = False

    def parse_address(self, text: str, *, listening: bool = False) -> TcpAddress:
        """Parse ``host:port``, ``[ipv6]:port`` or ``name:port`` into a :class:`TcpAddress`.

        Port 0 is accepted only with ``listening=True``, where binding it picks a free
        port. Raises :class:`~ember.kernel.errors.UsageError` naming the invalid part.
        """
        if not isinstance(text, str):
            raise UsageError(
                f"invalid TCP address {text!r}: expected a str such as 127.0.0.1:5555"
            )

        try:
            host_text, port_text = _split_address(text)
            port = _parse_port(port_text)
        except ValueError as error:
            raise UsageError(f"invalid TCP address {text!r}: {error}; {_EXAMPLE}") from None

        problem = _host_problem(host_text)
        if problem is not None:
            raise UsageError(f"invalid TCP address {text!r}: {problem}; {_EXAMPLE}")
        if port == 0 and not listening:
            raise UsageError(
                f"invalid TCP address {text!r}: port 0 is allowed only for a listen "
                f"address, where it picks a free port; give the port to connect to"
            )
        return TcpAddress(host_text, port)

    def format_address(self, address: TcpAddress) -> str:
        return _format(_require_address(address))

    def is_loopback(self, address: TcpAddress) -> bool:
        """Return ``True`` for ``localhost``, 127.0.0.0/8 and ::1.

        Other host names are not resolved, so they count as reachable from elsewhere, and
        so does an IPv4-mapped address such as ``::ffff:127.0.0.1``.
        """
        host = _require_address(address).host
        if host.lower().rstrip(".") == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def listen(self, address: TcpAddress, options: Mapping[str, object]) -> TcpListener:
        """Bind ``address`` and listen, with ``SO_REUSEADDR`` set on POSIX systems.

        ``options["backlog"]`` sets the length of the pending-connection queue
        (default :data:`DEFAULT_BACKLOG`). A host name binds its first resolved address.
        """
        address = _require_address(address)
        backlog = options.get("backlog", DEFAULT_BACKLOG)
        if type(backlog) is not int or backlog < 1:
            raise UsageError(f"invalid backlog {backlog!r}: expected an int >= 1")

        family, sockaddr = self._resolve(address, passive=True)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Lets a restarted daemon bind its port while old connections sit in
            # TIME_WAIT. Windows gives SO_REUSEADDR another meaning, so only POSIX sets it.
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            bound_port = sock.getsockname()[1]
        except OSError as error:
            sock.close()
            raise TransportError(
                f"cannot listen on {address}: {_describe_os_error(error)}"
            ) from error

        return TcpListener(sock, TcpAddress(address.host, bound_port))

    def connect(
        self, address: TcpAddress, timeout: float, options: Mapping[str, object]
    ) -> TcpStream:
        """Connect to ``address`` within ``timeout`` seconds.

        The stream returned has no timeout until :meth:`TcpStream.set_timeout` sets one.
        """
        address = _require_address(address)
        _check_connect_timeout(timeout)

        try:
            sock = socket.create_connection((address.host, address.port), timeout=timeout)
        except TimeoutError as error:
            raise EmberTimeout(
                f"connecting to {address} timed out after {timeout} s",
                operation="connect",
                timeout=timeout,
            ) from error
        except socket.gaierror as error:
            raise TransportError(
                f"cannot connect to {address}: cannot resolve host {address.host!r}: "
                f"{_describe_os_error(error)}"
            ) from error
        except OSError as error:
            raise TransportError(
                f"cannot connect to {address}: {_describe_os_error(error)}"
            ) from error

        try:
            return TcpStream(sock, address)
        except OSError as error:
            sock.close()
            raise TransportError(
                f"cannot connect to {address}: {_describe_os_error(error)}"
            ) from error

    def _resolve(self, address: TcpAddress, *, passive: bool) -> tuple[int, tuple[object, ...]]:
        flags = socket.AI_PASSIVE if passive else 0
        try:
            infos = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=flags
            )
        except socket.gaierror as error:
            raise TransportError(
                f"cannot resolve host {address.host!r} of {address}: "
                f"{_describe_os_error(error)}"
            ) from error

        family, _type, _proto, _canonical_name, sockaddr = infos[0]
        return family, sockaddr


def _require_address(address: object) -> TcpAddress:
    if not isinstance(address, TcpAddress):
        raise UsageError(
            f"invalid address {address!r} for the tcp transport: expected a TcpAddress, "
            f"for example from TcpTransport.parse_address('127.0.0.1:5555')"
        )
    return address


@hookimpl
def ember_transports() -> list[Transport]:
    return [TcpTransport()]
