"""Benchmark ember's bundled serializers alone and end to end, beside Pyro5's serpent.

Usage: ``python bench/serializers.py [--quick] [--window SECONDS]``

Part 1 (micro): ``dumps`` followed by ``loads`` of three payloads in this process, for
each bundled serializer and for the serpent library as Pyro5 calls it. Part 2 (end to
end): ``echo(payload)`` through a daemon in a child process, with a proxy per bundled
serializer that the default daemon accepts, and through Pyro5 with its defaults. Every
loop is bounded in calls and in time, every server binds 127.0.0.1, and each child is
ended by its own handle when the run finishes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
if str(REPOSITORY_ROOT) not in sys.path:
    sys.path.insert(1, str(REPOSITORY_ROOT))

import serpent  # noqa: E402

from ember.kernel.serializer import DecodeLimits, Serializer  # noqa: E402
from ember.plugins.serializers.cbor import CborSerializer  # noqa: E402
from ember.plugins.serializers.pickle import PickleSerializer  # noqa: E402
from ember.plugins.serializers.serpent import SerpentSerializer  # noqa: E402

MAX_CALLS_PER_WINDOW = 200_000
START_TIMEOUT_SECONDS = 30.0


def make_payloads() -> dict[str, object]:
    records = [
        {"id": index, "name": f"user{index}", "score": index * 0.5, "active": index % 2 == 0,
         "tags": ["a", "b"]}
        for index in range(10_000)
    ]
    return {
        "small-dict": {"id": 7, "name": "ember", "ok": True, "ratio": 0.25, "tags": ["x"]},
        "10k-records": records,
        "1MiB-bytes": bytes(range(256)) * 4096,
    }


def measure(operation: Callable[[], object], window: float, repeats: int) -> float:
    """Return the median seconds per call over ``repeats`` windows of ``window`` seconds."""
    operation()  # warm-up, also proves the operation works
    per_call: list[float] = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        deadline = start + window
        while calls < MAX_CALLS_PER_WINDOW:
            operation()
            calls += 1
            if time.perf_counter() >= deadline:
                break
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call)


# -- micro -------------------------------------------------------------------------------


def run_micro(window: float, repeats: int) -> list[tuple[str, str, float]]:
    limits = DecodeLimits()
    serializers: list[Serializer] = [CborSerializer(), SerpentSerializer(),
                                     PickleSerializer(allowed_globals=())]
    results: list[tuple[str, str, float]] = []
    for payload_name, payload in make_payloads().items():
        for serializer in serializers:
            def round_trip(serializer: Serializer = serializer, payload: object = payload) -> None:
                serializer.loads(serializer.dumps(payload), limits)

            results.append((payload_name, serializer.name, measure(round_trip, window, repeats)))

        def pyro5_serpent(payload: object = payload) -> None:
            serpent.loads(serpent.dumps(payload, module_in_classname=True))

        results.append((payload_name, "pyro5-serpent", measure(pyro5_serpent, window, repeats)))
    return results


# -- end to end --------------------------------------------------------------------------


def serve_ember(queue: Any) -> None:
    import ember

    @ember.expose
    class Echo:
        def echo(self, value: Any) -> Any:
            return value

    # serpent must be accepted explicitly: a default daemon decodes only CBOR.
    daemon = ember.Daemon(config=ember.Config.defaults(), host="127.0.0.1", port=0,
                          max_message_size=256 * 1024 * 1024,
                          accepted_serializers=("cbor", "serpent"))
    queue.put(daemon.register(Echo(), "echo"))
    daemon.serve_forever()


def serve_pyro5(queue: Any) -> None:
    import Pyro5
    import Pyro5.api

    Pyro5.config.reset(use_environment=False)

    @Pyro5.api.expose
    class Echo:
        def echo(self, value: Any) -> Any:
            return value

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    queue.put(str(daemon.register(Echo(), "echo")))
    daemon.requestLoop()


def start_child(target: Callable[[Any], None]) -> tuple[multiprocessing.Process, str]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(queue,), daemon=True)
    process.start()
    return process, queue.get(timeout=START_TIMEOUT_SECONDS)


def stop_child(process: multiprocessing.Process) -> None:
    process.terminate()
    process.join(10.0)
    if process.is_alive():
        process.kill()
        process.join(10.0)


def run_end_to_end(window: float, repeats: int) -> list[tuple[str, str, float]]:
    import Pyro5
    import Pyro5.api

    import ember

    payloads = make_payloads()
    results: list[tuple[str, str, float]] = []

    process, uri = start_child(serve_ember)
    try:
        for serializer in ("cbor", "serpent"):
            proxy = ember.Proxy(uri, config=ember.Config.defaults(), serializer=serializer,
                                max_message_size=256 * 1024 * 1024)
            with proxy:
                for payload_name, payload in payloads.items():
                    def call(proxy: Any = proxy, payload: object = payload) -> None:
                        proxy.echo(payload)

                    results.append((payload_name, f"ember-{serializer}",
                                    measure(call, window, repeats)))
    finally:
        stop_child(process)

    process, uri = start_child(serve_pyro5)
    try:
        Pyro5.config.reset(use_environment=False)
        with Pyro5.api.Proxy(uri) as pyro_proxy:
            for payload_name, payload in payloads.items():
                def pyro_call(proxy: Any = pyro_proxy, payload: object = payload) -> None:
                    value = proxy.echo(payload)
                    if isinstance(payload, bytes):
                        # Pyro5's serpent returns bytes as a base64 dict; an application
                        # has to convert it back, so the conversion is timed too.
                        serpent.tobytes(value)

                results.append((payload_name, "pyro5-serpent", measure(pyro_call, window,
                                                                      repeats)))
    finally:
        stop_child(process)
    return results


# -- report ------------------------------------------------------------------------------


def format_results(title: str, results: list[tuple[str, str, float]], reference: str) -> str:
    lines = [title, "", "| payload | serializer | per call | calls/s | vs " + reference + " |",
             "| --- | --- | ---: | ---: | ---: |"]
    by_payload: dict[str, dict[str, float]] = {}
    for payload, name, seconds in results:
        by_payload.setdefault(payload, {})[name] = seconds
    for payload, timings in by_payload.items():
        base = timings.get(reference)
        for name, seconds in timings.items():
            ratio = f"{base / seconds:.2f}x" if base else "-"
            lines.append(f"| {payload} | {name} | {_duration(seconds)} | {1 / seconds:,.0f} | "
                         f"{ratio} |")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short windows (0.2 s, 1 repeat): a smoke test, not a result")
    parser.add_argument("--window", type=float, default=1.0,
                        help="length of one measurement window in seconds (default 1.0)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="windows per cell; the median is shown (default 3)")
    parser.add_argument("--skip-e2e", action="store_true", help="run only the micro part")
    options = parser.parse_args(argv)
    window, repeats = (0.2, 1) if options.quick else (options.window, options.repeats)

    print(format_results("## dumps + loads in one process", run_micro(window, repeats),
                         "pyro5-serpent"))
    if not options.skip_e2e:
        print()
        print(format_results("## echo(payload) over loopback TCP",
                             run_end_to_end(window, repeats), "pyro5-serpent"))
    print("\nratios: the reference's time per call divided by the row's; above 1 is faster.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
