"""One proxy shared by many threads, against a daemon in another process."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from conftest import DaemonProcess

from ember import EmberError, Proxy

CALLER_THREADS = 8
CALLS_PER_THREAD = 150
# The whole test stops by itself after this many seconds, whatever the call rate.
TIME_LIMIT = 8.0


def test_shared_proxy_with_closing_thread(
    spawn_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn_daemon()
    proxy = Proxy(daemon.uri, call_timeout=5.0, connect_timeout=2.0)
    deadline = time.monotonic() + TIME_LIMIT
    callers_done = threading.Event()
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    wrong_results: list[str] = []
    foreign_errors: list[BaseException] = []

    def call_repeatedly(thread_number: int) -> None:
        for call_number in range(CALLS_PER_THREAD):
            if time.monotonic() > deadline:
                return
            value = f"thread {thread_number} call {call_number}"
            try:
                result = proxy.echo(value)
            except EmberError as error:
                with lock:
                    outcomes[type(error).__name__] += 1
                continue
            except BaseException as error:  # noqa: BLE001 - any other type is a failure
                with lock:
                    foreign_errors.append(error)
                return
            with lock:
                if result == value:
                    outcomes["result"] += 1
                else:
                    wrong_results.append(f"{value!r} came back as {result!r}")

    def close_repeatedly() -> None:
        closes = 0
        while not callers_done.is_set() and time.monotonic() < deadline:
            proxy._ember_close()
            closes += 1
            time.sleep(0.002)
        with lock:
            outcomes["closes"] = closes

    callers = [threading.Thread(target=call_repeatedly, args=(number,))
               for number in range(CALLER_THREADS)]
    closer = threading.Thread(target=close_repeatedly)
    closer.start()
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(TIME_LIMIT + 5.0)
    callers_done.set()
    closer.join(5.0)
    proxy._ember_close()

    assert not any(thread.is_alive() for thread in callers), "a caller thread hung"
    assert wrong_results == []
    assert foreign_errors == []
    assert outcomes["result"] > 0, outcomes
    assert outcomes["closes"] > 0, outcomes

    # The proxy is still usable after the storm, and so is the daemon.
    with Proxy(daemon.uri, call_timeout=5.0) as fresh:
        assert fresh.echo("after") == "after"
    assert proxy.echo("reused") == "reused"
    proxy._ember_close()
