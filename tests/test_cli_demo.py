"""``ember demo`` and ``ember echo-server``, run as real commands."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys

from ember import Proxy, RemoteError

COMMAND_TIMEOUT = 60.0


def clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("EMBER_")}


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_runs_and_leaves_no_process() -> None:
    result = subprocess.run([sys.executable, "-m", "ember", "demo"], capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT, env=clean_environment())

    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert "stack:  cbor over tcp, no authenticator" in output
    assert "DIFFERENT" not in output
    assert output.count("same type and value") == 6
    assert "raised KeyError('missing')" in output
    assert "calling '__class__' is rejected" in output
    assert "daemon stopped cleanly (exit code 0)" in output

    match = re.search(r"daemon: pid (\d+), serving (ember\+tcp://127\.0\.0\.1:\d+/kvstore)",
                      output)
    assert match is not None, output
    assert not is_running(int(match.group(1)))


def test_echo_server_prints_uri_and_serves() -> None:
    server = subprocess.Popen([sys.executable, "-m", "ember", "echo-server"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_environment())
    try:
        assert server.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(server.stdout, selectors.EVENT_READ)
            assert selector.select(COMMAND_TIMEOUT), "echo-server printed no URI"
        uri = server.stdout.readline().strip()
        assert re.fullmatch(r"ember\+tcp://127\.0\.0\.1:\d+/echo", uri), uri

        with Proxy(uri, call_timeout=5.0) as echo:
            assert echo.echo({"k": [1, b"\x00"]}) == {"k": [1, b"\x00"]}
            assert echo.ping() is None
            assert echo.slow(0.05) == 0.05
            try:
                echo.error("boom")
            except ValueError as error:
                assert str(error) == "boom"
            except RemoteError as error:  # pragma: no cover - would be a regression
                raise AssertionError(f"ValueError came back as {error!r}") from error
            else:
                raise AssertionError("error() did not raise")
    finally:
        server.terminate()
        code = server.wait(timeout=COMMAND_TIMEOUT)

    assert code == 0
