"""TCP transport (IPv4 and IPv6): ``ember+tcp://HOST:PORT/OBJECT_ID``.

NOTE: provisional implementation; the full version with its own tests replaces it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ember.kernel.errors import ConnectionClosed, EmberTimeout, TransportError, UsageError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.transport import LOCAL_ADDRESS, PEER_ADDRESS, Listener, Stream, Transport

__all__ = ["TcpAddress", "TcpTransport", "ember_transports"]


@dataclass(frozen=True, slots=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class TcpStream(Stream):
    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        self._closed = False
        self._lock = threading.Lock()
        peer = sock.getpeername()
        local = sock.getsockname()
        self._details = {PEER_ADDRESS: TcpAddress(peer[0], peer[1]),
                         LOCAL_ADDRESS: TcpAddress(local[0], local[1])}

    def read(self, max_bytes: int) -> bytes:
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        try:
            return self._socket.recv(max_bytes)
        except TimeoutError as error:
            raise EmberTimeout("read timed out", operation="read") from error
        except OSError as error:
            raise self._failure("read", error) from error

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionClosed("the connection is closed")
        try:
            self._socket.sendall(data)
        except TimeoutError as error:
            raise EmberTimeout("write timed out", operation="write") from error
        except OSError as error:
            raise self._failure("write", error) from error

    def _failure(self, operation: str, error: OSError) -> TransportError:
        if self._closed:
            return ConnectionClosed("the connection is closed")
        return TransportError(f"{operation} to {self._details[PEER_ADDRESS]} failed: {error}")

    def set_timeout(self, seconds: float | None) -> None:
        if not self._closed:
            self._socket.settimeout(seconds)

    def shutdown_write(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as error:
            raise self._failure("shutdown", error) from error

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self._socket.close()

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return self._details.get(key, default)


class TcpListener(Listener):
    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.address = TcpAddress(host, port)
        self._closed = False

    def accept(self, timeout: float | None) -> Stream | None:
        if self._closed:
            raise ConnectionClosed("the listener is closed")
        self._socket.settimeout(timeout)
        try:
            connection, _ = self._socket.accept()
        except TimeoutError:
            return None
        except OSError as error:
            if self._closed:
                raise ConnectionClosed("the listener is closed") from error
            raise TransportError(f"accept on {self.address} failed: {error}") from error
        connection.settimeout(None)
        return TcpStream(connection)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()


class TcpTransport(Transport):
    name = "tcp"

    def parse_address(self, text: str, *, listening: bool = False) -> TcpAddress:
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise UsageError(f"invalid TCP address {text!r}: expected [IPV6]:PORT")
            port_text = rest[1:]
        else:
            host, colon, port_text = text.rpartition(":")
            if not colon:
                raise UsageError(f"missing port in TCP address {text!r}: expected HOST:PORT")
            if ":" in host:
                raise UsageError(f"invalid TCP address {text!r}: put an IPv6 host in "
                                 "brackets, as in [::1]:5555")
        if not host:
            raise UsageError(f"missing host in TCP address {text!r}")
        if not port_text.isdigit():
            raise UsageError(f"invalid port {port_text!r} in TCP address {text!r}: expected "
                             "a number from 1 to 65535")
        port = int(port_text)
        if port > 65535 or (port == 0 and not listening):
            raise UsageError(f"invalid port {port} in TCP address {text!r}: expected a "
                             "number from 1 to 65535")
        return TcpAddress(host, port)

    def format_address(self, address: TcpAddress) -> str:
        return str(address)

    def is_loopback(self, address: TcpAddress) -> bool:
        if address.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(address.host).is_loopback
        except ValueError:
            return False

    def listen(self, address: TcpAddress, options: Mapping[str, object]) -> TcpListener:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address.host, address.port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            raise TransportError(f"cannot listen on {address}: {error}") from error
        return TcpListener(sock)

    def connect(self, address: TcpAddress, timeout: float,
                options: Mapping[str, object]) -> TcpStream:
        try:
            sock = socket.create_connection((address.host, address.port), timeout)
        except TimeoutError as error:
            raise EmberTimeout(f"connecting to {address} timed out after {timeout:.3g} s",
                               operation="connect", timeout=timeout) from error
        except OSError as error:
            raise TransportError(f"cannot connect to {address}: {error}") from error
        sock.settimeout(None)
        return TcpStream(sock)


@hookimpl
def ember_transports() -> list[Transport]:
    return [TcpTransport()]
