"""Profile one system's call path with cProfile, on the client and on the server.

Usage: ``python bench/profile_call_path.py [SYSTEM] [--calls N] [--method echo --size N]``

The server runs in a worker process that profiles every thread it starts. The client
runs in this process, warms up, then makes ``--calls`` calls under cProfile. Both
profiles are printed sorted by own time (``tottime``) and can be kept with
``--output DIR`` for ``python -m pstats``.

cProfile adds a fixed cost to every Python function call. The profile therefore shows
how the time divides between functions, not how long a call takes without cProfile,
which is what ``run.py`` measures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from children import ChildError, ChildRegister
from contract import SystemUnavailable
from systems import SYSTEMS
from worker import make_call

START_TIMEOUT_SECONDS = 30.0

# The warm-up ends after this many calls or seconds, whichever comes first.
WARMUP_CALLS = 500
WARMUP_SECONDS = 2.0

# The loop ends after --calls calls or this many seconds, whichever comes first.
MAX_PROFILE_SECONDS = 60.0


def format_stats(stats: pstats.Stats, top: int) -> str:
    output = io.StringIO()
    stats.stream = output  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return output.getvalue()


def profile_client(system_name: str, address: str, arguments: argparse.Namespace) -> pstats.Stats:
    client = SYSTEMS[system_name].make_client(address)
    try:
        call = make_call(client, arguments.method, arguments.size)
        warmup_deadline = time.monotonic() + WARMUP_SECONDS
        for _ in range(WARMUP_CALLS):
            call()
            if time.monotonic() >= warmup_deadline:
                break

        profiler = cProfile.Profile()
        deadline = time.monotonic() + MAX_PROFILE_SECONDS
        calls = 0
        profiler.enable()
        while calls < arguments.calls and time.monotonic() < deadline:
            call()
            calls += 1
        profiler.disable()
    finally:
        client.close()

    print(f"client: {calls} {arguments.method} calls profiled")
    return pstats.Stats(profiler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", nargs="?", default="ember", choices=sorted(SYSTEMS))
    parser.add_argument("--calls", type=int, default=20_000, help="calls to profile")
    parser.add_argument("--method", choices=("ping", "echo"), default="ping")
    parser.add_argument("--size", type=int, default=0, help="echo payload size in bytes")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile")
    parser.add_argument("--output", type=Path, metavar="DIR", help="also keep the .pstats files")
    arguments = parser.parse_args()

    system = SYSTEMS[arguments.system]
    try:
        system.check_available()
    except SystemUnavailable as error:
        print(f"{system.name}: unavailable: {error}", file=sys.stderr)
        return 1

    register = ChildRegister()
    with tempfile.TemporaryDirectory(prefix="ember-bench-profile-") as folder:
        server_stats_path = Path(folder) / "server.pstats"
        lifetime = str(MAX_PROFILE_SECONDS * 3)
        server = register.start(
            f"{system.name} server",
            ["server", system.name, "--lifetime", lifetime, "--profile", str(server_stats_path)],
        )
        try:
            line = server.read_line(START_TIMEOUT_SECONDS)
            if not line.startswith("READY "):
                raise ChildError(
                    f"{server.label} printed {line[:200]!r}, expected 'READY <address>'"
                )
            client_stats = profile_client(system.name, line.removeprefix("READY "), arguments)
        except ChildError as error:
            print(f"profiling {system.name} failed: {error}", file=sys.stderr)
            return 1
        finally:
            # Closing the server's stdin makes it stop serving and write its profile.
            register.stop_all()

        if not server_stats_path.exists():
            print(f"{system.name} server wrote no profile to {server_stats_path}", file=sys.stderr)
            return 1
        server_stats = pstats.Stats(str(server_stats_path))

        print(f"\n=== {system.name} client, by own time ===")
        print(format_stats(client_stats, arguments.top))
        print(f"=== {system.name} server (all threads), by own time ===")
        print(format_stats(server_stats, arguments.top))

        if arguments.output is not None:
            arguments.output.mkdir(parents=True, exist_ok=True)
            client_stats.dump_stats(str(arguments.output / f"{system.name}-client.pstats"))
            server_stats.dump_stats(str(arguments.output / f"{system.name}-server.pstats"))
            print(f"profiles written to {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
