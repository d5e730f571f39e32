"""Daemon security policy: exposure checks, warnings, mismatches, secrets in URIs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

import ember.plugins.auth.hmac as hmac_plugin
import ember.plugins.serializers.cbor as cbor_plugin
from ember import Config, Daemon, Proxy, expose
from ember.kernel.errors import (
    ConfigError,
    EmberTimeout,
    ProtocolError,
    SecurityError,
    UsageError,
)
from ember.kernel.hookspecs import hookimpl
from ember.kernel.registry import Registry
from ember.kernel.transport import Transport
from ember.plugins.transports.tcp import TcpAddress, TcpTransport

KEY = "ab" * 32


@expose
class Greeter:
    def hello(self) -> str:
        return "hello"


class ExposedTcp(TcpTransport):
    """TCP that reports its loopback address as reachable from other hosts.

    Tests must not bind a public address, so this transport replaces one. The policy
    only asks the transport whether an address is loopback.
    """

    name = "tcp-exposed"

    def is_loopback(self, address: TcpAddress) -> bool:
        return False


class ExposedPlugin:
    @hookimpl
    def ember_transports(self) -> list[Transport]:
        return [ExposedTcp()]


@pytest.fixture
def exposed_registry() -> Registry:
    registry = Registry()
    registry.register(cbor_plugin, name="cbor")
    registry.register(hmac_plugin, name="hmac")
    registry.register(ExposedPlugin(), name="tcp-exposed")
    return registry


def exposed_daemon(registry: Registry, **settings: object) -> Daemon:
    config = Config.defaults().replace(transport="tcp-exposed", accepted_serializers=("cbor",),
                                       **settings)
    return Daemon(config=config, registry=registry)


# -- binding beyond loopback ---------------------------------------------------------

def test_exposed_bind_without_authenticator_refused(exposed_registry: Registry) -> None:
    with pytest.raises(SecurityError, match="allow_insecure"):
        exposed_daemon(exposed_registry)


def test_allow_insecure_warns_at_every_start(exposed_registry: Registry,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ember"):
        for _ in range(2):
            exposed_daemon(exposed_registry, allow_insecure=True).close()

    warnings = [r for r in caplog.records if "because allow_insecure is set" in r.message]
    assert len(warnings) == 2


def test_exposed_bind_with_authenticator_allowed(exposed_registry: Registry,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ember"):
        exposed_daemon(exposed_registry, authenticator="hmac", hmac_key=KEY).close()

    assert "authenticator" not in caplog.text


def test_no_authenticator_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ember"), \
            Daemon(config=Config.defaults()) as daemon:
        uri = daemon.register(Greeter, "greeter")
        daemon.start()
        for _ in range(3):
            with Proxy(uri, config=Config.defaults()) as proxy:
                assert proxy.hello() == "hello"

    warnings = [r for r in caplog.records if "has no authenticator" in r.message]
    assert len(warnings) == 1


def test_authenticator_silences_local_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = Config.defaults().replace(authenticator="hmac", hmac_key=KEY)
    with caplog.at_level(logging.WARNING, logger="ember"), Daemon(config=config):
        pass

    assert "has no authenticator" not in caplog.text


# -- mismatched configurations fail fast ---------------------------------------------

MISMATCHES = {
    "client hmac, daemon none": ({}, {"authenticator": "hmac", "hmac_key": KEY}),
    "client none, daemon hmac": ({"authenticator": "hmac", "hmac_key": KEY}, {}),
    "client ed25519, daemon hmac": (
        {"authenticator": "hmac", "hmac_key": KEY},
        {"authenticator": "ed25519", "ed25519_key": "cd" * 32}),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_authenticator_mismatch_fails_fast(case: str) -> None:
    daemon_settings, client_settings = MISMATCHES[case]
    client = Config.defaults().replace(handshake_timeout=60.0, call_timeout=60.0,
                                       **client_settings)
    with Daemon(config=Config.defaults().replace(**daemon_settings)) as daemon:
        uri = daemon.register(Greeter, "greeter")
        daemon.start()
        with pytest.raises(SecurityError, match="authenticator") as raised:
            Proxy(uri, config=client).hello()

    assert not isinstance(raised.value, EmberTimeout)


def test_client_missing_key_fails_before_connecting() -> None:
    config = Config.defaults().replace(authenticator="hmac", handshake_timeout=60.0)
    with Daemon(config=Config.defaults().replace(authenticator="hmac", hmac_key=KEY)) as daemon:
        uri = daemon.register(Greeter, "greeter")
        daemon.start()
        with pytest.raises(ConfigError, match="hmac_key_file"):
            Proxy(uri, config=config).hello()


def test_daemon_missing_key_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="hmac authenticator needs a shared key"):
        Daemon(config=Config.defaults().replace(authenticator="hmac"))


def test_proxy_missing_key_fails_at_creation() -> None:
    with pytest.raises(ConfigError, match="hmac authenticator needs a shared key"):
        Proxy("ember+tcp://127.0.0.1:9/greeter",
              config=Config.defaults().replace(authenticator="hmac"))


def test_unsafe_key_file_fails_at_start(tmp_path: Path) -> None:
    key_file = tmp_path / "shared.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)

    with pytest.raises(SecurityError, match="chmod 600"):
        Daemon(config=Config.defaults().replace(authenticator="hmac",
                                                hmac_key_file=str(key_file)))


def test_key_file_exposed_after_start_rejects_opaquely(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "shared.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    server = Config.defaults().replace(authenticator="hmac", hmac_key_file=str(key_file))
    client = Config.defaults().replace(authenticator="hmac", hmac_key=KEY)

    with caplog.at_level(logging.WARNING, logger="ember"), Daemon(config=server) as daemon:
        uri = daemon.register(Greeter, "greeter")
        daemon.start()
        key_file.chmod(0o644)
        with pytest.raises(SecurityError, match="authentication failed") as caught:
            Proxy(uri, config=client).hello()

    assert "chmod" not in str(caught.value)
    assert "chmod 600" in caplog.text


def test_plain_client_to_nacl_fails_fast(tmp_path: Path) -> None:
    from ember.cli.keygen import create_keys

    create_keys("nacl", tmp_path / "server.key")
    config = Config.defaults().replace(transport="nacl",
                                       nacl_server_key_file=str(tmp_path / "server.key"))
    with Daemon(config=config) as daemon:
        uri = daemon.register(Greeter, "greeter")
        daemon.start()
        plain = uri.replace("ember+nacl://", "ember+tcp://").split("?")[0]
        with pytest.raises(ProtocolError, match="nacl"):
            Proxy(plain, config=Config.defaults().replace(handshake_timeout=60.0)).hello()


# -- secrets and configuration -------------------------------------------------------

def test_secret_uri_option_rejected() -> None:
    with pytest.raises(UsageError, match="secret"):
        Proxy(f"ember+tcp://127.0.0.1:9/greeter?hmac_key={KEY}", config=Config.defaults())


def test_public_key_uri_option_accepted() -> None:
    proxy = Proxy(f"ember+tcp://127.0.0.1:9/greeter?ed25519_server_key={'00' * 32}",
                  config=Config.defaults())
    assert proxy._ember_config.ed25519_server_key == "00" * 32


def test_environment_secret_hidden_in_repr() -> None:
    environment: Mapping[str, str] = {"EMBER_HMAC_KEY": KEY, "EMBER_AUTHENTICATOR": "hmac"}
    config = Config.from_environment(environment)

    assert config.hmac_key == KEY
    assert KEY not in repr(config)


def test_defaults_ignore_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_AUTHENTICATOR", "hmac")
    assert Config.from_environment().authenticator == "hmac"
    assert Config.defaults().authenticator == ""


def test_invalid_octal_mode_rejected() -> None:
    with pytest.raises(ConfigError, match="unix_socket_mode"):
        Daemon(address="/tmp/ember-policy-never-created.sock",
               config=Config.defaults().replace(transport="unix", unix_socket_mode="9"))
