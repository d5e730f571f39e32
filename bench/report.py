"""Results of a run: the workload table, the target ratios, machine facts and JSON."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "RATIOS",
    "WORKLOADS",
    "Measurement",
    "Ratio",
    "Workload",
    "collect_machine_facts",
    "evaluate_ratios",
    "format_cpu_table",
    "format_machine_facts",
    "format_per_call_times",
    "format_ratios",
    "format_table",
    "to_json",
]

MIB = 2**20


@dataclass(frozen=True, slots=True)
class Workload:
    """Calls of one method with one payload size, from ``clients`` client processes."""

    name: str
    method: str
    size: int
    clients: int

    @property
    def unit(self) -> str:
        return "MiB/s" if self.method == "echo" else "calls/s"

    def throughput(self, calls_per_second: float) -> float:
        """Convert calls per second to the workload's unit.

        For an echo, MiB/s is the payload size times calls per second. Each call moves
        the payload twice, to the server and back, so the bytes on the wire are double.
        """
        if self.method == "echo":
            return calls_per_second * self.size / MIB
        return calls_per_second


WORKLOADS: tuple[Workload, ...] = (
    Workload("ping", "ping", 0, 1),
    Workload("ping-8", "ping", 0, 8),
    Workload("echo-1MiB", "echo", 1 * MIB, 1),
    Workload("echo-16MiB", "echo", 16 * MIB, 1),
)


@dataclass(slots=True)
class Measurement:
    """One system on one workload: calls per second of every repeat, or the error."""

    system: str
    workload: Workload
    calls_per_second: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    #: CPU seconds per call of every repeat: all client processes together, and the
    #: server process (empty where the platform does not report it).
    client_cpu_per_call: list[float] = field(default_factory=list)
    server_cpu_per_call: list[float] = field(default_factory=list)
    note: str | None = None
    error: str | None = None

    @property
    def median_rate(self) -> float | None:
        if not self.calls_per_second:
            return None
        return statistics.median(self.calls_per_second)

    @property
    def median_throughput(self) -> float | None:
        rate = self.median_rate
        return None if rate is None else self.workload.throughput(rate)

    @property
    def median_cpu_per_call(self) -> tuple[float, float] | None:
        """Median CPU seconds per call of the clients and of the server, if measured."""
        if not self.client_cpu_per_call or not self.server_cpu_per_call:
            return None
        return (
            statistics.median(self.client_cpu_per_call),
            statistics.median(self.server_cpu_per_call),
        )

    @property
    def spread_percent(self) -> float | None:
        """Half the range of the repeats, as a percentage of their median."""
        rate = self.median_rate
        if rate is None or len(self.calls_per_second) < 2:
            return None
        half_range = (max(self.calls_per_second) - min(self.calls_per_second)) / 2
        return 100.0 * half_range / rate


@dataclass(frozen=True, slots=True)
class Ratio:
    """A ratio of two medians, with the target it must meet if it has one.

    With ``per_call_time`` set, the ratio is of the time per call, which is the inverse
    of the ratio of call rates. With ``cpu_time`` set, it is of the CPU time per call of
    clients and server together. A ratio without ``minimum`` or ``maximum`` is shown for
    context only.
    """

    label: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]
    minimum: float | None = None
    maximum: float | None = None
    per_call_time: bool = False
    cpu_time: bool = False

    @property
    def target(self) -> str | None:
        if self.minimum is not None:
            return f">= {self.minimum:g}"
        if self.maximum is not None:
            return f"<= {self.maximum:g}"
        return None

    def is_met(self, value: float) -> bool | None:
        if self.minimum is not None:
            return value >= self.minimum
        if self.maximum is not None:
            return value <= self.maximum
        return None


RATIOS: tuple[Ratio, ...] = (
    Ratio(
        "ember/pyro5 calls per second, one connection",
        ("ember", "ping"),
        ("pyro5", "ping"),
        minimum=3.0,
    ),
    Ratio(
        "ember/pyro5 calls per second, 8 clients",
        ("ember", "ping-8"),
        ("pyro5", "ping-8"),
        minimum=4.0,
    ),
    Ratio(
        "ember/cbor-loop time per small call",
        ("ember", "ping"),
        ("cbor-loop", "ping"),
        maximum=1.5,
        per_call_time=True,
    ),
    Ratio(
        "ember/raw bytes throughput, echo 1 MiB",
        ("ember", "echo-1MiB"),
        ("raw", "echo-1MiB"),
        minimum=0.5,
    ),
    Ratio(
        "ember/raw bytes throughput, echo 16 MiB",
        ("ember", "echo-16MiB"),
        ("raw", "echo-16MiB"),
        minimum=0.5,
    ),
    # The two ceilings below show how far ahead of Pyro5 a CBOR RPC can get at all on
    # the machine, since ember does at least the cbor-loop's work for every call.
    Ratio(
        "cbor-loop/pyro5 calls per second, one connection",
        ("cbor-loop", "ping"),
        ("pyro5", "ping"),
    ),
    Ratio(
        "cbor-loop/pyro5 calls per second, 8 clients",
        ("cbor-loop", "ping-8"),
        ("pyro5", "ping-8"),
    ),
    # CPU time leaves out the time a process waits for a CPU, so other load on the
    # machine moves it less than wall-clock time. Cache and memory contention still do.
    Ratio(
        "ember/cbor-loop CPU time per small call",
        ("ember", "ping"),
        ("cbor-loop", "ping"),
        cpu_time=True,
    ),
    Ratio(
        "ember/pyro5 CPU time per small call",
        ("ember", "ping"),
        ("pyro5", "ping"),
        cpu_time=True,
    ),
)


def evaluate_ratios(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """Compute every ratio whose two medians exist; the others get the value None."""
    rates = {(m.system, m.workload.name): m.median_rate for m in measurements}
    cpu_times = {
        (m.system, m.workload.name): sum(cpu) if (cpu := m.median_cpu_per_call) else None
        for m in measurements
    }
    evaluated = []
    for ratio in RATIOS:
        source = cpu_times if ratio.cpu_time else rates
        top = source.get(ratio.numerator)
        bottom = source.get(ratio.denominator)
        value: float | None = None
        if top and bottom:
            value = bottom / top if ratio.per_call_time else top / bottom
        evaluated.append(
            {
                "label": ratio.label,
                "numerator": "/".join(ratio.numerator),
                "denominator": "/".join(ratio.denominator),
                "per_call_time": ratio.per_call_time,
                "cpu_time": ratio.cpu_time,
                "value": value,
                "target": ratio.target,
                "met": None if value is None else ratio.is_met(value),
            }
        )
    return evaluated


# --- text output ---------------------------------------------------------------------


def _format_value(measurement: Measurement | None) -> str:
    if measurement is None:
        return "-"
    if measurement.error is not None:
        return "failed"
    value = measurement.median_throughput
    if value is None:
        return "-"
    text = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    spread = measurement.spread_percent
    if spread is not None:
        text += f" ±{spread:.0f}%"
    return text


def format_table(system_names: list[str], measurements: list[Measurement]) -> str:
    """Return the workload table: one row per workload, one column per system."""
    by_key = {(m.system, m.workload.name): m for m in measurements}
    header = ["workload", "unit", *system_names]
    rows = [header]
    for workload in WORKLOADS:
        cells = [_format_value(by_key.get((name, workload.name))) for name in system_names]
        if all(cell == "-" for cell in cells):
            continue
        rows.append([workload.name, workload.unit, *cells])

    return _align(rows, left_columns=2)


def _align(rows: list[list[str]], left_columns: int) -> str:
    """Lay out ``rows`` as columns with a rule under the header row.

    The first ``left_columns`` columns are left-aligned and the rest right-aligned.
    """
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < left_columns else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _format_cpu(measurement: Measurement | None) -> str:
    if measurement is None or measurement.error is not None:
        return "-"
    cpu = measurement.median_cpu_per_call
    if cpu is None:
        return "-"
    client, server = (_format_microseconds(seconds) for seconds in cpu)
    return f"{client} + {server}"


def _format_microseconds(seconds: float) -> str:
    microseconds = seconds * 1e6
    return f"{microseconds:,.0f}" if microseconds >= 100 else f"{microseconds:.1f}"


def format_cpu_table(system_names: list[str], measurements: list[Measurement]) -> str:
    """Return the CPU time per call in µs, clients + server, per workload and system."""
    by_key = {(m.system, m.workload.name): m for m in measurements}
    rows = [["workload", *system_names]]
    for workload in WORKLOADS:
        cells = [_format_cpu(by_key.get((name, workload.name))) for name in system_names]
        if all(cell == "-" for cell in cells):
            continue
        rows.append([workload.name, *cells])
    return "CPU µs per call, clients + server (median):\n" + _align(rows, left_columns=1)


def format_ratios(evaluated: list[dict[str, Any]]) -> str:
    lines = []
    for ratio in evaluated:
        value = "-" if ratio["value"] is None else f"{ratio['value']:.2f}x"
        if ratio["target"] is None:
            verdict = "for context"
            target = ""
        else:
            target = f"target {ratio['target']}"
            if ratio["value"] is None:
                verdict = "not measured"
            else:
                verdict = "met" if ratio["met"] else "MISSED"
        lines.append(f"{ratio['label']:<50} {value:>8}  {target:<13} {verdict}")
    return "\n".join(lines)


def format_per_call_times(measurements: list[Measurement]) -> str:
    """Return the median time per ping on one connection for each system, in µs."""
    parts = []
    for measurement in measurements:
        rate = measurement.median_rate
        if measurement.workload.name == "ping" and rate:
            parts.append(f"{measurement.system} {1e6 / rate:.1f} µs")
    return "time per ping on one connection: " + ", ".join(parts) if parts else ""


# --- machine facts and JSON ----------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_machine_facts() -> dict[str, Any]:
    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = None
    try:
        load_average: list[float] | None = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load_average = None
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "cpu_model": _cpu_model(),
        "load_average_at_start": load_average,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {
            name: _package_version(name) for name in ("ember", "Pyro5", "serpent", "cbor2")
        },
    }


def format_machine_facts(facts: dict[str, Any]) -> str:
    packages = ", ".join(
        f"{name} {version}" for name, version in facts["packages"].items() if version
    )
    return (
        f"machine: {facts['cpu_count']} CPUs ({facts['usable_cpus']} usable), {facts['cpu_model']},"
        f" load {facts['load_average_at_start']}\n"
        f"python: {facts['implementation']} {facts['python']} on {facts['platform']}\n"
        f"packages: {packages}"
    )


def to_json(
    facts: dict[str, Any],
    settings: dict[str, Any],
    systems: dict[str, dict[str, Any]],
    measurements: list[Measurement],
    evaluated: list[dict[str, Any]],
) -> dict[str, Any]:
    results = []
    for measurement in measurements:
        results.append(
            {
                "system": measurement.system,
                "workload": asdict(measurement.workload),
                "unit": measurement.workload.unit,
                "median": measurement.median_throughput,
                "median_calls_per_second": measurement.median_rate,
                "calls_per_second": measurement.calls_per_second,
                "calls": measurement.calls,
                "client_cpu_seconds_per_call": measurement.client_cpu_per_call,
                "server_cpu_seconds_per_call": measurement.server_cpu_per_call,
                "note": measurement.note,
                "error": measurement.error,
            }
        )
    return {
        "machine": facts,
        "settings": settings,
        "systems": systems,
        "results": results,
        "ratios": evaluated,
    }
