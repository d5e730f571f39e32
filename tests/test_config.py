"""Tests of typed configuration and of the generated configuration reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember.kernel.config import SETTINGS, Config, Setting
from ember.kernel.config_reference import REGENERATE_COMMAND, format_value, render_markdown
from ember.kernel.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parents[1]
BOOLEAN_WORDS = "one of 1, 0, true, false, yes, no, on, off"


@pytest.fixture
def clean_environment(monkeypatch):
    """Remove every EMBER_* variable of the test process."""
    for variable in [name for name in os.environ if name.startswith("EMBER_")]:
        monkeypatch.delenv(variable)


# -- sources --------------------------------------------------------------------------------


def test_defaults_match_declarations():
    config = Config.defaults()

    for setting in SETTINGS:
        assert config[setting.name] == setting.default, setting.name
        assert config.source(setting.name) == "default", setting.name
    assert config.port == 0
    assert config.accepted_serializers == ("cbor",)


def test_environment_overrides_defaults():
    config = Config.from_environment({
        "EMBER_PORT": "8080",
        "EMBER_CALL_TIMEOUT": "2.5",
        "EMBER_SEND_TRACEBACKS": " Yes ",
        "EMBER_ACCEPTED_SERIALIZERS": "cbor, serpent,,",
        "EMBER_HOST": " ::1 ",
        "PATH": "/usr/bin",
    })

    assert config.port == 8080
    assert config.call_timeout == 2.5
    assert config.send_tracebacks is True
    assert config.accepted_serializers == ("cbor", "serpent")
    assert config.host == "::1"
    assert config.source("port") == "environment"
    assert config.source("max_workers") == "default"


def test_empty_list_variable_sets_empty_list():
    config = Config.from_environment({"EMBER_ACCEPTED_SERIALIZERS": ""})

    assert config.accepted_serializers == ()


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("ON", True), ("yes", True),
    ("0", False), ("False", False), ("off", False), ("no", False),
])
def test_boolean_words(text, expected):
    config = Config.from_environment({"EMBER_SEND_TRACEBACKS": text})

    assert config.send_tracebacks is expected


def test_code_overrides_environment():
    from_environment = Config.from_environment({"EMBER_PORT": "8080", "EMBER_MAX_DEPTH": "10"})

    config = from_environment.replace(port=9090, accepted_serializers=["cbor", "serpent"])

    assert config.port == 9090
    assert config.source("port") == "code"
    assert config.max_depth == 10
    assert config.source("max_depth") == "environment"
    assert config.accepted_serializers == ("cbor", "serpent")
    assert from_environment.port == 8080


def test_code_float_setting_accepts_int():
    config = Config.defaults().replace(call_timeout=3)

    assert config.call_timeout == 3.0
    assert isinstance(config.call_timeout, float)


def test_defaults_ignore_environment(clean_environment, monkeypatch):
    monkeypatch.setenv("EMBER_PORT", "4321")
    monkeypatch.setenv("EMBER_NOT_A_SETTING", "1")

    config = Config.defaults()

    assert config.port == 0
    assert config.source("port") == "default"


def test_from_environment_reads_process_environment(clean_environment, monkeypatch):
    monkeypatch.setenv("EMBER_MAX_WORKERS", "4")

    config = Config.from_environment()

    assert config.max_workers == 4
    assert config.source("max_workers") == "environment"


def test_config_is_immutable():
    config = Config.defaults()

    with pytest.raises(AttributeError, match=r"Config is immutable; use Config.replace\(...\)"):
        config.port = 1


def test_repr_shows_only_overridden_settings():
    config = Config.defaults().replace(port=1234)

    assert repr(config) == "Config(port=1234)"


# -- invalid values ---------------------------------------------------------------------------


def test_unknown_environment_variable():
    with pytest.raises(ConfigError) as raised:
        Config.from_environment({"EMBER_PROT": "80"})

    message = str(raised.value)
    assert message.startswith(
        "unknown environment variable EMBER_PROT: ember reads only these EMBER_* variables: "
        "EMBER_ACCEPTED_SERIALIZERS, "
    )
    assert message.endswith(". Unset it or fix its name.")
    assert "EMBER_PORT, " in message
    assert raised.value.setting == "EMBER_PROT"
    assert isinstance(raised.value, ValueError)


def test_unknown_setting_in_code():
    with pytest.raises(ConfigError, match="unknown setting 'prot'; known settings: "):
        Config.defaults().replace(prot=80)


@pytest.mark.parametrize(("variable", "text", "expected"), [
    ("EMBER_SEND_TRACEBACKS", "maybe", BOOLEAN_WORDS),
    ("EMBER_SEND_TRACEBACKS", "", BOOLEAN_WORDS),
    ("EMBER_PORT", "eighty", "an integer from 0 to 65535"),
    ("EMBER_PORT", "80.5", "an integer from 0 to 65535"),
    ("EMBER_PORT", "0x50", "an integer from 0 to 65535"),
    ("EMBER_CALL_TIMEOUT", "soon", "a number of at least 0.001 (seconds)"),
    ("EMBER_CALL_TIMEOUT", "nan", "a number of at least 0.001 (seconds)"),
    ("EMBER_CALL_TIMEOUT", "inf", "a number of at least 0.001 (seconds)"),
])
def test_wrong_type_in_environment(variable, text, expected):
    with pytest.raises(ConfigError) as raised:
        Config.from_environment({variable: text})

    assert str(raised.value) == f"invalid value {text!r} for {variable}: expected {expected}"
    assert raised.value.setting == variable


@pytest.mark.parametrize(("name", "value", "shown", "expected"), [
    ("send_tracebacks", 1, "1", BOOLEAN_WORDS),
    ("port", True, "True", "an integer from 0 to 65535"),
    ("port", 80.0, "80.0", "an integer from 0 to 65535"),
    ("call_timeout", None, "None", "a number of at least 0.001 (seconds)"),
    ("host", 127, "127", "a string"),
    ("accepted_serializers", [1, 2], "[1, 2]",
     "a comma-separated list of names (may be empty)"),
    ("accepted_serializers", 5, "5", "a comma-separated list of names (may be empty)"),
])
def test_wrong_type_in_code(name, value, shown, expected):
    with pytest.raises(ConfigError) as raised:
        Config.defaults().replace(**{name: value})

    assert str(raised.value) == f"invalid value {shown} for setting '{name}': expected {expected}"


# The message shows the converted value, so "0" for a float setting reads 0.0.
@pytest.mark.parametrize(("variable", "text", "shown", "expected"), [
    ("EMBER_PORT", "65536", "65536", "an integer from 0 to 65535"),
    ("EMBER_PORT", "-1", "-1", "an integer from 0 to 65535"),
    ("EMBER_CALL_TIMEOUT", "0", "0.0", "a number of at least 0.001 (seconds)"),
    ("EMBER_MAX_MESSAGE_SIZE", "1023", "1023", "an integer from 1024 to 4294967295 (bytes)"),
    ("EMBER_MAX_DEPTH", "0", "0", "an integer from 1 to 10000"),
    ("EMBER_MAX_CONNECTIONS", "100001", "100001", "an integer from 1 to 100000"),
])
def test_value_out_of_range(variable, text, shown, expected):
    with pytest.raises(ConfigError) as raised:
        Config.from_environment({variable: text})

    assert str(raised.value) == f"invalid value {shown} for {variable}: expected {expected}"


@pytest.mark.parametrize(("variable", "text"), [
    ("EMBER_PORT", "65535"),
    ("EMBER_PORT", "0"),
    ("EMBER_MAX_MESSAGE_SIZE", "1024"),
    ("EMBER_CALL_TIMEOUT", "0.001"),
])
def test_range_limits_are_inclusive(variable, text):
    Config.from_environment({variable: text})


def test_choices_are_enforced():
    setting = Setting("mode", str, "fast", "Mode.", choices=("fast", "safe"))

    with pytest.raises(ConfigError) as raised:
        setting.coerce("slow", "EMBER_MODE")

    assert str(raised.value) == "invalid value 'slow' for EMBER_MODE: expected one of fast, safe"


def test_secret_value_never_in_message():
    setting = Setting("token", int, 0, "A numeric token.", secret=True)

    with pytest.raises(ConfigError) as raised:
        setting.coerce("hunter2", "EMBER_TOKEN")

    assert "hunter2" not in str(raised.value)
    assert str(raised.value) == "invalid value <secret> for EMBER_TOKEN: expected an integer"


# -- the generated reference ----------------------------------------------------------------------


def test_committed_reference_is_current():
    committed = (REPOSITORY / "docs" / "configuration.md").read_text(encoding="utf-8")

    assert committed == render_markdown(), (
        f"docs/configuration.md is out of date; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_reference_module_prints_reference():
    completed = subprocess.run(
        [sys.executable, "-m", "ember.kernel.config_reference"],
        capture_output=True, text=True, check=True, timeout=60,
    )

    assert completed.stdout == render_markdown()


def test_reference_documents_every_setting():
    text = render_markdown()

    for setting in SETTINGS:
        assert f"\n## `{setting.name}`\n" in text, setting.name
        assert f"- Environment variable: `{setting.env_var}`" in text, setting.name
        assert f"- Accepted values: {setting.accepted()}" in text, setting.name
        assert setting.doc in text, setting.name


def test_reference_hides_secret_default():
    secret = Setting("token", str, "built-in-token", "Token for the service.", secret=True)

    text = render_markdown([secret])

    assert "built-in-token" not in text
    assert "- Default: `<set>`" in text
    assert "- Secret: `ember config` prints only whether it is set" in text


@pytest.mark.parametrize(("setting", "value", "text"), [
    (Setting("flag", bool, False, "."), True, "true"),
    (Setting("names", tuple, (), "."), ("a", "b"), "a,b"),
    (Setting("names", tuple, (), "."), (), '""'),
    (Setting("host", str, "", "."), "", '""'),
    (Setting("timeout", float, 1.0, "."), 2.5, "2.5"),
    (Setting("token", str, "", ".", secret=True), "", "<unset>"),
    (Setting("token", str, "", ".", secret=True), "abc", "<set>"),
])
def test_format_value(setting, value, text):
    assert format_value(setting, value) == text
