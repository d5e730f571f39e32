"""Names that must never reach an object, sent to a daemon in another process.

Every Probe method records itself in a process-wide journal, and ``Probe.__init__`` does
too, so an unchanged journal proves that a rejected request ran no code at all: no
method, no property, and no constructor of a per-call or per-session instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import DaemonProcess

from ember import Proxy
from ember.kernel.protocol import Flag

FORBIDDEN_NAMES = [
    "__class__",
    "ping.__globals__",
    "a.b.c",
    "_private",
    "__init__",
    "__dict__",
    "echo.__self__",
    "a.",
    "",
    "ping()",
]

KINDS = {
    "call": (Flag.NONE, ()),
    "get": (Flag.GET_ATTRIBUTE, ()),
    "set": (Flag.SET_ATTRIBUTE, ("changed",)),
}


@pytest.fixture(scope="module")
def journal_reader(shared_daemon: DaemonProcess) -> Iterator[Any]:
    with Proxy(shared_daemon.uri, call_timeout=5.0) as proxy:
        yield proxy


def unknown_message(object_id: str, name: str) -> str:
    return f"object {object_id!r} has no exposed member {name!r}"


@pytest.mark.parametrize("object_id", ["probe", "probe-session", "probe-percall"])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", FORBIDDEN_NAMES)
def test_forbidden_name_rejected_like_unknown(
    shared_daemon: DaemonProcess, journal_reader: Any, object_id: str, kind: str,
    name: str,
) -> None:
    flags, args = KINDS[kind]
    uri = shared_daemon.uris[object_id]
    journal_before = journal_reader.journal()

    with Proxy(uri, call_timeout=5.0) as proxy:
        with pytest.raises(AttributeError) as forbidden:
            proxy._ember_invoke(name, args, {}, flags)
        with pytest.raises(AttributeError) as unknown:
            proxy._ember_invoke("no_such_member", args, {}, flags)

    assert str(forbidden.value) == unknown_message(object_id, name)
    assert str(unknown.value) == unknown_message(object_id, "no_such_member")
    assert journal_reader.journal() == journal_before


def test_exposed_member_still_runs(journal_reader: Any) -> None:
    """The journal records real calls, so the rejection tests above can fail."""
    journal_before = journal_reader.journal()

    assert journal_reader.ping() == "pong"

    assert journal_reader.journal() == [*journal_before, "ping"]


def test_private_name_never_sent(journal_reader: Any) -> None:
    with pytest.raises(AttributeError, match="never sent"):
        journal_reader._private  # noqa: B018 - the attribute access is the test


def test_method_read_as_property_rejected(shared_daemon: DaemonProcess,
                                          journal_reader: Any) -> None:
    journal_before = journal_reader.journal()

    with Proxy(shared_daemon.uri, call_timeout=5.0) as proxy:
        with pytest.raises(AttributeError, match="no exposed member 'ping'"):
            proxy._ember_invoke("ping", (), {}, Flag.GET_ATTRIBUTE)

    assert journal_reader.journal() == journal_before


def test_read_only_property_rejects_set(shared_daemon: DaemonProcess,
                                        journal_reader: Any) -> None:
    journal_before = journal_reader.journal()

    with Proxy(shared_daemon.uri, call_timeout=5.0) as proxy:
        with pytest.raises(AttributeError, match="no exposed member 'a'"):
            proxy._ember_invoke("a", ("x",), {}, Flag.SET_ATTRIBUTE)

    assert journal_reader.journal() == journal_before
