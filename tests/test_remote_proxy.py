"""The Proxy: lazy connection, closing, timeouts, dead servers and reconnection."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Iterator, Mapping

import pytest
from conftest import DaemonProcess
from servers.probe import Probe

from ember import Config, Daemon, EmberTimeout, PluginError, Proxy, TransportError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.registry import Registry
from ember.kernel.resolver import Resolver


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback listener that completes TCP connections but never reads or replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def served(make_daemon: Callable[..., Daemon]) -> tuple[Daemon, str]:
    daemon = make_daemon()
    return daemon, daemon.register(Probe(), object_id="probe")


def test_construction_does_not_connect(closed_port: int) -> None:
    proxy = Proxy(f"ember+tcp://127.0.0.1:{closed_port}/nothing", connect_timeout=2.0)

    assert "nothing" in repr(proxy)
    with pytest.raises(TransportError, match=f"127.0.0.1:{closed_port}"):
        proxy.ping()


def test_context_manager_closes_connection(served: tuple[Daemon, str]) -> None:
    daemon, uri = served

    with Proxy(uri, call_timeout=5.0) as proxy:
        assert proxy.ping() == "pong"
        assert daemon.connection_count == 1

    assert wait_until(lambda: daemon.connection_count == 0)


def test_explicit_close_then_reconnect(served: tuple[Daemon, str]) -> None:
    daemon, uri = served
    proxy = Proxy(uri, call_timeout=5.0)
    assert proxy.count() == 1

    proxy._ember_close()
    assert wait_until(lambda: daemon.connection_count == 0)
    proxy._ember_close()  # closing twice is harmless

    # The next call opens a new connection, and a Probe instance registered as an
    # instance keeps its state across connections.
    assert proxy.count() == 2
    assert daemon.connection_count == 1
    proxy._ember_close()


def test_default_timeouts_are_finite() -> None:
    proxy = Proxy("ember+tcp://127.0.0.1:9/never-called", config=Config.defaults())
    config = proxy._ember_config

    for name in ("connect_timeout", "handshake_timeout", "call_timeout"):
        value = getattr(config, name)
        assert 0 < value < math.inf, name


def test_per_proxy_call_timeout(served: tuple[Daemon, str]) -> None:
    _, uri = served
    proxy = Proxy(uri, call_timeout=0.3)

    with pytest.raises(EmberTimeout, match="call") as raised:
        proxy.sleep(1.0)

    assert raised.value.operation == "call"
    assert raised.value.timeout == 0.3
    # The timed-out connection was dropped; the next call reconnects and works.
    assert proxy.ping() == "pong"
    proxy._ember_close()


def test_call_timeout_from_uri_option(served: tuple[Daemon, str]) -> None:
    _, uri = served

    with Proxy(uri + "?call_timeout=0.3") as proxy, pytest.raises(EmberTimeout):
        proxy.sleep(1.0)


def test_silent_server_times_out_in_handshake(silent_server: int) -> None:
    proxy = Proxy(f"ember+tcp://127.0.0.1:{silent_server}/x", handshake_timeout=0.3,
                  call_timeout=0.3)
    started = time.monotonic()

    with pytest.raises(EmberTimeout) as raised:
        proxy.ping()

    assert raised.value.operation == "handshake"
    assert time.monotonic() - started < 3.0


def test_dead_server_clear_error(spawn_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = spawn_daemon()
    proxy = Proxy(daemon.uri, call_timeout=3.0, connect_timeout=2.0)
    assert proxy.ping() == "pong"
    assert daemon.stop() == 0

    started = time.monotonic()
    with pytest.raises(TransportError):
        proxy.ping()
    assert time.monotonic() - started < 3.0

    # Nothing listens any more: the next attempt fails to connect, naming the address.
    with pytest.raises(TransportError, match=f"127.0.0.1:{daemon.port}"):
        proxy.ping()


def test_reconnects_after_server_returns(spawn_daemon: Callable[..., DaemonProcess]) -> None:
    first = spawn_daemon()
    proxy = Proxy(first.uri, call_timeout=3.0, connect_timeout=2.0)
    assert proxy.echo("before") == "before"
    assert first.stop() == 0
    with pytest.raises(TransportError):
        proxy.echo("while down")

    second = spawn_daemon(port=first.port)
    assert second.port == first.port

    assert proxy.echo("after") == "after"
    proxy._ember_close()


def test_unknown_member_lists_exposed(served: tuple[Daemon, str]) -> None:
    _, uri = served

    with Proxy(uri, call_timeout=5.0) as proxy:
        with pytest.raises(AttributeError, match=r"no exposed member 'nope'; exposed: .*echo"):
            proxy.nope  # noqa: B018 - the attribute access is the test
        assert {"echo", "ping", "label"} <= set(dir(proxy))


def test_setting_private_attribute_rejected(served: tuple[Daemon, str]) -> None:
    _, uri = served
    proxy = Proxy(uri, call_timeout=5.0)

    with pytest.raises(AttributeError, match="cannot set '_secret'"):
        proxy._secret = 1


def test_idle_connection_replaced_before_use(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(idle_timeout=0.4)
    uri = daemon.register(Probe(), object_id="probe")

    with Proxy(uri, config=Config.defaults()) as proxy:
        assert proxy.echo(1) == 1
        first = proxy._ember_connection
        time.sleep(0.6)

        assert proxy.echo(2) == 2
        assert proxy._ember_connection is not first


def test_idle_close_retried_once(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(idle_timeout=0.3)
    uri = daemon.register(Probe(), object_id="probe")

    with Proxy(uri, config=Config.defaults()) as proxy:
        assert proxy.echo(1) == 1
        # Without the daemon's idle timeout the proxy keeps the connection, so it only
        # learns of the close from the daemon's idle-timeout error, after sending.
        object.__setattr__(proxy, "_ember_peer_idle_timeout", None)
        first = proxy._ember_connection
        assert wait_until(lambda: daemon.connection_count == 0)

        assert proxy.echo(2) == 2
        assert proxy._ember_connection is not first


def test_name_uri_goes_to_resolver(served: tuple[Daemon, str]) -> None:
    _, direct_uri = served

    class NameResolver(Resolver):
        name = "names"
        schemes = ("ember+name",)

        def resolve(self, uri: str, options: Mapping[str, object]) -> str:
            assert uri == "ember+name://probe"
            return direct_uri

    class Plugin:
        @hookimpl
        def ember_resolvers(self) -> list[Resolver]:
            return [NameResolver()]

    registry = Registry.load(Config.defaults())
    registry.register(Plugin(), name="names")

    # The short form has no address part, so it is only valid for the resolver.
    with Proxy("ember+name://probe", config=Config.defaults(), registry=registry) as proxy:
        assert proxy.echo("resolved") == "resolved"


def test_unknown_scheme_lists_known_schemes() -> None:
    with pytest.raises(PluginError, match="ember\\+nowhere"):
        Proxy("ember+nowhere://x/y", config=Config.defaults())
