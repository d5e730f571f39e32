"""Adapters for the full RPC stacks: Pyro5 as the peer, and ember.

Each package is imported inside the functions, so a run of the floors alone needs
neither, and a missing or broken ember fails only its own column.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from contract import CALL_TIMEOUT_SECONDS, ServerHandle, SystemUnavailable

__all__ = [
    "EmberClient",
    "Pyro5Client",
    "check_ember",
    "check_pyro5",
    "start_ember_server",
    "start_pyro5_server",
]

OBJECT_ID = "bench"


# --- Pyro5 ---------------------------------------------------------------------------


def check_pyro5() -> None:
    try:
        import Pyro5.api  # noqa: F401
        import serpent  # noqa: F401
    except ImportError as error:
        raise SystemUnavailable(
            f"cannot import Pyro5 and serpent ({error}); install them with"
            " `pip install -e '.[bench]'` or leave pyro5 out of --only"
        ) from error


def _reset_pyro5_config() -> None:
    """Use Pyro5's built-in defaults, so no ``PYRO_*`` variable changes the result."""
    import Pyro5

    Pyro5.config.reset(use_environment=False)


class Pyro5Service:
    """The served object. With serpent, a bytes argument arrives as a base64 dict.

    ``echo`` turns it back into bytes with ``serpent.tobytes``, because a method that
    uses its bytes argument has to, and returns those bytes.
    """

    def ping(self) -> None:
        return None

    def echo(self, value: Any) -> Any:
        import serpent

        return serpent.tobytes(value)


def start_pyro5_server() -> ServerHandle:
    """Start Pyro5's default server (threaded) with its default serializer (serpent)."""
    import Pyro5.api

    _reset_pyro5_config()
    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Pyro5.api.expose(Pyro5Service), objectId=OBJECT_ID)
    return ServerHandle(str(uri), daemon.requestLoop, daemon.shutdown)


class Pyro5Client:
    """A Pyro5 proxy bound to one connection.

    The echo result is a serpent base64 dict, which ``echo`` converts with
    ``serpent.tobytes``, so that conversion is part of the measured time.
    """

    def __init__(self, uri: str) -> None:
        import Pyro5.api

        _reset_pyro5_config()
        self.echo_note: str | None = None
        self._proxy = Pyro5.api.Proxy(uri)
        self._proxy._pyroTimeout = CALL_TIMEOUT_SECONDS
        self._proxy._pyroBind()

    def ping(self) -> None:
        self._proxy.ping()

    def echo(self, payload: bytes) -> bytes | bytearray:
        import serpent

        returned = self._proxy.echo(payload)
        if self.echo_note is None:
            self.echo_note = _describe_returned(returned)
        data: bytes | bytearray = serpent.tobytes(returned)
        return data

    def close(self) -> None:
        self._proxy._pyroRelease()


def _describe_returned(value: Any) -> str:
    if isinstance(value, dict):
        fields = ", ".join(
            f"{key!r}: {type(item).__name__}" + (f" {item!r}" if key == "encoding" else "")
            for key, item in sorted(value.items())
        )
        return f"echo returned a dict {{{fields}}}, converted with serpent.tobytes"
    return f"echo returned {type(value).__name__}"


# --- ember ---------------------------------------------------------------------------


# The checkout that contains this benchmark. ember is imported from here first, so the
# benchmark measures the code next to it rather than another installed copy.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def _import_ember() -> Any:
    """Return the ember module, or raise SystemUnavailable naming what is missing."""
    if str(REPOSITORY_ROOT) not in sys.path:
        sys.path.insert(1, str(REPOSITORY_ROOT))
    try:
        import ember
        from ember import Daemon, Proxy, expose  # noqa: F401
    except ImportError as error:
        raise SystemUnavailable(
            f"cannot import Daemon, Proxy and expose from ember ({error}). The ember"
            f" column needs ember's remote-object layer in {REPOSITORY_ROOT / 'ember'};"
            " until it is there, pass `--only floors,pyro5`"
        ) from error
    return ember


def check_ember() -> None:
    _import_ember()


def start_ember_server() -> ServerHandle:
    """Start an ember daemon with its default stack (CBOR over TCP)."""
    ember = _import_ember()

    @ember.expose
    class EmberService:
        def ping(self) -> None:
            return None

        def echo(self, value: Any) -> Any:
            return value

    daemon = ember.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(EmberService(), object_id=OBJECT_ID)
    return ServerHandle(str(uri), daemon.serve_forever, daemon.close)


class EmberClient:
    """An ember proxy; it connects on the first call, made during warm-up."""

    echo_note: str | None = None

    def __init__(self, uri: str) -> None:
        ember = _import_ember()
        self._proxy = ember.Proxy(uri)

    def ping(self) -> None:
        self._proxy.ping()

    def echo(self, payload: bytes) -> bytes | bytearray:
        data: bytes | bytearray = self._proxy.echo(payload)
        return data

    def close(self) -> None:
        # A proxy's own methods start with ``_ember_``; ``close`` would be a remote call.
        self._proxy._ember_close()
