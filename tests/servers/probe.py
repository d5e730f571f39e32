"""A daemon process for end-to-end tests, publishing :class:`Probe` objects.

Run as ``python tests/servers/probe.py [--foreground]``. The daemon takes its settings
from ``EMBER_*`` environment variables. The process registers one Probe instance and the
Probe class in each instance mode, prints one JSON line that maps object ids to URIs,
and serves until its standard input closes or it receives SIGTERM. The daemon logs to
standard error at INFO level, so tests can read the warnings it emits.

Every Probe method that runs appends its name to a journal shared by the whole process,
and ``Probe.__init__`` appends ``"__init__"``. Tests read the journal through
:meth:`Probe.journal` to prove that a rejected request ran nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

from ember import Daemon, current_call, expose, oneway

__all__ = ["Probe", "ProbeError", "OBJECT_IDS", "journal_entries", "register_all"]

_journal: list[str] = []
_journal_lock = threading.Lock()


def _record(name: str) -> None:
    with _journal_lock:
        _journal.append(name)


def journal_entries() -> list[str]:
    """Return a copy of the journal of this process."""
    with _journal_lock:
        return list(_journal)


class ProbeError(Exception):
    """An exception type that exists only on the server side."""


def _leak() -> None:
    _record("a.b.c")


@expose
class Probe:
    """Methods covering the call shapes the end-to-end tests need."""

    def __init__(self) -> None:
        _record("__init__")
        self._label = "initial"
        self._counter = 0
        self._counter_lock = threading.Lock()
        # Reachable only by attribute traversal ("a.b.c"), which the daemon rejects.
        self._nested = SimpleNamespace(b=SimpleNamespace(c=_leak))

    def echo(self, value: Any) -> Any:
        _record("echo")
        return value

    def echo_type(self, value: Any) -> list[Any]:
        """Return ``value`` with the name of the type the server received."""
        _record("echo_type")
        return [value, type(value).__name__]

    def ping(self) -> str:
        _record("ping")
        return "pong"

    def sleep(self, seconds: float) -> float:
        _record("sleep")
        time.sleep(min(max(seconds, 0.0), 30.0))
        return seconds

    @oneway
    def sleep_oneway(self, seconds: float) -> None:
        _record("sleep_oneway:start")
        time.sleep(min(max(seconds, 0.0), 30.0))
        _record("sleep_oneway:end")

    def raise_builtin(self, kind: str, message: str) -> None:
        _record("raise_builtin")
        errors: dict[str, type[Exception]] = {
            "ValueError": ValueError,
            "KeyError": KeyError,
            "ZeroDivisionError": ZeroDivisionError,
            "PermissionError": PermissionError,
        }
        raise errors[kind](message)

    def raise_custom(self, message: str) -> None:
        _record("raise_custom")
        raise ProbeError(message)

    def count(self) -> int:
        """Increment and return this instance's counter, which identifies instance modes."""
        _record("count")
        with self._counter_lock:
            self._counter += 1
            return self._counter

    def peer(self) -> str:
        _record("peer")
        return str(current_call().peer_address)

    def journal(self) -> list[str]:
        """Return the process-wide journal; this method does not record itself."""
        return journal_entries()

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        _record("label:set")
        self._label = value

    @property
    def a(self) -> SimpleNamespace:
        """The first step of "a.b.c": reading this property records nothing, while
        following the path down to ``c`` and calling it would record "a.b.c"."""
        return self._nested

    def _private(self) -> None:
        _record("_private")


OBJECT_IDS = ("probe", "probe-single", "probe-session", "probe-percall")


def register_all(daemon: Daemon) -> dict[str, str]:
    """Register a Probe instance and the Probe class in each mode; return id -> URI."""
    uris = {"probe": daemon.register(Probe(), object_id="probe")}
    for mode in ("single", "session", "percall"):
        object_id = f"probe-{mode}"
        uris[object_id] = daemon.register(Probe, object_id=object_id, instance_mode=mode)
    return uris


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--foreground", action="store_true",
                        help="serve in the main thread with serve_forever()")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

    daemon = Daemon()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def wait_for_stdin_close() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_close, daemon=True).start()
    print(json.dumps({"pid": os.getpid(), "uris": register_all(daemon)}), flush=True)

    if args.foreground:
        def close_on_stop() -> None:
            stop.wait()
            daemon.close(grace=2.0)

        closer = threading.Thread(target=close_on_stop)
        closer.start()
        daemon.serve_forever()
        closer.join()
    else:
        daemon.start()
        while not stop.wait(0.2):
            pass
        daemon.close(grace=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
