"""Unix domain socket transport: ``ember+unix://PERCENT-ENCODED-PATH/OBJECT_ID``.

The address of a URI is the socket path percent-encoded, ``/`` included, so
``/run/app/my sock`` becomes ``ember+unix://%2Frun%2Fapp%2Fmy%20sock/kv``. Code that
passes an address directly (``Daemon(address=...)``) may also give the plain absolute
path: text starting with ``/`` is taken literally, any other text is percent-decoded.

Invariants:

- The socket file is created while the process umask grants nothing to group and
  others, then set to ``unix_socket_mode``, so it is never wider than requested.
- A path that exists is never removed or replaced unless it is a stale socket: a socket
  file on which nobody accepts connections. Anything else there is an error.
- On close the file is removed only if it is still the one this listener created
  (same device and inode).
- Linux abstract addresses (``@name``) are refused unless ``unix_allow_abstract`` is
  set, because file permissions cannot guard them.
- The listener reads each peer's credentials (``SO_PEERCRED``) and drops a peer whose
  uid and gid are not allowed before a single byte is exchanged.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_from_bytes, unquote_to_bytes

from ember.kernel.errors import (
    ConfigError,
    ConnectionClosed,
    EmberTimeout,
    TransportError,
    UsageError,
)
from ember.kernel.hookspecs import hookimpl
from ember.kernel.transport import (
    PEER_GID,
    PEER_PID,
    PEER_UID,
    Listener,
    Stream,
    Transport,
)
from ember.plugins.transports.tcp import SocketStream

__all__ = ["UnixAddress", "UnixListener", "UnixStream", "UnixTransport", "ember_transports"]

log = logging.getLogger("ember.transport.unix")

_CREDENTIALS: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
_BACKLOG: Final = 128
# Longest path sockaddr_un holds on Linux, not counting the terminating NUL.
_MAX_PATH_BYTES: Final = 107
_STALE_PROBE_TIMEOUT: Final = 1.0


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A socket path, or an abstract name when ``abstract`` is true (Linux only)."""

    path: bytes
    abstract: bool = False

    def socket_name(self) -> bytes:
        return b"\0" + self.path if self.abstract else self.path

    def __str__(self) -> str:
        text = os.fsdecode(self.path)
        return "@" + text if self.abstract else text


class UnixStream(SocketStream):
    """A connected Unix socket; a server-side stream also carries the peer's credentials."""

    def __init__(self, sock: socket.socket, address: UnixAddress,
                 credentials: tuple[int, int, int] | None = None) -> None:
        super().__init__(sock, address, address)
        self._credentials: dict[str, object] = {}
        if credentials is not None:
            pid, uid, gid = credentials
            self._credentials = {PEER_PID: pid, PEER_UID: uid, PEER_GID: gid}

    def get_peer_detail(self, key: str, default: object = None) -> object:
        if key in self._credentials:
            return self._credentials[key]
        return super().get_peer_detail(key, default)


class UnixListener(Listener):
    """A listening Unix socket that admits only allowed peers."""

    def __init__(self, sock: socket.socket, address: UnixAddress,
                 allowed_uids: frozenset[int], allowed_gids: frozenset[int]) -> None:
        self._socket = sock
        self.address = address
        self._allowed_uids = allowed_uids
        self._allowed_gids = allowed_gids
        self._closed = False
        self._close_lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        if not address.abstract:
            info = os.lstat(address.path)
            self._identity = (info.st_dev, info.st_ino)

    def accept(self, timeout: float | None) -> Stream | None:
        if self._closed:
            raise ConnectionClosed("the listener is closed")
        try:
            self._socket.settimeout(timeout)
            connection, _ = self._socket.accept()
        except TimeoutError:
            return None
        except OSError as error:
            if self._closed:
                raise ConnectionClosed("the listener is closed") from error
            raise TransportError(f"accept on {self.address} failed: "
                                 f"{error.strerror or error}") from error
        connection.settimeout(None)

        raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        pid, uid, gid = _CREDENTIALS.unpack(raw)
        if not self._is_allowed(uid, gid):
            log.warning("rejected a connection on %s from uid %d (gid %d, pid %d): not in "
                        "unix_allowed_uids or unix_allowed_gids", self.address, uid, gid, pid)
            connection.close()
            return None
        return UnixStream(connection, self.address, (pid, uid, gid))

    def _is_allowed(self, uid: int, gid: int) -> bool:
        if not self._allowed_uids and not self._allowed_gids:
            return True
        return uid in self._allowed_uids or gid in self._allowed_gids

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        if self._identity is not None:
            _remove_if_ours(self.address.path, self._identity)


class UnixTransport(Transport):
    """Unix domain sockets: local only, with file permissions and peer credentials."""

    name = "unix"

    def parse_address(self, text: str, *, listening: bool = False) -> UnixAddress:
        if not isinstance(text, str) or not text:
            raise UsageError(f"invalid Unix socket address {text!r}: expected an absolute "
                             "path, percent-encoded in URIs (%2Ftmp%2Fapp.sock)")
        raw = os.fsencode(text) if text.startswith("/") else unquote_to_bytes(text)
        if raw.startswith((b"@", b"\0")):
            name = raw[1:]
            if not name or b"\0" in name:
                raise UsageError(f"invalid abstract Unix socket address {text!r}")
            return UnixAddress(name, abstract=True)
        if not raw.startswith(b"/"):
            raise UsageError(f"invalid Unix socket address {text!r}: expected an absolute "
                             "path (relative paths depend on the working directory)")
        if b"\0" in raw:
            raise UsageError(f"invalid Unix socket address {text!r}: a path cannot contain "
                             "NUL")
        if len(raw) > _MAX_PATH_BYTES:
            raise UsageError(f"Unix socket path {text!r} is {len(raw)} bytes long; the "
                             f"limit is {_MAX_PATH_BYTES} bytes. Choose a shorter path")
        return UnixAddress(raw)

    def format_address(self, address: UnixAddress) -> str:
        prefix = b"@" if address.abstract else b""
        return quote_from_bytes(prefix + address.path, safe="")

    def is_loopback(self, address: UnixAddress) -> bool:
        return True

    def listen(self, address: UnixAddress, options: Mapping[str, object]) -> UnixListener:
        _check_abstract(address, options)
        mode = parse_socket_mode(options.get("unix_socket_mode", "600"))
        allowed_uids = _parse_ids(options.get("unix_allowed_uids", ()), "unix_allowed_uids",
                                  _user_id)
        allowed_gids = _parse_ids(options.get("unix_allowed_gids", ()), "unix_allowed_gids",
                                  _group_id)
        if not address.abstract:
            _remove_stale_socket(address)

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _bind_private(sock, address)
            if not address.abstract:
                os.chmod(address.path, mode)
            sock.listen(_BACKLOG)
        except OSError as error:
            sock.close()
            if error.errno == errno.EADDRINUSE:
                raise TransportError(
                    f"cannot listen on {address}: the path already exists (created after "
                    "the check for a stale socket); remove it or choose another path"
                ) from error
            raise TransportError(f"cannot listen on {address}: "
                                 f"{error.strerror or error}") from error
        log.debug("listening on %s with mode %04o", address, mode)
        return UnixListener(sock, address, allowed_uids, allowed_gids)

    def connect(self, address: UnixAddress, timeout: float,
                options: Mapping[str, object]) -> UnixStream:
        _check_abstract(address, options)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.socket_name())
        except TimeoutError as error:
            sock.close()
            raise EmberTimeout(f"connecting to {address} timed out after {timeout:.3g} s",
                               operation="connect", timeout=timeout) from error
        except OSError as error:
            sock.close()
            raise TransportError(f"cannot connect to Unix socket {address}: "
                                 f"{error.strerror or error}") from error
        sock.settimeout(None)
        return UnixStream(sock, address)


def parse_socket_mode(value: object) -> int:
    """Parse ``unix_socket_mode`` (octal text such as ``"600"`` or ``"0o660"``)."""
    text = str(value).strip().lower().removeprefix("0o")
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"invalid unix_socket_mode {value!r}: expected octal permissions "
                          "from 000 to 777, such as 600 or 660", setting="unix_socket_mode")
    return mode


def _check_abstract(address: UnixAddress, options: Mapping[str, object]) -> None:
    if address.abstract and not options.get("unix_allow_abstract", False):
        raise UsageError(
            f"abstract Unix socket address {address} is refused: any local user can "
            "connect to it, because no file permissions apply. Use a socket path, or set "
            "unix_allow_abstract=true together with an authenticator")


def _bind_private(sock: socket.socket, address: UnixAddress) -> None:
    """Bind while the umask grants nothing to group and others.

    The umask is process-wide, so for this instant a file another thread creates is
    at most as permissive as usual, never more.
    """
    previous = os.umask(0o177)
    try:
        sock.bind(address.socket_name())
    finally:
        os.umask(previous)


def _remove_stale_socket(address: UnixAddress) -> None:
    """Remove ``address`` only if it is a socket file that nobody accepts on."""
    try:
        info = os.lstat(address.path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise TransportError(
            f"cannot listen on {address}: the path exists and is not a socket; ember never "
            "removes it. Choose another path or remove it yourself")

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_STALE_PROBE_TIMEOUT)
    try:
        probe.connect(address.path)
    except ConnectionRefusedError:
        pass  # nobody accepts: the socket is stale
    except OSError as error:
        raise TransportError(f"cannot listen on {address}: the socket file exists and "
                             f"probing it failed ({error.strerror or error}); remove it "
                             "yourself if it is stale") from error
    else:
        raise TransportError(f"cannot listen on {address}: another server is accepting "
                             "connections on it. Stop it or choose another path")
    finally:
        probe.close()

    if _remove_if_ours(address.path, (info.st_dev, info.st_ino)):
        log.info("removed the stale socket file %s", address)


def _remove_if_ours(path: bytes, identity: tuple[int, int]) -> bool:
    """Unlink ``path`` if it is still the file ``identity`` (device, inode) names."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) != identity:
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _parse_ids(values: object, setting: str,
               convert: Callable[[str, str], int]) -> frozenset[int]:
    if isinstance(values, str):
        values = tuple(part.strip() for part in values.split(",") if part.strip())
    if not isinstance(values, (tuple, list, frozenset, set)):
        raise ConfigError(f"invalid {setting} {values!r}: expected a list of ids or names",
                          setting=setting)
    return frozenset(convert(str(value), setting) for value in values)


def _user_id(text: str, setting: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ConfigError(f"unknown user {text!r} in {setting}: give a user name or a "
                          "numeric uid", setting=setting) from None


def _group_id(text: str, setting: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError(f"unknown group {text!r} in {setting}: give a group name or a "
                          "numeric gid", setting=setting) from None


@hookimpl
def ember_transports() -> list[Transport]:
    return [UnixTransport()]
