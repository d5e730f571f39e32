"""Benchmark ember against Pyro5 and two floors, side by side on loopback.

Usage: ``python bench/run.py [--quick] [--only floors,pyro5,ember] [--json FILE]``

Every system runs its server in one process and its clients in others. For each
workload the clients warm up, then make calls for a fixed window, a few times over, and
the table shows the median. bench/README.md explains each row and ratio.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from children import ChildError, ChildProcess, ChildRegister
from contract import CALL_TIMEOUT_SECONDS, System, SystemUnavailable
from report import (
    WORKLOADS,
    Measurement,
    Workload,
    collect_machine_facts,
    evaluate_ratios,
    format_cpu_table,
    format_machine_facts,
    format_per_call_times,
    format_ratios,
    format_table,
    to_json,
)
from systems import GROUPS, SYSTEMS, select_systems

# A server has this long to print its address, and a client to connect.
START_TIMEOUT_SECONDS = 30.0

# Each window starts this far ahead per client, so that every client has read its
# command before the moment comes.
START_DELAY_PER_CLIENT_SECONDS = 0.025

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Settings:
    """How long each measurement runs; every window is also bounded in calls."""

    warmup_seconds: float
    window_seconds: float
    repeats: int
    max_calls_per_window: int = 1_000_000

    def estimate_seconds(self, system_count: int) -> float:
        """Return a generous estimate of the run's duration, used to bound workers."""
        per_workload = self.warmup_seconds + self.repeats * (self.window_seconds + 1.0) + 10.0
        return system_count * len(WORKLOADS) * per_workload + 60.0


DEFAULT_SETTINGS = Settings(warmup_seconds=0.5, window_seconds=2.0, repeats=3)
QUICK_SETTINGS = Settings(warmup_seconds=0.1, window_seconds=0.3, repeats=1)


class Runner:
    """Runs every workload on the selected systems, interleaving their windows.

    All servers run for the whole benchmark. For each workload every system gets its
    clients and a warm-up, then the measurement windows take turns between the systems,
    starting with a different system each round. A burst of load from elsewhere on the
    machine therefore lands on all systems alike instead of on whichever ran at the time.
    """

    def __init__(self, settings: Settings, register: ChildRegister, worker_lifetime: float) -> None:
        self._settings = settings
        self._register = register
        self._lifetime = str(worker_lifetime)

    def run(self, systems: list[System]) -> list[Measurement]:
        servers: dict[str, ChildProcess] = {}
        addresses: dict[str, str] = {}
        server_errors: dict[str, str] = {}
        try:
            for system in systems:
                servers[system.name] = self._register.start(
                    f"{system.name} server",
                    ["server", system.name, "--lifetime", self._lifetime],
                )
            for name, server in servers.items():
                try:
                    addresses[name] = self._read_address(server)
                except ChildError as error:
                    server_errors[name] = str(error)

            measurements: list[Measurement] = []
            for workload in WORKLOADS:
                print(f"workload {workload.name} ...", file=sys.stderr, flush=True)
                for name, message in server_errors.items():
                    measurements.append(Measurement(name, workload, error=message))
                running = [system for system in systems if system.name in addresses]
                measurements.extend(self._run_workload(running, servers, addresses, workload))
            return measurements
        finally:
            self._register.stop(list(servers.values()))

    def _read_address(self, server: ChildProcess) -> str:
        line = server.read_line(START_TIMEOUT_SECONDS)
        prefix = "READY "
        if not line.startswith(prefix):
            raise ChildError(f"{server.label} printed {line[:200]!r}, expected 'READY <address>'")
        return line[len(prefix) :]

    def _run_workload(
        self,
        systems: list[System],
        servers: dict[str, ChildProcess],
        addresses: dict[str, str],
        workload: Workload,
    ) -> list[Measurement]:
        if not systems:
            return []
        measurements = {system.name: Measurement(system.name, workload) for system in systems}
        clients: dict[str, list[ChildProcess]] = {}
        try:
            for system in systems:
                clients[system.name] = [
                    self._register.start(
                        f"{system.name} client {index + 1}",
                        [
                            "client",
                            system.name,
                            addresses[system.name],
                            "--lifetime",
                            self._lifetime,
                        ],
                    )
                    for index in range(workload.clients)
                ]

            for system in systems:
                measurement = measurements[system.name]
                try:
                    for client in clients[system.name]:
                        client.read_event("ready", START_TIMEOUT_SECONDS)
                    measurement.note = self._warm_up(clients[system.name], workload)
                except ChildError as error:
                    measurement.error = str(error)

            for repeat in range(self._settings.repeats):
                shift = repeat % len(systems)
                for system in systems[shift:] + systems[:shift]:
                    measurement = measurements[system.name]
                    if measurement.error is not None:
                        continue
                    try:
                        self._measure_once(servers[system.name], clients[system.name], measurement)
                    except ChildError as error:
                        measurement.error = str(error)
                        self._register.stop(clients.pop(system.name))
        finally:
            self._register.stop([child for group in clients.values() for child in group])
        return list(measurements.values())

    def _command(self, kind: str, workload: Workload) -> dict[str, object]:
        return {
            "cmd": kind,
            "method": workload.method,
            "size": workload.size,
            "max_calls": self._settings.max_calls_per_window,
        }

    def _warm_up(self, clients: list[ChildProcess], workload: Workload) -> str | None:
        command = {**self._command("warmup", workload), "seconds": self._settings.warmup_seconds}
        for client in clients:
            client.send(command)
        timeout = self._settings.warmup_seconds + 2 * CALL_TIMEOUT_SECONDS
        notes = {client.read_event("warmed", timeout).get("note") for client in clients}
        return next((note for note in notes if note), None)

    def _measure_once(
        self, server: ChildProcess, clients: list[ChildProcess], measurement: Measurement
    ) -> None:
        """Run one window on all clients at once and add its figures to ``measurement``.

        The rate is the total of calls divided by the time from the first client's start
        to the last client's end, so a client that starts late can only lower it.
        """
        delay = START_DELAY_PER_CLIENT_SECONDS * len(clients)
        command = {
            **self._command("run", measurement.workload),
            "seconds": self._settings.window_seconds,
            "start_at": time.monotonic() + delay,
        }
        server_cpu_before = server.cpu_seconds()
        for client in clients:
            client.send(command)
        timeout = delay + self._settings.window_seconds + CALL_TIMEOUT_SECONDS + 5.0
        events = [client.read_event("result", timeout) for client in clients]
        server_cpu_after = server.cpu_seconds()

        calls = sum(int(event["calls"]) for event in events)
        elapsed = max(event["end"] for event in events) - min(event["start"] for event in events)
        measurement.calls.append(calls)
        measurement.calls_per_second.append(calls / elapsed)
        client_cpu = sum(float(event["cpu_seconds"]) for event in events)
        measurement.client_cpu_per_call.append(client_cpu / calls)
        if server_cpu_before is not None and server_cpu_after is not None:
            measurement.server_cpu_per_call.append((server_cpu_after - server_cpu_before) / calls)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ember against Pyro5, a raw-socket floor and a minimal CBOR loop.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short windows and one repeat, 20 to 30 s in all: a smoke test, not a result",
    )
    parser.add_argument(
        "--only",
        default="core",
        metavar="NAMES",
        help="comma-separated system or group names, for example floors,pyro5;"
        f" systems: {', '.join(SYSTEMS)}; groups: {', '.join(GROUPS)} (default: core)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results to FILE")
    parser.add_argument("--repeats", type=int, help="measurement windows per workload (default 3)")
    parser.add_argument(
        "--window", type=float, metavar="SECONDS", help="seconds per window (default 2)"
    )
    parser.add_argument(
        "--warmup", type=float, metavar="SECONDS", help="seconds of warm-up (default 0.5)"
    )
    return parser.parse_args(argv)


def build_settings(arguments: argparse.Namespace) -> Settings:
    base = QUICK_SETTINGS if arguments.quick else DEFAULT_SETTINGS
    settings = Settings(
        warmup_seconds=base.warmup_seconds if arguments.warmup is None else arguments.warmup,
        window_seconds=base.window_seconds if arguments.window is None else arguments.window,
        repeats=base.repeats if arguments.repeats is None else arguments.repeats,
    )
    if settings.repeats < 1 or settings.repeats > 100:
        raise ValueError(f"--repeats {settings.repeats} is out of range; use 1 to 100")
    if not 0 < settings.window_seconds <= 60:
        raise ValueError(f"--window {settings.window_seconds} is out of range; use (0, 60] seconds")
    if not 0 <= settings.warmup_seconds <= 60:
        raise ValueError(f"--warmup {settings.warmup_seconds} is out of range; use [0, 60] seconds")
    return settings


def raise_system_exit(signal_number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signal_number)


def check_systems(systems: list[System]) -> tuple[list[System], dict[str, dict[str, object]]]:
    """Return the systems that can run here, and a description of every selected one."""
    runnable: list[System] = []
    info: dict[str, dict[str, object]] = {}
    for system in systems:
        info[system.name] = {"role": system.role, "description": system.description}
        try:
            system.check_available()
        except SystemUnavailable as error:
            info[system.name]["error"] = str(error)
            print(f"{system.name}: unavailable: {error}\n", file=sys.stderr, flush=True)
            continue
        runnable.append(system)
    return runnable, info


def print_results(
    system_names: list[str], measurements: list[Measurement], evaluated: list[dict[str, Any]]
) -> None:
    print()
    print(format_table(system_names, measurements))
    print()
    print(format_cpu_table(system_names, measurements))
    print()
    print(format_per_call_times(measurements))
    print(format_ratios(evaluated))
    for system_name, note in sorted({(m.system, m.note) for m in measurements if m.note}):
        print(f"note: {system_name}: {note}")


def print_failures(measurements: list[Measurement], info: dict[str, dict[str, object]]) -> None:
    """Print each distinct failure once, with the workloads it hit."""
    workloads_by_failure: dict[tuple[str, str], list[str]] = {}
    for measurement in measurements:
        if measurement.error is not None:
            key = (measurement.system, measurement.error)
            workloads_by_failure.setdefault(key, []).append(measurement.workload.name)
    for (system_name, error), workload_names in workloads_by_failure.items():
        print(f"\n{system_name} failed on {', '.join(workload_names)}: {error}", file=sys.stderr)
    for system_name, details in info.items():
        if "error" in details:
            print(f"\n{system_name}: not run: {details['error']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        settings = build_settings(arguments)
        systems = select_systems(arguments.only)
    except ValueError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    # SIGTERM unwinds like Ctrl-C, through the finally block that ends every worker.
    signal.signal(signal.SIGTERM, raise_system_exit)

    facts = collect_machine_facts()
    print(format_machine_facts(facts))
    print(
        f"settings: warm-up {settings.warmup_seconds:g} s, then {settings.repeats} window(s) of"
        f" {settings.window_seconds:g} s per workload, median reported\n",
        flush=True,
    )
    runnable, info = check_systems(systems)

    register = ChildRegister()
    runner = Runner(settings, register, worker_lifetime=settings.estimate_seconds(len(runnable)))
    try:
        measurements = runner.run(runnable)
    except KeyboardInterrupt:
        print("bench: interrupted; stopping the workers", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        register.stop_all()

    evaluated = evaluate_ratios(measurements)
    print_results([system.name for system in systems], measurements, evaluated)
    print_failures(measurements, info)

    if arguments.json is not None:
        settings_record = {**asdict(settings), "quick": arguments.quick, "only": arguments.only}
        document = to_json(facts, settings_record, info, measurements, evaluated)
        arguments.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nresults written to {arguments.json}")

    has_failed = any(m.error is not None for m in measurements) or len(runnable) < len(systems)
    return EXIT_FAILED if has_failed else 0


if __name__ == "__main__":
    sys.exit(main())
