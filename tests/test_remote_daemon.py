"""The Daemon: binding, registration, instance modes, serving, one-way calls, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DaemonProcess
from servers.probe import Probe, journal_entries

from ember import Config, Daemon, EmberError, Proxy, TransportError, UsageError, expose

# A one-way call sleeps this long on the daemon; the caller must return well before.
ONEWAY_SECONDS = 1.0


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- binding and registration ------------------------------------------------------------


def test_binds_loopback_and_free_port(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)

    assert daemon.address.host == "127.0.0.1"
    assert daemon.address.port > 0
    assert daemon.location == f"127.0.0.1:{daemon.address.port}"


def test_two_daemons_get_different_ports(make_daemon: Callable[..., Daemon]) -> None:
    first = make_daemon(start=False)
    second = make_daemon(start=False)

    assert first.address.port != second.address.port


def test_register_returns_uri(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)

    named = daemon.register(Probe(), object_id="named")
    generated = daemon.register(Probe())

    assert named == f"ember+tcp://{daemon.location}/named"
    assert generated.startswith(f"ember+tcp://{daemon.location}/obj_")


def test_register_rejects_duplicate_id(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)
    daemon.register(Probe(), object_id="twice")

    with pytest.raises(UsageError, match="object id 'twice' is already registered"):
        daemon.register(Probe(), object_id="twice")


def test_register_rejects_unexposed_class(make_daemon: Callable[..., Daemon]) -> None:
    class Plain:
        def method(self) -> None:
            pass

    daemon = make_daemon(start=False)

    with pytest.raises(UsageError, match="Plain has no exposed members"):
        daemon.register(Plain())


@pytest.mark.parametrize("object_id", ["", "has space", "slash/inside", "x" * 129])
def test_register_rejects_bad_object_id(make_daemon: Callable[..., Daemon],
                                        object_id: str) -> None:
    daemon = make_daemon(start=False)

    with pytest.raises(UsageError, match="invalid object id"):
        daemon.register(Probe(), object_id=object_id)


def test_register_rejects_unknown_mode(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)

    with pytest.raises(UsageError, match="invalid instance_mode 'pooled'"):
        daemon.register(Probe, instance_mode="pooled")  # type: ignore[arg-type]


def test_unregister_removes_object(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="gone")
    daemon.unregister("gone")

    with Proxy(uri, call_timeout=5.0) as proxy, pytest.raises(LookupError, match="'gone'"):
        proxy.ping()
    with pytest.raises(UsageError, match="no object with id 'gone'"):
        daemon.unregister("gone")


# -- instance modes, across processes -----------------------------------------------------


def test_single_mode_shares_one_instance(shared_daemon: DaemonProcess) -> None:
    uri = shared_daemon.uris["probe-single"]
    with Proxy(uri, call_timeout=5.0) as first, Proxy(uri, call_timeout=5.0) as second:
        start = first.count()
        assert second.count() == start + 1
        assert first.count() == start + 2


def test_session_mode_one_instance_per_connection(shared_daemon: DaemonProcess) -> None:
    uri = shared_daemon.uris["probe-session"]
    with Proxy(uri, call_timeout=5.0) as first, Proxy(uri, call_timeout=5.0) as second:
        assert first.count() == 1
        assert first.count() == 2
        assert second.count() == 1

        # A new connection gets a new instance.
        first._ember_close()
        assert first.count() == 1


def test_percall_mode_new_instance_each_call(shared_daemon: DaemonProcess) -> None:
    with Proxy(shared_daemon.uris["probe-percall"], call_timeout=5.0) as proxy:
        assert [proxy.count() for _ in range(3)] == [1, 1, 1]


# -- serving ----------------------------------------------------------------------------


def test_serve_forever_in_foreground(spawn_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = spawn_daemon(foreground=True)

    with Proxy(daemon.uri, call_timeout=5.0) as proxy:
        assert proxy.ping() == "pong"

    assert daemon.stop() == 0


def test_serve_in_background_thread(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="bg")

    with Proxy(uri, call_timeout=5.0) as proxy:
        assert proxy.peer().startswith("127.0.0.1:")


def test_start_twice_rejected(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()

    with pytest.raises(UsageError, match="already started"):
        daemon.start()


def test_context_manager_closes(tmp_path: Any) -> None:
    with Daemon(config=Config.defaults()) as daemon:
        uri = daemon.register(Probe(), object_id="ctx")
        daemon.start()
        with Proxy(uri, call_timeout=5.0) as proxy:
            assert proxy.ping() == "pong"

    proxy = Proxy(uri, call_timeout=2.0, connect_timeout=2.0)
    with pytest.raises(TransportError):
        proxy.ping()


def test_properties_get_and_set(shared_daemon: DaemonProcess) -> None:
    with Proxy(shared_daemon.uris["probe-session"], call_timeout=5.0) as proxy:
        assert proxy.label == "initial"
        proxy.label = "changed"
        assert proxy.label == "changed"

        with pytest.raises(AttributeError, match="no exposed writable property 'a'"):
            proxy.a = "read-only"


# -- one-way calls ------------------------------------------------------------------------


def test_oneway_does_not_wait(shared_daemon: DaemonProcess) -> None:
    with Proxy(shared_daemon.uris["probe-session"], call_timeout=5.0) as proxy:
        proxy.ping()  # connect first, so only the one-way call is timed
        started = time.monotonic()
        assert proxy.sleep_oneway(ONEWAY_SECONDS) is None
        elapsed = time.monotonic() - started

    # A generous bound: a caller that waited would take the full second.
    assert elapsed < ONEWAY_SECONDS / 2


def test_oneway_does_not_block_connection(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="oneway")
    entries_before = len(journal_entries())

    with Proxy(uri, call_timeout=5.0) as proxy:
        proxy.sleep_oneway(ONEWAY_SECONDS)
        assert wait_until(lambda: "sleep_oneway:start" in journal_entries()[entries_before:])

        # A normal call on the same connection completes while the one-way call sleeps.
        assert proxy.ping() == "pong"
        journal_after_ping = journal_entries()[entries_before:]

    assert "ping" in journal_after_ping
    assert "sleep_oneway:end" not in journal_after_ping
    assert wait_until(lambda: "sleep_oneway:end" in journal_entries()[entries_before:])


# -- shutdown ------------------------------------------------------------------------------


def test_close_finishes_call_in_flight(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="slow")
    entries_before = len(journal_entries())
    outcome: list[object] = []

    def call_slowly() -> None:
        with Proxy(uri, call_timeout=10.0) as proxy:
            try:
                outcome.append(proxy.sleep(0.8))
            except EmberError as error:
                outcome.append(error)

    caller = threading.Thread(target=call_slowly)
    caller.start()
    assert wait_until(lambda: "sleep" in journal_entries()[entries_before:])

    daemon.close(grace=5.0)
    caller.join(10.0)

    assert not caller.is_alive()
    assert outcome == [0.8]
    assert daemon.connection_count == 0


def test_close_past_grace_gives_defined_error(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()
    uri = daemon.register(Probe(), object_id="slower")
    entries_before = len(journal_entries())
    outcome: list[object] = []

    def call_slowly() -> None:
        with Proxy(uri, call_timeout=10.0) as proxy:
            try:
                outcome.append(proxy.sleep(2.0))
            except EmberError as error:
                outcome.append(error)

    caller = threading.Thread(target=call_slowly)
    caller.start()
    assert wait_until(lambda: "sleep" in journal_entries()[entries_before:])

    daemon.close(grace=0.2)
    caller.join(10.0)

    assert not caller.is_alive()
    assert len(outcome) == 1
    assert outcome[0] == 2.0 or isinstance(outcome[0], EmberError), outcome


def test_stop_process_during_call(spawn_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = spawn_daemon()
    outcome: list[object] = []
    proxy = Proxy(daemon.uri, call_timeout=10.0)
    proxy.ping()

    def call_slowly() -> None:
        try:
            outcome.append(proxy.sleep(0.5))
        except EmberError as error:
            outcome.append(error)

    caller = threading.Thread(target=call_slowly)
    caller.start()
    time.sleep(0.1)

    assert daemon.stop() == 0
    caller.join(10.0)
    proxy._ember_close()

    assert outcome == [0.5]


def test_close_is_idempotent(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon()

    daemon.close(grace=1.0)
    daemon.close(grace=1.0)

    assert daemon.connection_count == 0


@expose
class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


def test_daemon_keyword_settings(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(max_connections=3, idle_timeout=2.5)

    assert daemon.config.max_connections == 3
    assert daemon.config.idle_timeout == 2.5
    uri = daemon.register(Greeter, instance_mode="single")
    with Proxy(uri, call_timeout=5.0) as proxy:
        assert proxy.greet("ember") == "hello ember"


def test_oneway_flood_leaves_calls_served(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(max_workers=1)
    uri = daemon.register(Probe(), object_id="probe")

    with Proxy(uri, config=Config.defaults()) as flooder, \
            Proxy(uri, config=Config.defaults(), call_timeout=3.0) as caller:
        for _ in range(4):
            flooder.sleep_oneway(1.0)

        # One-way calls have their own pool, so the single call worker stays free.
        started = time.monotonic()
        assert caller.echo("served") == "served"
        assert time.monotonic() - started < 0.9


def test_refusals_logged_once_per_interval(make_daemon: Callable[..., Daemon],
                                           caplog: pytest.LogCaptureFixture) -> None:
    daemon = make_daemon(max_connections=1)
    uri = daemon.register(Probe(), object_id="probe")

    with Proxy(uri, config=Config.defaults()) as holder:
        holder.ping()
        with caplog.at_level("WARNING", logger="ember.daemon"):
            for _ in range(5):
                with Proxy(uri, config=Config.defaults()) as refused, \
                        pytest.raises(TransportError, match="limit of 1 connections"):
                    refused.ping()

    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "refused 1 connection(s)" in refusals[0].getMessage()
