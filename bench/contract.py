"""The contract of a benchmarked system: a server handle and a client.

A server runs in its own process: the worker calls ``start_server()``, prints the
returned address on stdout, then calls ``serve_forever()`` until another thread calls
``close()``. A client runs in another process and makes blocking calls on one
connection. Every system serves the same two methods: ``ping()`` returns ``None`` and
``echo(value)`` returns its argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CALL_TIMEOUT_SECONDS",
    "BenchClient",
    "ServerHandle",
    "System",
    "SystemUnavailable",
]

# Upper bound on one call in every client, so a stalled server fails the run instead of
# hanging it. A 16 MiB echo through Pyro5 and serpent, the slowest call, took about 1 s
# on the machine described in bench/README.md, so the bound fires only on a fault.
CALL_TIMEOUT_SECONDS = 60.0


class SystemUnavailable(RuntimeError):
    """A system cannot run here, for example because its package does not import."""


@dataclass(frozen=True, slots=True)
class ServerHandle:
    """A started server: its address for clients, its loop and how to stop it."""

    address: str
    serve_forever: Callable[[], None]
    close: Callable[[], None]


class BenchClient(Protocol):
    """One connection to a system's server, used by one thread."""

    #: Description of what the system's API returned for ``echo``, set when the client
    #: had to convert it to bytes (Pyro5 with serpent returns a dict). ``None`` means the
    #: API returned bytes.
    echo_note: str | None

    def ping(self) -> None: ...

    def echo(self, payload: bytes) -> bytes | bytearray: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class System:
    """One row source of the benchmark: a floor, a peer or a stack of ember.

    ``check_available`` raises :class:`SystemUnavailable` with the reason and the fix
    when the system cannot run, and is called before any process is started.
    """

    name: str
    role: str
    description: str
    check_available: Callable[[], None]
    start_server: Callable[[], ServerHandle]
    make_client: Callable[[str], BenchClient]
