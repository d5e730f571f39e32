"""The quarantined pickle serializer: its allowlist, its quarantine and its warnings."""

from __future__ import annotations

import builtins
import decimal
import logging
import os
import pickle
import secrets
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from ember import Daemon, Proxy, expose
from ember.kernel.config import Config
from ember.kernel.errors import ProtocolError, SecurityError
from ember.kernel.registry import Registry
from ember.kernel.serializer import DecodeLimits
from ember.plugins.serializers.pickle import DEFAULT_ALLOWED_GLOBALS, PickleSerializer

LIMITS = DecodeLimits()


class Touch:
    """Unpickling this calls ``open(path, "w")`` (pickled as io.open), which creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.open, (str(self.path), "w"))


class RunShell:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("true",))


@pytest.fixture
def serializer() -> PickleSerializer:
    return PickleSerializer(allowed_globals=())


VALUES = [
    None, True, 3, 2**100, 1.5, "text", b"bytes", bytearray(b"ba"), [1], (1, 2), {"a": 1},
    {1, 2}, frozenset({3}), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2024, 1, 2, tzinfo=timezone(timedelta(hours=3))), date(2024, 1, 2),
    time(4, 5, 6), decimal.Decimal("1.25"), uuid.UUID(int=42), timedelta(days=2),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_allowlisted_value_round_trips(serializer: PickleSerializer, value: object) -> None:
    result = serializer.loads(serializer.dumps(value), LIMITS)

    assert result == value
    assert type(result) is type(value)


def test_global_outside_allowlist_never_runs(serializer: PickleSerializer,
                                             tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    body = pickle.dumps(Touch(marker))

    with pytest.raises(ProtocolError, match=r"'io\.open', which is not on the allowlist"):
        serializer.loads(body, LIMITS)
    assert not marker.exists()


def test_os_system_is_rejected_by_name(serializer: PickleSerializer) -> None:
    with pytest.raises(ProtocolError, match=r"global 'posix\.system'|global 'os\.system'"):
        serializer.loads(pickle.dumps(RunShell()), LIMITS)


def test_extra_global_can_be_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    serializer = PickleSerializer(allowed_globals=("io.open",))

    handle = serializer.loads(pickle.dumps(Touch(marker)), LIMITS)
    handle.close()

    assert marker.exists()


def test_allowlist_setting_is_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_PICKLE_ALLOWED_GLOBALS", "collections.OrderedDict")

    serializer = PickleSerializer()

    assert "collections.OrderedDict" in serializer.allowed_globals
    assert serializer.allowed_globals >= DEFAULT_ALLOWED_GLOBALS


@pytest.mark.parametrize("body", [b"", b"\x80\x05", b"garbage", pickle.dumps(1) + b"extra",
                                  b"\x80\x05P0\n."],
                         ids=["empty", "truncated", "garbage", "trailing", "persistent-id"])
def test_malformed_pickle_is_rejected(serializer: PickleSerializer, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        serializer.loads(body, LIMITS)


def test_first_decode_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    serializer = PickleSerializer(allowed_globals=())

    with caplog.at_level(logging.WARNING, logger="ember.serializers.pickle"):
        serializer.loads(serializer.dumps(1), LIMITS)
        serializer.loads(serializer.dumps(2), LIMITS)

    warnings = [r for r in caplog.records if "can run code" in r.getMessage()]
    assert len(warnings) == 1


# -- the quarantine, through the real registry -------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(Config.defaults())


def test_pickle_is_installed_but_unsafe(registry: Registry) -> None:
    serializer = registry.serializer("pickle")

    assert serializer.wire_id == 3
    assert serializer.is_safe is False


def test_default_daemon_does_not_accept_pickle() -> None:
    config = Config.defaults()

    assert "pickle" not in config.accepted_serializers
    assert config.allow_unsafe_serializers is False


def test_accepting_pickle_without_opt_in_is_refused(registry: Registry) -> None:
    with pytest.raises(SecurityError, match="allow_unsafe_serializers=True"):
        registry.compose(serializer="cbor", transport="tcp", accepted_serializers=("pickle",))


def test_proxy_pickle_without_opt_in_is_refused(registry: Registry) -> None:
    with pytest.raises(SecurityError, match="quarantined"):
        registry.compose(serializer="pickle", transport="tcp")


def test_opt_in_without_authenticator_is_refused(registry: Registry) -> None:
    with pytest.raises(SecurityError, match="neither an authenticator nor an encrypted"):
        registry.compose(serializer="cbor", transport="tcp", accepted_serializers=("pickle",),
                         allow_unsafe_serializers=True)


def test_opt_in_with_authenticator_warns(registry: Registry,
                                         caplog: pytest.LogCaptureFixture) -> None:
    if "hmac" not in registry.names("authenticator"):
        pytest.skip("the hmac authenticator plugin is not installed")

    with caplog.at_level(logging.WARNING, logger="ember.registry"):
        stack = registry.compose(serializer="cbor", transport="tcp", authenticator="hmac",
                                 accepted_serializers=("pickle",),
                                 allow_unsafe_serializers=True)

    assert 3 in stack.accepted
    assert any("quarantine lifted" in record.getMessage() and "'pickle'" in record.getMessage()
               for record in caplog.records)


# -- end to end over loopback ----------------------------------------------------------


@expose
class Echo:
    def echo(self, value: object) -> object:
        return value


def test_daemon_accepting_pickle_without_authenticator_is_refused() -> None:
    with pytest.raises(SecurityError, match="needs an authenticated session"):
        Daemon(config=Config.defaults(), accepted_serializers=("cbor", "pickle"),
               allow_unsafe_serializers=True)


def test_lifted_quarantine_works_with_hmac(registry: Registry, tmp_path: Path) -> None:
    if "hmac" not in registry.names("authenticator"):
        pytest.skip("the hmac authenticator plugin is not installed")
    config = Config.defaults().replace(authenticator="hmac", hmac_key=secrets.token_hex(32))
    daemon = Daemon(config=config, accepted_serializers=("cbor", "pickle"),
                    allow_unsafe_serializers=True).start()
    try:
        uri = daemon.register(Echo(), "echo")
        with Proxy(uri, config=config, serializer="pickle",
                   allow_unsafe_serializers=True) as proxy:
            assert proxy.echo({"when": date(2020, 1, 1)}) == {"when": date(2020, 1, 1)}

            marker = tmp_path / "marker"
            with pytest.raises(ProtocolError, match=r"'io\.open', which is not on the allowlist"):
                proxy.echo(Touch(marker))
            assert not marker.exists()
    finally:
        daemon.close(grace=2.0)
