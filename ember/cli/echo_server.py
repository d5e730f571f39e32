"""``ember echo-server``: serve a test object for trying ember against other code."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

from ember.remote.daemon import Daemon
from ember.remote.exposure import expose, oneway

__all__ = ["EchoService", "add_parser", "run"]


@expose
class EchoService:
    """Methods that cover the basic call shapes: a value, an error, a delay, one-way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._oneway_calls = 0

    def ping(self) -> None:
        """Do nothing: the smallest possible call."""

    def echo(self, value: Any) -> Any:
        """Return ``value`` unchanged."""
        return value

    def error(self, message: str = "requested failure") -> None:
        """Raise ValueError(message)."""
        raise ValueError(message)

    def slow(self, seconds: float) -> float:
        """Sleep ``seconds`` (at most 60) and return it."""
        if not 0 <= seconds <= 60:
            raise ValueError(f"seconds must be between 0 and 60, got {seconds!r}")
        time.sleep(seconds)
        return seconds

    @oneway
    def notify(self, seconds: float = 0.0) -> None:
        """One-way: sleep ``seconds`` (at most 60), then count the call."""
        time.sleep(min(max(seconds, 0.0), 60.0))
        with self._lock:
            self._oneway_calls += 1

    @property
    def oneway_calls(self) -> int:
        """Number of one-way calls completed so far."""
        with self._lock:
            return self._oneway_calls


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "echo-server", help="serve a test object with echo, error, slow and one-way methods",
        description="Serve EchoService (ping, echo, error, slow, notify) and print its URI. "
                    "Stop with Ctrl-C.")
    parser.add_argument("--host", help="interface to bind (default: EMBER_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port to bind (default: a free port)")
    parser.add_argument("--object-id", default="echo", help="object id in the URI")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Daemon(host=args.host, port=args.port) as daemon:
        uri = daemon.register(EchoService(), object_id=args.object_id)
        daemon.start()
        print(uri, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0
