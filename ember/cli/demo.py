"""``ember demo``: a daemon in a child process, called from this one.

The child publishes a small key-value store and prints its URI; this process calls it
through a proxy and reports each step. Closing the child's standard input tells it to
shut down cleanly, and the demo waits for it to exit, so no process is left behind.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ember.cli.keygen import create_keys
from ember.kernel.config import Config
from ember.kernel.errors import EmberError, UsageError
from ember.kernel.registry import get_registry
from ember.remote.context import current_call
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

    def caller(self) -> str | None:
        """Return the identity the daemon proved for the caller (see current_call)."""
        return current_call().identity

    def visits(self) -> list[str]:
        with self._lock:
            return list(self._visits)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a daemon in a child process and call it from this one",
        description="Start a daemon publishing a key-value store in a separate process, "
                    "call it through a proxy and print each step.")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--stack", default=None, metavar="TRANSPORT+SERIALIZER[+AUTHENTICATOR]",
        help="stack to demonstrate, for example tcp+cbor+hmac, unix+cbor, nacl+cbor or "
             "nacl-unix+cbor+ed25519 (default: the configured stack)")
    parser.add_argument("--transport", default=None,
                        help="transport to demonstrate: tcp, unix, nacl or nacl-unix")
    parser.add_argument("--authenticator", default=None,
                        help="authenticator to demonstrate: hmac, ed25519 or none")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.serve:
        return _serve(args.address)
    return _call_child(_choose_stack(args))


def _serve(address: str | None) -> int:
    """Child side: publish the store, print the URI, exit when stdin closes."""
    with Daemon(address=address) as daemon:
        uri = daemon.register(KeyValueStore(), object_id="kvstore", instance_mode="single")
        daemon.start()
        print(f"{uri}\t{daemon.stack.describe()}", flush=True)
        sys.stdin.read()
    return 0


def _choose_stack(args: argparse.Namespace) -> dict[str, str]:
    """Return the transport, serializer and authenticator names the options select."""
    config = Config.from_environment()
    chosen = {"transport": config.transport, "serializer": config.serializer,
              "authenticator": config.authenticator}
    if args.stack is not None:
        parts = args.stack.split("+")
        if len(parts) not in (2, 3):
            raise UsageError(f"invalid --stack {args.stack!r}: expected "
                             "TRANSPORT+SERIALIZER[+AUTHENTICATOR], such as tcp+cbor+hmac")
        chosen["transport"], chosen["serializer"] = parts[0], parts[1]
        chosen["authenticator"] = parts[2] if len(parts) == 3 else ""
    if args.transport is not None:
        chosen["transport"] = args.transport
    if args.authenticator is not None:
        chosen["authenticator"] = args.authenticator
    if chosen["authenticator"] == "none":
        chosen["authenticator"] = ""

    # Check the names here, so a typo is reported by this process with the list of
    # registered names instead of by a child that exits.
    registry = get_registry(config)
    registry.compose(serializer=chosen["serializer"], transport=chosen["transport"],
                     authenticator=chosen["authenticator"] or None)
    return chosen


def _prepare_keys(folder: Path, stack: dict[str, str]) -> tuple[dict[str, str],
                                                                 dict[str, object],
                                                                 str | None]:
    """Create throwaway keys in ``folder``; return the daemon's environment, the proxy's
    settings and the daemon's address (a socket path, or ``None`` for TCP).

    The daemon learns only file paths, through its environment, so no key appears on a
    command line or in the process list.
    """
    transport, authenticator = stack["transport"], stack["authenticator"]
    environment = {"EMBER_TRANSPORT": transport, "EMBER_SERIALIZER": stack["serializer"],
                   "EMBER_ACCEPTED_SERIALIZERS": stack["serializer"],
                   "EMBER_AUTHENTICATOR": authenticator}
    settings: dict[str, object] = {"serializer": stack["serializer"],
                                   "authenticator": authenticator}
    address = str(folder / "demo daemon.sock") if "unix" in transport else None

    if transport.startswith("nacl"):
        server_key = folder / "nacl-server.key"
        create_keys("nacl", server_key)
        environment["EMBER_NACL_SERVER_KEY_FILE"] = str(server_key)
    if authenticator == "hmac":
        shared_key = folder / "hmac-shared.key"
        create_keys("hmac", shared_key)
        environment["EMBER_HMAC_KEY_FILE"] = str(shared_key)
        settings["hmac_key_file"] = str(shared_key)
    elif authenticator == "ed25519":
        client_key = folder / "client.key"
        daemon_key = folder / "daemon.key"
        create_keys("ed25519", client_key, name="demo-client")
        daemon_public = create_keys("ed25519", daemon_key, name="demo-daemon")
        assert daemon_public is not None
        environment["EMBER_ED25519_AUTHORIZED_KEYS"] = str(client_key) + ".pub"
        environment["EMBER_ED25519_KEY_FILE"] = str(daemon_key)
        settings["ed25519_key_file"] = str(client_key)
        settings["ed25519_server_key"] = daemon_public.split()[1]
    return environment, settings, address


def _call_child(stack: dict[str, str]) -> int:
    # mkdtemp creates the folder with mode 0700, and key files are 0600 inside it.
    with tempfile.TemporaryDirectory(prefix="ember-demo-") as folder:
        environment, settings, address = _prepare_keys(Path(folder), stack)
        command = [sys.executable, "-m", "ember", "demo", "--serve"]
        if address is not None:
            command += ["--address", address]
        # The command is this interpreter with fixed arguments and a path we created.
        child = subprocess.Popen(command, stdin=subprocess.PIPE,  # noqa: S603
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **environment})
        try:
            assert child.stdout is not None
            line = _read_line(child, _STARTUP_TIMEOUT)
            uri, _, described = line.partition("\t")
            print("ember demo: a daemon in a child process, called through a proxy")
            print(f"  stack:  {described}")
            print(f"  daemon: pid {child.pid}, serving {uri}")
            if len(environment) > 4:
                print(f"  keys:   throwaway keys in {folder} (mode 0600), deleted at exit")
            with Proxy(uri, config=Config.from_environment().replace(**settings)) as store:
                print(f"  the daemon sees this caller as {store.caller()!r}")
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
