"""The machinery shared by every conformance check: catalogs, outcomes and the runner.

A check is a plain function that takes a *subject* (the plugin plus whatever the check
needs to exercise it, such as a harness and declared capabilities) and either returns
(passed), raises :class:`CheckFailed` (the plugin broke its contract) or raises
:class:`CheckSkipped` (the check needs a capability the plugin did not declare). Any
other exception escaping a check is a failure too, reported with its type, because a
conforming plugin never lets one escape.

Checks are grouped in one :class:`CheckCatalog` per plugin kind. The pytest classes
and ``ember conformance`` both run the checks of a catalog, so the two can never
disagree about what the suite contains.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

__all__ = [
    "Check",
    "CheckCatalog",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "ConformanceReport",
    "DEFAULT_DEADLINE",
    "Outcome",
    "call_with_deadline",
    "describe_call_error",
    "run_check",
    "run_checks",
]

Outcome = Literal["passed", "failed", "skipped"]

SubjectT = TypeVar("SubjectT")
ResultT = TypeVar("ResultT")

#: Seconds that one plugin operation under test may take before the suite reports it as
#: hanging. The contract requires bounded time, not speed, so the margin is wide.
DEFAULT_DEADLINE = 10.0


class CheckFailed(AssertionError):
    """The plugin broke its contract.

    ``observed`` describes what the plugin did and ``required`` what the contract requires;
    the message joins both, so it reads well in a pytest report and on a terminal.
    """

    def __init__(self, observed: str, required: str) -> None:
        super().__init__(f"{observed}; the contract requires {required}")
        self.observed = observed
        self.required = required


class CheckSkipped(Exception):
    """The check does not apply: it needs a capability the plugin did not declare."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Check(Generic[SubjectT]):
    """One named check of a plugin kind."""

    #: Stable identifier, used in reports, test names and ``--check`` selections.
    name: str
    kind: str
    #: One sentence stating the duty the check proves.
    summary: str
    function: Callable[[SubjectT], None]

    def __call__(self, subject: SubjectT) -> None:
        self.function(subject)


class CheckCatalog(Generic[SubjectT]):
    """The ordered checks of one plugin kind, filled by the :meth:`add` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._checks: dict[str, Check[SubjectT]] = {}

    def add(self, name: str) -> Callable[[Callable[[SubjectT], None]], Check[SubjectT]]:
        """Register the decorated function as the check ``name``.

        The function's docstring, first line, becomes the check's summary.
        """

        def decorate(function: Callable[[SubjectT], None]) -> Check[SubjectT]:
            if name in self._checks:
                raise ValueError(f"{self.kind} check {name!r} is defined twice")
            summary = (function.__doc__ or "").strip().split("\n")[0]
            check = Check(name=name, kind=self.kind, summary=summary, function=function)
            self._checks[name] = check
            return check

        return decorate

    def __iter__(self) -> Iterator[Check[SubjectT]]:
        return iter(self._checks.values())

    def __len__(self) -> int:
        return len(self._checks)

    def __getitem__(self, name: str) -> Check[SubjectT]:
        try:
            return self._checks[name]
        except KeyError:
            known = ", ".join(self._checks)
            raise KeyError(f"no {self.kind} check named {name!r}; checks: {known}") from None

    def names(self) -> list[str]:
        return list(self._checks)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check against one plugin."""

    check: str
    outcome: Outcome
    #: Empty for a pass; the failure message or the reason for a skip otherwise.
    message: str = ""
    #: Wall-clock seconds the check took, for the report only.
    duration: float = 0.0


@dataclass(slots=True)
class ConformanceReport:
    """Every check result for one plugin, in catalog order."""

    plugin: str
    kind: str
    distribution: str = ""
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if result.outcome == "failed"]

    @property
    def passed(self) -> bool:
        """``True`` when no check failed (skipped checks do not count against it)."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for result in self.results:
            counts[result.outcome] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (the ``--json`` report format)."""
        return {
            "plugin": self.plugin,
            "kind": self.kind,
            "distribution": self.distribution,
            "summary": self.counts(),
            "checks": [
                {
                    "name": result.check,
                    "outcome": result.outcome,
                    "message": result.message,
                    "duration": round(result.duration, 6),
                }
                for result in self.results
            ],
        }


def run_check(check: Check[SubjectT], subject: SubjectT) -> CheckResult:
    """Run one check and classify what happened; never raises for a plugin's fault."""
    started = time.perf_counter()
    try:
        check(subject)
    except CheckSkipped as skip:
        return CheckResult(check.name, "skipped", skip.reason, time.perf_counter() - started)
    except CheckFailed as failure:
        return CheckResult(check.name, "failed", str(failure), time.perf_counter() - started)
    # A plugin's code runs inside the check; whatever escapes is that plugin's failure.
    except (Exception, SystemExit) as error:  # noqa: BLE001
        message = (
            f"the check stopped on {type(error).__name__}: {error}; the contract requires "
            f"that only the documented ember errors escape a plugin"
        )
        return CheckResult(check.name, "failed", message, time.perf_counter() - started)
    return CheckResult(check.name, "passed", "", time.perf_counter() - started)


def run_checks(
    catalog: CheckCatalog[SubjectT],
    open_subject: Callable[[], contextlib.AbstractContextManager[SubjectT]],
    *,
    plugin: str,
    distribution: str = "",
    selected: Iterator[str] | list[str] | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> ConformanceReport:
    """Run every check of ``catalog`` (or the ``selected`` names) on a fresh subject each.

    ``open_subject`` returns a context manager that yields a new subject and releases
    its resources (listeners, temporary folders) on exit, so one check cannot disturb
    the next. ``progress``, if given, receives each result as soon as it is known.
    """
    report = ConformanceReport(plugin=plugin, kind=catalog.kind, distribution=distribution)
    checks = list(catalog) if selected is None else [catalog[name] for name in selected]
    for check in checks:
        started = time.perf_counter()
        try:
            with open_subject() as subject:
                result = run_check(check, subject)
        except CheckSkipped as skip:
            result = CheckResult(check.name, "skipped", skip.reason,
                                 time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - a harness that cannot start is reported
            result = CheckResult(
                check.name,
                "failed",
                f"preparing or releasing the plugin for the check failed with "
                f"{type(error).__name__}: {error}; the contract requires that the plugin can "
                f"be set up as its conformance profile describes",
                time.perf_counter() - started,
            )
        report.results.append(result)
        if progress is not None:
            progress(result)
    return report


def call_with_deadline(
    function: Callable[[], ResultT], what: str, seconds: float = DEFAULT_DEADLINE
) -> ResultT:
    """Run ``function`` in a worker thread and return its result or re-raise its error.

    Raises :class:`CheckFailed` naming ``what`` if it does not finish within ``seconds``.
    Python cannot stop a thread, so a hanging call keeps running in the background as a
    daemon thread; the check still reports it instead of hanging the whole suite.
    """
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("value", function()))
        except BaseException as error:  # noqa: BLE001 - handed back to the calling thread
            outcome.append(("error", error))

    worker = threading.Thread(target=target, name=f"conformance: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive() or not outcome:
        raise CheckFailed(
            f"{what} did not finish within {seconds:g} s",
            "that every operation ends in bounded time",
        )
    kind, value = outcome[0]
    if kind == "error":
        raise value
    result: ResultT = value
    return result


def describe_call_error(error: BaseException) -> str:
    """Format an exception as ``Type: message`` on one line, shortened for reports."""
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
