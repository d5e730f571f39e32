"""Secrets never appear in logs, exception messages or output, whatever fails."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ember import Config, Daemon, Proxy, expose
from ember.cli.keygen import create_keys
from ember.kernel.errors import EmberError
from ember.kernel.keys import load_key_file
from ember.plugins.auth.hmac import load_shared_key


@expose
class Safe:
    def ping(self) -> None:
        return None


def forms(secret: bytes) -> list[str]:
    """Return every text form in which a leaked key could show up."""
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)[2:-1],
            secret.decode("latin-1")]


@pytest.fixture
def key_folder(tmp_path: Path) -> Iterator[Path]:
    for kind, name in (("hmac", "shared"), ("hmac", "other"), ("ed25519", "client"),
                       ("ed25519", "daemon"), ("nacl", "server")):
        create_keys(kind, tmp_path / f"{name}.key", name=name)
    (tmp_path / "authorized").write_text("")  # nobody is authorized
    yield tmp_path


def secrets_in(folder: Path) -> list[bytes]:
    return [load_key_file(path, what="test key", secret=True)
            for path in sorted(folder.glob("*.key"))]


def attempt(daemon_settings: dict[str, object], client_settings: dict[str, object],
            rewrite: Callable[[str], str] = lambda uri: uri) -> str:
    """Run one failing connection; return the text of the error it raised."""
    with Daemon(config=Config.defaults().replace(**daemon_settings)) as daemon:
        uri = rewrite(daemon.register(Safe, "safe"))
        daemon.start()
        client = Config.defaults().replace(handshake_timeout=30.0, **client_settings)
        with pytest.raises(EmberError) as raised:
            Proxy(uri, config=client).ping()
    return f"{raised.value!r} {raised.value} {getattr(raised.value, '__notes__', '')}"


def test_failures_never_show_keys(key_folder: Path, caplog: pytest.LogCaptureFixture,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    folder = key_folder
    shared_hex = load_key_file(folder / "shared.key", what="key", secret=True).hex()
    other_hex = load_key_file(folder / "other.key", what="key", secret=True).hex()
    errors = []
    with caplog.at_level(logging.DEBUG, logger="ember"):
        errors.append(attempt({"authenticator": "hmac", "hmac_key": shared_hex},
                              {"authenticator": "hmac", "hmac_key": other_hex}))
        errors.append(attempt(
            {"authenticator": "hmac", "hmac_key_file": str(folder / "shared.key")},
            {"authenticator": "hmac", "hmac_key_file": str(folder / "other.key")}))
        errors.append(attempt(
            {"authenticator": "ed25519", "ed25519_authorized_keys": str(folder / "authorized"),
             "ed25519_key_file": str(folder / "daemon.key")},
            {"authenticator": "ed25519", "ed25519_key_file": str(folder / "client.key")}))
        errors.append(attempt(
            {"transport": "nacl", "nacl_server_key_file": str(folder / "server.key")}, {},
            lambda uri: uri.split("?")[0] + "?nacl_server_public_key=" + "11" * 32))
        errors.append(attempt({"authenticator": "hmac", "hmac_key": shared_hex},
                              {"authenticator": "hmac", "hmac_key": shared_hex[:40]}))

    captured = capfd.readouterr()
    text = "\n".join([caplog.text, captured.out, captured.err, *errors])
    assert "authentication failed" in text
    for secret in secrets_in(folder):
        for form in forms(secret):
            assert form not in text


@pytest.mark.parametrize("bad", ["zz" + "ab" * 40, "ab" * 20])
def test_invalid_secret_value_not_echoed(bad: str) -> None:
    with pytest.raises(EmberError) as raised:
        load_shared_key({"hmac_key": bad})

    assert bad not in str(raised.value)
    assert "hmac_key" in str(raised.value)


def test_invalid_environment_secret_not_echoed() -> None:
    with pytest.raises(EmberError) as raised:
        Config.from_environment({"EMBER_HMAC_KEY_FILE": "x", "EMBER_HMAC_KEYS": "secret!"})

    assert "secret!" not in str(raised.value)
