"""Per-call cost of the hmac authenticator, measured in alternating rounds.

Two daemons run in child processes on 127.0.0.1, one plain and one with the ``hmac``
authenticator. One client process calls ``ping`` on each in turn, in short rounds, so
load from other processes hits both alike; the best and the median round of each are
reported, with the ratio of calls per second (target: hmac at least 0.85 of plain).

    .venv/bin/python bench/auth_overhead.py [--rounds 8] [--calls 2000]

Every child is ended by its PID when the run ends, also after an error.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time

from ember import Config, Proxy

SERVER = """
import sys
from ember import Config, Daemon, expose

@expose
class Service:
    def ping(self):
        return None

config = Config.defaults()
if sys.argv[1] == "hmac":
    config = config.replace(authenticator="hmac", hmac_key=sys.stdin.readline().strip())
with Daemon(config=config) as daemon:
    print(daemon.register(Service(), "service"), flush=True)
    daemon.start()
    sys.stdin.read()
"""


def start_server(mode: str, key: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdin is not None and child.stdout is not None
    if mode == "hmac":
        # The key travels on stdin, never on the command line.
        child.stdin.write(key + "\n")
        child.stdin.flush()
    return child, child.stdout.readline().strip()


def measure(proxies: dict[str, Proxy], rounds: int, calls: int) -> dict[str, list[float]]:
    """Return the microseconds per call of every round, per stack."""
    results: dict[str, list[float]] = {name: [] for name in proxies}
    for _ in range(rounds):
        for name, proxy in proxies.items():
            started = time.perf_counter()
            for _ in range(calls):
                proxy.ping()
            results[name].append((time.perf_counter() - started) / calls * 1e6)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds per stack")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    args = parser.parse_args()

    key = secrets.token_hex(32)
    children: list[subprocess.Popen[str]] = []
    try:
        plain, plain_uri = start_server("plain", key)
        children.append(plain)
        keyed, keyed_uri = start_server("hmac", key)
        children.append(keyed)

        proxies = {
            "plain": Proxy(plain_uri, config=Config.defaults()),
            "hmac": Proxy(keyed_uri, config=Config.defaults().replace(
                authenticator="hmac", hmac_key=key)),
        }
        for proxy in proxies.values():
            proxy.ping()
        results = measure(proxies, args.rounds, args.calls)
        for proxy in proxies.values():
            proxy._ember_close()
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)

    best = {name: min(times) for name, times in results.items()}
    median = {name: statistics.median(times) for name, times in results.items()}
    for name in results:
        print(f"{name:6s} best {best[name]:7.1f} µs/call   median {median[name]:7.1f} µs/call")
    print(f"hmac/plain calls per second: best rounds {best['plain'] / best['hmac']:.2f}, "
          f"medians {median['plain'] / median['hmac']:.2f} (target >= 0.85)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
