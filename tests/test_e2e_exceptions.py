"""Exceptions raised by remote methods, as rebuilt for a caller in another process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import DaemonProcess

from ember import Proxy, RemoteError


@pytest.fixture(scope="module")
def probe(shared_daemon: DaemonProcess) -> Iterator[Any]:
    with Proxy(shared_daemon.uri, call_timeout=5.0) as proxy:
        yield proxy


@pytest.mark.parametrize("error_type", [ValueError, KeyError, ZeroDivisionError,
                                        PermissionError])
def test_builtin_exception_keeps_type(probe: Any, error_type: type[Exception]) -> None:
    with pytest.raises(error_type) as raised:
        probe.raise_builtin(error_type.__name__, "the remote message")

    assert type(raised.value) is error_type
    assert raised.value.args == ("the remote message",)
    assert raised.value.remote_traceback is None  # type: ignore[attr-defined]


def test_custom_exception_becomes_remote_error(probe: Any) -> None:
    with pytest.raises(RemoteError) as raised:
        probe.raise_custom("custom failure")

    assert raised.value.remote_type.endswith(".ProbeError")
    assert raised.value.remote_message == "custom failure"
    assert "ProbeError" in str(raised.value)
    assert raised.value.remote_traceback is None


def test_proxy_usable_after_remote_exception(probe: Any) -> None:
    with pytest.raises(ValueError, match="first"):
        probe.raise_builtin("ValueError", "first")

    assert probe.echo("next") == "next"


def test_unknown_object_id_rejected(shared_daemon: DaemonProcess) -> None:
    uri = shared_daemon.uri.rsplit("/", 1)[0] + "/no-such-object"

    with Proxy(uri, call_timeout=5.0) as proxy:
        with pytest.raises(LookupError, match="no object with id 'no-such-object'"):
            proxy.ping()


def test_tracebacks_sent_only_when_enabled(
    spawn_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn_daemon(send_tracebacks="true")

    with Proxy(daemon.uri, call_timeout=5.0) as proxy:
        with pytest.raises(RemoteError) as custom:
            proxy.raise_custom("with traceback")
        with pytest.raises(KeyError) as builtin:
            proxy.raise_builtin("KeyError", "missing")

    remote_traceback = custom.value.remote_traceback
    assert remote_traceback is not None
    assert "Traceback (most recent call last)" in remote_traceback
    assert "raise_custom" in remote_traceback
    assert "ProbeError: with traceback" in remote_traceback

    builtin_traceback = builtin.value.remote_traceback  # type: ignore[attr-defined]
    assert builtin_traceback is not None
    assert "raise_builtin" in builtin_traceback
    assert any("remote traceback" in note for note in builtin.value.__notes__)
