"""Every secure stack end to end across processes, directly and through ``ember demo``.

The daemon runs in a child process that receives its settings, key file paths
included, only through ``EMBER_*`` environment variables. Each child is stopped by
closing its standard input, and killed by PID if it does not exit in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember import Config, Proxy
from ember.cli.keygen import create_keys

CHILD_TIMEOUT = 30.0

DAEMON_SCRIPT = """
import sys
from ember import Daemon, current_call, expose

@expose
class Probe:
    def whoami(self):
        context = current_call()
        return [context.identity, sorted(context.peer_details)]

    def echo(self, value):
        return value

with Daemon(address=sys.argv[1] or None) as daemon:
    print(daemon.register(Probe, "probe"), flush=True)
    daemon.start()
    sys.stdin.read()
"""

STACKS = ["tcp+cbor+hmac", "tcp+cbor+ed25519", "nacl+cbor", "unix+cbor", "nacl-unix+cbor",
          "nacl-unix+cbor+ed25519"]


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert lines and lines[0].strip(), f"the child printed no URI (exit code {process.poll()})"
    return lines[0].strip()


def stop(process: subprocess.Popen[str]) -> int:
    if process.stdin is not None:
        process.stdin.close()
    try:
        return process.wait(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=5)


def prepare(folder: Path, stack: str) -> tuple[dict[str, str], dict[str, object], str]:
    """Create keys for ``stack``; return daemon environment, proxy settings, address."""
    transport, serializer, *rest = stack.split("+")
    authenticator = rest[0] if rest else ""
    environment = {"EMBER_TRANSPORT": transport, "EMBER_SERIALIZER": serializer,
                   "EMBER_AUTHENTICATOR": authenticator}
    settings: dict[str, object] = {"authenticator": authenticator,
                                   "handshake_timeout": CHILD_TIMEOUT}
    address = str(folder / "daemon ü.sock") if "unix" in transport else ""
    if transport.startswith("nacl"):
        create_keys("nacl", folder / "server.key")
        environment["EMBER_NACL_SERVER_KEY_FILE"] = str(folder / "server.key")
    if authenticator == "hmac":
        create_keys("hmac", folder / "shared.key")
        environment["EMBER_HMAC_KEY_FILE"] = str(folder / "shared.key")
        settings["hmac_key_file"] = str(folder / "shared.key")
    if authenticator == "ed25519":
        create_keys("ed25519", folder / "client.key", name="client-one")
        environment["EMBER_ED25519_AUTHORIZED_KEYS"] = str(folder / "client.key.pub")
        settings["ed25519_key_file"] = str(folder / "client.key")
    return environment, settings, address


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("EMBER_"):
            monkeypatch.delenv(name)
    yield


@pytest.mark.parametrize("stack", STACKS)
def test_stack_across_processes(stack: str, tmp_path: Path, clean_environment: None) -> None:
    environment, settings, address = prepare(tmp_path, stack)
    child = subprocess.Popen([sys.executable, "-c", DAEMON_SCRIPT, address],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **environment})
    try:
        uri = read_line(child, CHILD_TIMEOUT)
        with Proxy(uri, config=Config.defaults().replace(**settings)) as proxy:
            identity, details = proxy.whoami()
            payload = os.urandom(1024 * 1024 + 3)
            assert proxy.echo(payload) == payload
    finally:
        code = stop(child)

    assert code == 0
    if "ed25519" in stack:
        assert identity == "client-one"
    elif "unix" in stack:
        assert identity == f"uid:{os.getuid()}"
    if "unix" in stack:
        assert details == ["peer_gid", "peer_pid", "peer_uid"]
    if address:
        assert not Path(address).exists()


@pytest.mark.parametrize("stack", STACKS)
def test_demo_runs_stack(stack: str, clean_environment: None) -> None:
    result = subprocess.run([sys.executable, "-m", "ember", "demo", "--stack", stack],
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    assert "daemon stopped cleanly (exit code 0)" in result.stdout
    transport = stack.split("+")[0]
    assert f"over {transport}," in result.stdout
    if "ed25519" in stack:
        assert "sees this caller as 'demo-client'" in result.stdout


def test_demo_transport_option(clean_environment: None) -> None:
    result = subprocess.run([sys.executable, "-m", "ember", "demo", "--transport", "unix",
                             "--authenticator", "hmac"],
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    assert "cbor over unix, authenticator hmac" in result.stdout


def test_demo_unknown_stack_lists_names(clean_environment: None) -> None:
    result = subprocess.run([sys.executable, "-m", "ember", "demo", "--stack", "carrier+cbor"],
                            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 2
    assert "registered transports" in result.stderr
