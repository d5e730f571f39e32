"""Tests of ``ember plugins`` and ``ember config``, in-process and as real commands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember.cli import config_command, plugins_command
from ember.kernel.config import Setting

TESTS = Path(__file__).resolve().parent
PACKAGE = f"{__package__}.registry_fixtures" if __package__ else "registry_fixtures"
install_distribution = importlib.import_module(PACKAGE).install_distribution


@pytest.fixture
def environment(monkeypatch):
    """Clear every EMBER_* variable; the test sets the ones it needs."""
    for variable in [name for name in os.environ if name.startswith("EMBER_")]:
        monkeypatch.delenv(variable)
    return monkeypatch


@pytest.fixture
def installed(tmp_path, environment):
    """Install a valid and a broken fixture plugin where importlib.metadata finds them."""
    install_distribution(tmp_path, "cli-good", PACKAGE, {"cligood": "good"})
    install_distribution(tmp_path, "cli-broken", PACKAGE, {"clibroken": "broken_import"})
    environment.syspath_prepend(str(tmp_path))
    return tmp_path


def run_plugins(*arguments: str) -> int:
    return plugins_command.run(parse("plugins", plugins_command, arguments))


def run_config(*arguments: str) -> int:
    return config_command.run(parse("config", config_command, arguments))


def parse(command: str, module, arguments) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ember")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([command, *arguments])


def rows_by_distribution(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record["distribution"], []).append(record)
    return grouped


# -- ember plugins, in process ----------------------------------------------------------------


def test_plugins_table_lists_failures(installed, capsys):
    assert run_plugins() == 0

    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split() == [
        "KIND", "NAME", "WIRE", "ID", "DISTRIBUTION", "ENTRY", "POINT", "STATUS", "REASON",
    ]
    broken = next(line for line in lines if "cli-broken" in line)
    json_row = next(line for line in lines if "cli-good" in line and " json " in line)
    status_column = header.index("STATUS")
    assert broken[status_column:].startswith("failed  import failed: ModuleNotFoundError: ")
    assert json_row[status_column:] == "loaded  -"
    assert json_row[header.index("WIRE ID"):].startswith("32257 ")
    assert all(line == line.rstrip() for line in lines)


def test_plugins_json_lists_records(installed, capsys):
    assert run_plugins("--json") == 0

    records = rows_by_distribution(json.loads(capsys.readouterr().out))
    assert records["cli-broken"] == [{
        "kind": "plugin",
        "name": "clibroken",
        "wire_id": None,
        "distribution": "cli-broken",
        "entry_point": f"clibroken = {PACKAGE}.broken_import",
        "status": "failed",
        "reason": "import failed: ModuleNotFoundError: No module named "
                  "'registry_fixtures_missing_dependency'",
        "schemes": [],
    }]
    assert [(r["kind"], r["name"], r["status"]) for r in records["cli-good"]] == [
        ("serializer", "json", "loaded"),
        ("transport", "plain", "loaded"),
        ("transport", "sealed", "loaded"),
        ("authenticator", "fixture-auth", "loaded"),
        ("resolver", "fixture-names", "loaded"),
    ]
    assert records["cli-good"][4]["schemes"] == ["ember+fixture"]


def test_plugins_applies_block_list(installed, environment, capsys):
    install_distribution(installed / "blocked", "cli-blocked", PACKAGE,
                         {"cliboom": "raises_on_import"})
    environment.syspath_prepend(str(installed / "blocked"))
    environment.setenv("EMBER_PLUGINS_BLOCK", "cliboom")

    assert run_plugins("--json") == 0

    records = rows_by_distribution(json.loads(capsys.readouterr().out))
    assert [(r["name"], r["status"], r["reason"]) for r in records["cli-blocked"]] == [
        ("cliboom", "blocked", "entry point 'cliboom' is listed in plugins_block"),
    ]
    assert f"{PACKAGE}.raises_on_import" not in sys.modules


def test_plugins_invalid_environment_exits_2(environment, capsys):
    environment.setenv("EMBER_PLUGINS_BLOCK", "x")
    environment.setenv("EMBER_PORT", "eighty")

    assert run_plugins() == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "ember plugins: invalid value 'eighty' for EMBER_PORT: expected an integer from 0 "
        "to 65535\n"
    )


def test_plugins_table_without_records():
    assert plugins_command.render_table([]) == (
        "no plugins are installed in the 'ember' entry-point group"
    )


# -- ember config, in process ----------------------------------------------------------------


def test_config_table_shows_sources(environment, capsys):
    environment.setenv("EMBER_MAX_WORKERS", "4")

    assert run_config() == 0

    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["SETTING"] == ["SETTING", "VALUE", "UNIT", "SOURCE", "ENVIRONMENT", "VARIABLE"]
    assert rows["max_workers"] == ["max_workers", "4", "-", "environment", "EMBER_MAX_WORKERS"]
    assert rows["call_timeout"] == ["call_timeout", "30.0", "seconds", "default",
                                    "EMBER_CALL_TIMEOUT"]
    assert rows["authenticator"] == ["authenticator", '""', "-", "default",
                                     "EMBER_AUTHENTICATOR"]
    assert rows["send_tracebacks"][1] == "false"


def test_config_json_keeps_types(environment, capsys):
    environment.setenv("EMBER_ACCEPTED_SERIALIZERS", "cbor,serpent")

    assert run_config("--json") == 0

    document = json.loads(capsys.readouterr().out)
    assert document["accepted_serializers"] == {
        "value": ["cbor", "serpent"],
        "unit": "",
        "source": "environment",
        "env_var": "EMBER_ACCEPTED_SERIALIZERS",
    }
    assert document["max_message_size"]["value"] == 64 * 1024 * 1024
    assert document["max_message_size"]["unit"] == "bytes"
    assert document["send_tracebacks"]["value"] is False
    assert list(document)[:2] == ["host", "port"]


def test_config_defaults_ignore_environment(environment, capsys):
    environment.setenv("EMBER_PORT", "not-a-port")
    environment.setenv("EMBER_MAX_WORKERS", "4")

    assert run_config("--defaults", "--json") == 0

    document = json.loads(capsys.readouterr().out)
    assert document["port"]["value"] == 0
    assert document["max_workers"] == {
        "value": 32, "unit": "", "source": "default", "env_var": "EMBER_MAX_WORKERS",
    }


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("EMBER_SEND_TRACEBACKS", "maybe",
     "ember config: invalid value 'maybe' for EMBER_SEND_TRACEBACKS: expected one of 1, 0, "
     "true, false, yes, no, on, off\n"),
    ("EMBER_CALL_TIMEOUT", "-1",
     "ember config: invalid value -1.0 for EMBER_CALL_TIMEOUT: expected a number of at least "
     "0.001 (seconds)\n"),
])
def test_config_invalid_variable_exits_2(environment, capsys, variable, value, message):
    environment.setenv(variable, value)

    assert run_config() == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == message


def test_config_unknown_variable_exits_2(environment, capsys):
    environment.setenv("EMBER_PROT", "80")

    assert run_config() == 2

    error = capsys.readouterr().err
    assert error.startswith("ember config: unknown environment variable EMBER_PROT: ")


def test_config_hides_secret_values():
    token = Setting("token", str, "", "Token for the service.", secret=True)
    missing = Setting("other_token", str, "", "Another token.", secret=True)
    entries = [(token, "s3cr3t-value", "environment"), (missing, "", "default")]

    table = config_command.render_table(entries)
    document = json.loads(config_command.render_json(entries))

    assert "s3cr3t-value" not in table
    assert table.splitlines()[1].split() == ["token", "<set>", "-", "environment", "EMBER_TOKEN"]
    assert table.splitlines()[2].split()[1] == "<unset>"
    assert document["token"]["value"] == "<set>"
    assert document["other_token"]["value"] == "<unset>"


# -- the real commands -----------------------------------------------------------------------


def run_ember(*arguments: str, extra_path: Path | None = None, **variables: str):
    """Run ``python -m ember`` in a child process with only the given EMBER_* variables."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("EMBER_")}
    # Child processes import the fixtures as a top-level package from the tests folder.
    paths = [str(TESTS)] + ([str(extra_path)] if extra_path else [])
    if environ.get("PYTHONPATH"):
        paths.append(environ["PYTHONPATH"])
    environ["PYTHONPATH"] = os.pathsep.join(paths)
    environ.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "ember", *arguments],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )


def test_command_plugins_reports_failed_plugin(tmp_path):
    install_distribution(tmp_path, "cli-good", "registry_fixtures", {"cligood": "good"})
    install_distribution(tmp_path, "cli-broken", "registry_fixtures",
                         {"clibroken": "broken_import"})
    install_distribution(tmp_path, "cli-blocked", "registry_fixtures",
                         {"cliboom": "raises_on_import"})

    completed = run_ember("plugins", "--json", extra_path=tmp_path,
                          EMBER_PLUGINS_BLOCK="cliboom")

    assert completed.returncode == 0, completed.stderr
    records = rows_by_distribution(json.loads(completed.stdout))
    assert [(r["name"], r["status"]) for r in records["cli-broken"]] == [
        ("clibroken", "failed"),
    ]
    assert [(r["name"], r["status"]) for r in records["cli-blocked"]] == [
        ("cliboom", "blocked"),
    ]
    assert ("json", "loaded") in [(r["name"], r["status"]) for r in records["cli-good"]]
    assert "clibroken" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_command_plugins_table(tmp_path):
    install_distribution(tmp_path, "cli-good", "registry_fixtures", {"cligood": "good"})

    completed = run_ember("plugins", extra_path=tmp_path)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("KIND ")
    assert any(line.split()[:2] == ["resolver", "fixture-names"] for line in lines[1:])


def test_command_config_reads_environment():
    completed = run_ember("config", EMBER_CALL_TIMEOUT="2.5")

    assert completed.returncode == 0, completed.stderr
    rows = {line.split()[0]: line.split() for line in completed.stdout.splitlines()}
    assert rows["call_timeout"] == ["call_timeout", "2.5", "seconds", "environment",
                                    "EMBER_CALL_TIMEOUT"]


def test_command_config_json_defaults():
    completed = run_ember("config", "--json", "--defaults", EMBER_CALL_TIMEOUT="2.5")

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["call_timeout"]["value"] == 30.0


@pytest.mark.parametrize("command", ["config", "plugins"])
def test_command_invalid_variable_exits_2(command):
    completed = run_ember(command, EMBER_MAX_DEPTH="deep")

    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == (
        f"ember {command}: invalid value 'deep' for EMBER_MAX_DEPTH: expected an integer "
        f"from 1 to 10000\n"
    )
