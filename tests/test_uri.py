"""ember URIs: parsing, formatting, and the TCP address rules behind them."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import pytest
from servers.probe import Probe

from ember import URI, Daemon, Proxy, UsageError


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_parse_direct_uri() -> None:
    uri = URI.parse("ember+tcp://127.0.0.1:5555/kvstore")

    assert uri.scheme == "ember+tcp"
    assert uri.transport == "tcp"
    assert uri.address == "127.0.0.1:5555"
    assert uri.object_id == "kvstore"
    assert uri.params == ()


def test_parse_bracketed_ipv6() -> None:
    uri = URI.parse("ember+tcp://[::1]:5555/kvstore")

    assert uri.address == "[::1]:5555"
    assert uri.object_id == "kvstore"


def test_parse_query_options() -> None:
    uri = URI.parse("ember+tcp://127.0.0.1:5555/kv?serializer=cbor&call_timeout=2")

    assert uri.params == (("serializer", "cbor"), ("call_timeout", "2"))
    assert uri.param("serializer") == "cbor"
    assert uri.param("missing", "default") == "default"


@pytest.mark.parametrize("text", [
    "ember+tcp://127.0.0.1:5555/kvstore",
    "ember+tcp://[::1]:5555/kvstore",
    "ember+tcp://127.0.0.1:5555/kv?serializer=cbor",
])
def test_format_round_trips(text: str) -> None:
    assert str(URI.parse(text)) == text


def test_scheme_is_case_insensitive() -> None:
    assert URI.parse("EMBER+TCP://127.0.0.1:1/x").scheme == "ember+tcp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:5555/kvstore", r"expected ember\+TRANSPORT://ADDRESS/OBJECT_ID"),
        ("http://127.0.0.1:5555/kvstore", r"invalid URI scheme 'http'"),
        ("ember+tcp://127.0.0.1:5555", "missing object id"),
        ("ember+tcp://127.0.0.1:5555/", "missing object id"),
        ("ember+tcp:///kvstore", "missing address"),
        ("ember+tcp://127.0.0.1:5555/bad id", "invalid object id 'bad id'"),
        ("ember+tcp://127.0.0.1:5555/" + "x" * 129, "invalid object id"),
        ("ember+tcp://127.0.0.1:5555/kv?a=1&a=2", "URI option 'a' appears more than once"),
    ],
)
def test_parse_rejects_with_part_named(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        URI.parse(text)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(UsageError, match="a URI must be a string, got bytes"):
        URI.parse(b"ember+tcp://127.0.0.1:1/x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "named_part"),
    [
        ("127.0.0.1:0", "0"),
        ("127.0.0.1:-1", "-1"),
        ("127.0.0.1:65536", "65536"),
        ("127.0.0.1:99999999", "99999999"),
        ("127.0.0.1:http", "http"),
        ("127.0.0.1:", "(''|empty)"),
        ("[::1]:0", "0"),
        ("[::1]:abc", "abc"),
    ],
)
def test_tcp_address_rejects_bad_port(address: str, named_part: str) -> None:
    # A Proxy parses its address when it is built, before any connection.
    with pytest.raises(UsageError, match=r"port") as raised:
        Proxy(f"ember+tcp://{address}/kvstore")

    assert re.search(named_part, str(raised.value)), str(raised.value)


@pytest.mark.parametrize("address", ["127.0.0.1", ":5555", "[::1]5555", "[::1", "::1:5555"])
def test_tcp_address_rejects_bad_host(address: str) -> None:
    with pytest.raises(UsageError) as raised:
        Proxy(f"ember+tcp://{address}/kvstore")

    assert address in str(raised.value) or "host" in str(raised.value)


def test_unknown_uri_option_rejected() -> None:
    with pytest.raises(UsageError, match="unknown URI option 'colour'"):
        Proxy("ember+tcp://127.0.0.1:5555/kvstore?colour=red")


def test_daemon_uri_for_ipv4(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(start=False)

    uri = daemon.register(Probe(), object_id="kv")

    assert uri == f"ember+tcp://127.0.0.1:{daemon.address.port}/kv"
    assert URI.parse(uri).object_id == "kv"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
def test_daemon_uri_for_ipv6(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(host="::1")

    uri = daemon.register(Probe(), object_id="kv")

    assert uri == f"ember+tcp://[::1]:{daemon.address.port}/kv"
    with Proxy(uri, call_timeout=5.0) as proxy:
        assert proxy.echo("over IPv6") == "over IPv6"
