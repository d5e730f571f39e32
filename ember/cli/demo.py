"""``ember demo``: a daemon in a child process, called from this one.

The child publishes a small key-value store and prints its URI; this process calls it
through a proxy and reports each step. Closing the child's standard input tells it to
shut down cleanly, and the demo waits for it to exit, so no process is left behind.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from ember.kernel.errors import EmberError
from ember.remote.daemon import Daemon
from ember.remote.exposure import expose, oneway
from ember.remote.proxy import Proxy

__all__ = ["KeyValueStore", "add_parser", "run"]

_STARTUP_TIMEOUT = 30.0


@expose
class KeyValueStore:
    """A thread-safe in-memory key-value store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._visits: list[str] = []

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def get(self, key: str) -> Any:
        """Return the value stored under ``key``; raise KeyError if there is none."""
        with self._lock:
            return self._data[key]

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._data)

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._data)

    @oneway
    def record_visit(self, visitor: str) -> None:
        """One-way: takes half a second on purpose, which the caller does not wait for."""
        time.sleep(0.5)
        with self._lock:
            self._visits.append(visitor)

    def visits(self) -> list[str]:
        with self._lock:
            return list(self._visits)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a daemon in a child process and call it from this one",
        description="Start a daemon publishing a key-value store in a separate process, "
                    "call it through a proxy and print each step.")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.serve:
        return _serve()
    return _call_child()


def _serve() -> int:
    """Child side: publish the store, print the URI, exit when stdin closes."""
    with Daemon() as daemon:
        uri = daemon.register(KeyValueStore(), object_id="kvstore", instance_mode="single")
        daemon.start()
        print(f"{uri}\t{daemon.stack.describe()}", flush=True)
        sys.stdin.read()
    return 0


def _call_child() -> int:
    child = subprocess.Popen(
        [sys.executable, "-m", "ember", "demo", "--serve"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        line = _read_line(child, _STARTUP_TIMEOUT)
        uri, _, stack = line.partition("\t")
        print("ember demo: a daemon in a child process, called through a proxy")
        print(f"  stack:  {stack}")
        print(f"  daemon: pid {child.pid}, serving {uri}")
        with Proxy(uri) as store:
            _exercise(store)
    finally:
        code = _stop_child(child)
    print(f"  daemon stopped cleanly (exit code {code})")
    return 0 if code == 0 else 1


def _exercise(store: Any) -> None:
    when = datetime.datetime(2026, 12, 4, 9, 30, tzinfo=datetime.timezone(
        datetime.timedelta(hours=5, minutes=45)))
    values: dict[str, Any] = {
        "greeting": "grüß dich",
        "when": when,
        "price": decimal.Decimal("19.99"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\xff",
        "big": 2**100,
    }
    for key, value in values.items():
        store.put(key, value)
        echoed = store.get(key)
        same = "same type and value" if (type(echoed) is type(value) and echoed == value) \
            else "DIFFERENT"
        print(f"  put/get {key!r}: {echoed!r} ({type(echoed).__name__}, {same})")

    print(f"  keys() -> {store.keys()}")
    print(f"  size (a remote property) -> {store.size}")
    try:
        store.get("missing")
    except KeyError as error:
        print(f"  get('missing') raised KeyError({error.args[0]!r}) in this process")

    started = time.perf_counter()
    store.record_visit("demo")
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"  record_visit('demo') is one-way: returned after {elapsed_ms:.1f} ms although "
          "it runs 500 ms on the daemon")
    deadline = time.monotonic() + 5.0
    visits = store.visits()
    while not visits and time.monotonic() < deadline:
        time.sleep(0.05)
        visits = store.visits()
    print(f"  visits() -> {visits}")

    try:
        store._ember_invoke("__class__", (), {})
    except AttributeError as error:
        print(f"  calling '__class__' is rejected: {error}")


def _read_line(child: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(child.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if result and result[0].strip():
        return result[0].strip()
    code = child.poll()
    if code is not None:
        raise EmberError(f"the demo daemon exited with code {code} before printing its URI; "
                         "its error output is shown above")
    raise EmberError(f"the demo daemon did not print its URI within {timeout:.0f} s")


def _stop_child(child: subprocess.Popen[str]) -> int:
    if child.stdin is not None:
        child.stdin.close()
    try:
        return child.wait(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait(timeout=5)
