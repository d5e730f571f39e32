"""Child process of the benchmark: one server or one client of one system.

``run.py`` starts these processes and talks to them over stdin and stdout:

* ``worker.py server SYSTEM`` starts the system's server on loopback, prints
  ``READY <address>`` and serves until its stdin reaches end of file.
* ``worker.py client SYSTEM ADDRESS`` connects, prints a ``ready`` event, then runs
  JSON commands read from stdin, one per line, and prints one JSON event per command.

Every worker exits on its own once its stdin closes (the parent is gone) or its
``--lifetime`` runs out, so no child outlives a crashed or killed parent for long. The
original stdout carries only protocol lines, because anything a library prints is sent
to stderr instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from contract import BenchClient, SystemUnavailable
from systems import SYSTEMS

# Upper bound on calls in one warm-up or measurement window; the window's duration is
# the bound that normally ends it.
MAX_CALLS_PER_WINDOW = 10_000_000

EXIT_LIFETIME = 3

# Names of the worker's own threads start with this, so profiles leave them out.
OWN_THREAD_PREFIX = "bench-worker-"


def take_protocol_stdout() -> TextIO:
    """Return a private handle on stdout and point fd 1 and sys.stdout at stderr."""
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol_out


def start_lifetime_watchdog(seconds: float, role: str) -> None:
    """End the process after ``seconds``, whatever it is doing."""

    def expire() -> None:
        time.sleep(seconds)
        print(
            f"bench {role} worker reached its lifetime of {seconds:g} s; exiting", file=sys.stderr
        )
        sys.stderr.flush()
        os._exit(EXIT_LIFETIME)

    threading.Thread(target=expire, name=f"{OWN_THREAD_PREFIX}lifetime", daemon=True).start()


# --- server --------------------------------------------------------------------------


class ThreadProfiles:
    """Profiles the calling thread and every thread started after :meth:`install`.

    cProfile records only the thread that enabled it, and servers handle calls in other
    threads, often of a ``Thread`` subclass with its own ``run``. So a profile hook set
    with ``threading.setprofile`` runs once at the start of each new thread and enables
    a profiler for that thread. The worker's own threads are left out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profilers: list[cProfile.Profile] = []
        self._main = cProfile.Profile()

    def install(self) -> None:
        threading.setprofile(self._start_thread_profile)
        self._main.enable()

    def _start_thread_profile(self, frame: FrameType, event: str, arg: object) -> None:
        sys.setprofile(None)
        if threading.current_thread().name.startswith(OWN_THREAD_PREFIX):
            return
        profiler = cProfile.Profile()
        with self._lock:
            self._profilers.append(profiler)
        profiler.enable()

    def dump(self, path: str) -> None:
        # NOTE: a thread still running here (an idle pooled worker, say) has its profile
        # read while it may still record, so its counts are a snapshot.
        self._main.disable()
        stats = pstats.Stats(self._main)
        with self._lock:
            for profiler in self._profilers:
                stats.add(profiler)
        stats.dump_stats(path)


def run_server(system_name: str, lifetime: float, profile_path: str | None) -> int:
    protocol_out = take_protocol_stdout()
    start_lifetime_watchdog(lifetime, "server")
    profiles = ThreadProfiles() if profile_path else None
    if profiles is not None:
        profiles.install()

    try:
        handle = SYSTEMS[system_name].start_server()
    except SystemUnavailable as error:
        print(f"{system_name} server cannot start: {error}", file=sys.stderr)
        return 2
    protocol_out.write(f"READY {handle.address}\n")

    def close_on_stdin_eof() -> None:
        sys.stdin.read()
        handle.close()

    threading.Thread(
        target=close_on_stdin_eof, name=f"{OWN_THREAD_PREFIX}stdin-watch", daemon=True
    ).start()
    handle.serve_forever()

    if profiles is not None and profile_path is not None:
        profiles.dump(profile_path)
    return 0


# --- client --------------------------------------------------------------------------


def make_payload(size: int) -> bytes:
    """Return ``size`` pseudo-random bytes, the same on every run."""
    return random.Random(size).randbytes(size)


def make_call(client: BenchClient, method: str, size: int) -> Callable[[], None]:
    """Return a function making one call of the workload and checking its result."""
    if method == "ping":
        return client.ping
    if method != "echo":
        raise ValueError(f"unknown method {method!r}; expected 'ping' or 'echo'")

    payload = make_payload(size)

    def echo_once() -> None:
        returned = client.echo(payload)
        if len(returned) != size:
            raise ValueError(f"echo returned {len(returned)} bytes, expected {size}")

    return echo_once


def verify_echo(client: BenchClient, size: int) -> None:
    """Make one echo call and compare every byte of the result."""
    payload = make_payload(size)
    returned = client.echo(payload)
    if returned != payload:
        raise ValueError(
            f"echo of {size} bytes returned {len(returned)} bytes that differ from the payload"
        )


def run_window(call: Callable[[], None], seconds: float, max_calls: int) -> dict[str, Any]:
    """Call repeatedly for ``seconds`` (at least once, at most ``max_calls`` times).

    Returns the number of calls, the start and end on the monotonic clock, and the CPU
    time this process used meanwhile.
    """
    cpu_start = time.process_time()
    start = time.monotonic()
    deadline = start + seconds
    calls = 0
    while calls < max_calls:
        call()
        calls += 1
        if time.monotonic() >= deadline:
            break
    end = time.monotonic()
    cpu_seconds = time.process_time() - cpu_start
    return {"calls": calls, "start": start, "end": end, "cpu_seconds": cpu_seconds}


def handle_command(client: BenchClient, command: dict[str, Any]) -> dict[str, Any]:
    method = command["method"]
    size = int(command.get("size", 0))
    max_calls = min(int(command.get("max_calls", MAX_CALLS_PER_WINDOW)), MAX_CALLS_PER_WINDOW)
    call = make_call(client, method, size)

    if command["cmd"] == "warmup":
        if method == "echo":
            verify_echo(client, size)
        window = run_window(call, float(command["seconds"]), max_calls)
        return {"event": "warmed", "calls": window["calls"], "note": client.echo_note}

    # A measurement starts at a moment chosen by the parent, so that concurrent clients
    # measure the same interval. On Linux, time.monotonic() reads CLOCK_MONOTONIC, one
    # clock shared by all processes, so the moment means the same in every process.
    delay = float(command["start_at"]) - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return {"event": "result", **run_window(call, float(command["seconds"]), max_calls)}


def run_client(system_name: str, address: str, lifetime: float) -> int:
    protocol_out = take_protocol_stdout()
    start_lifetime_watchdog(lifetime, "client")

    def send(event: dict[str, Any]) -> None:
        protocol_out.write(json.dumps(event) + "\n")

    try:
        client = SYSTEMS[system_name].make_client(address)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
        send({"event": "error", "message": f"connecting failed: {error!r}"})
        return 1
    send({"event": "ready"})

    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "exit":
                break
            send(handle_command(client, command))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
        send({"event": "error", "message": f"{type(error).__name__}: {error}"})
        return 1
    finally:
        client.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("address", nargs="?", help="server address (client only)")
    parser.add_argument(
        "--lifetime", type=float, default=600.0, help="seconds after which the worker exits"
    )
    parser.add_argument("--profile", metavar="FILE", help="server: write cProfile stats here")
    args = parser.parse_args()

    # The parent stops its children by PID; a Ctrl-C in the terminal reaches the parent,
    # which then ends the children in order instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    if args.role == "server":
        status = run_server(args.system, args.lifetime, args.profile)
    elif args.address is None:
        parser.error("a client needs the server address")
    else:
        status = run_client(args.system, args.address, args.lifetime)

    # Leave at once: a served system may keep non-daemon threads that would delay exit.
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
