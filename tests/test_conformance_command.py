"""``ember conformance`` in-process: selection, listing and the usage errors."""

from __future__ import annotations

import json
import os

import pytest

from ember.cli import main
from ember.testing import TRANSPORT_CHECKS


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    """Clear every EMBER_* variable, so the registry loads every installed plugin."""
    for variable in [name for name in os.environ if name.startswith("EMBER_")]:
        monkeypatch.delenv(variable)


def test_selected_check_passes(capsys, tmp_path):
    report_path = tmp_path / "report.json"

    status = main(["conformance", "--plugin", "tcp", "--check", "declaration",
                   "--check", "bytes-both-directions", "--json", str(report_path)])

    output = capsys.readouterr().out
    assert status == 0
    assert "ember conformance: transport 'tcp' from distribution 'ember'" in output
    assert "  passed   bytes-both-directions" in output
    assert output.rstrip().endswith("2 checks: 2 passed, 0 failed, 0 skipped")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert [check["name"] for check in report["checks"]] == ["declaration",
                                                             "bytes-both-directions"]


def test_list_checks(capsys):
    status = main(["conformance", "--plugin", "tcp", "--list-checks"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert [line.split()[0] for line in lines] == TRANSPORT_CHECKS.names()


def test_unknown_check_rejected(capsys):
    status = main(["conformance", "--plugin", "cbor", "--check", "round-trip-complex"])

    assert status == 2
    assert "unknown serializer checks: round-trip-complex" in capsys.readouterr().err


def test_unknown_plugin_lists_registered(capsys):
    status = main(["conformance", "--plugin", "no-such-plugin"])

    error = capsys.readouterr().err
    assert status == 2
    assert "plugin 'no-such-plugin' is not registered" in error
    assert "serializers: " in error
    assert "cbor" in error


def test_wrong_kind_rejected(capsys):
    status = main(["conformance", "--plugin", "cbor", "--kind", "transport"])

    assert status == 2
    assert "transport 'cbor' is not registered" in capsys.readouterr().err
