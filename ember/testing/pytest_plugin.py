"""An opt-in pytest plugin for plugin authors: a JSON report and two fixtures.

It is not registered under the ``pytest11`` entry point, so installing ember changes no
one's test runs. Enable it with ``-p ember.testing.pytest_plugin`` on the command line,
or with ``pytest_plugins = ["ember.testing.pytest_plugin"]`` in a root ``conftest.py``.

- ``--ember-conformance-report FILE`` writes the outcome of every conformance check that
  ran, grouped by test class, in the format of ``ember conformance --json``.
- The ``ember_registry`` fixture is a registry loaded from the installed entry points
  with the built-in default configuration, so the environment cannot change it.
- The ``short_tmp_path`` fixture is a temporary folder with a short path, for Unix
  socket files (Linux limits their path to 107 bytes, which a deep ``tmp_path`` can
  exceed).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ember.kernel.config import Config
from ember.kernel.registry import Registry
from ember.testing.suite import Check, CheckResult, ConformanceReport

__all__ = ["ember_registry", "short_tmp_path"]

_REPORT_OPTION = "--ember-conformance-report"
_reports_key = pytest.StashKey[dict[str, ConformanceReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ember", "ember conformance suite")
    group.addoption(
        _REPORT_OPTION,
        metavar="FILE",
        default=None,
        help="write the outcome of every ember conformance check to FILE as JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_reports_key] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    check: Check[Any] | None = getattr(getattr(item, "function", None), "_ember_check", None)
    if check is None or not _is_final(report):
        return report

    owner = getattr(item, "cls", None)
    plugin = owner.__qualname__ if owner is not None else item.nodeid
    reports = item.config.stash[_reports_key]
    conformance = reports.setdefault(plugin, ConformanceReport(plugin=plugin, kind=check.kind))
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        outcome = CheckResult(check.name, "skipped", str(reason).removeprefix("Skipped: "))
    elif report.failed:
        outcome = CheckResult(check.name, "failed", _failure_text(report), report.duration)
    else:
        outcome = CheckResult(check.name, "passed", "", report.duration)
    conformance.results.append(outcome)
    return report


def _is_final(report: pytest.TestReport) -> bool:
    """``True`` for the one report that decides a test's outcome."""
    if report.when == "call":
        return True
    # A skip or an error in setup means the call phase never runs.
    return report.when == "setup" and not report.passed


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    return str(message) if message else str(report.longrepr).splitlines()[-1]


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption(_REPORT_OPTION)
    if not path:
        return
    reports = session.config.stash[_reports_key]
    data = [report.to_dict() for report in reports.values()]
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@pytest.fixture
def ember_registry() -> Registry:
    """Return a registry of the installed plugins, loaded with the built-in defaults."""
    return Registry.load(Config.defaults())


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """Yield a fresh temporary folder with a short path, and remove it after the test."""
    folder = Path(tempfile.mkdtemp(prefix="ember-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
