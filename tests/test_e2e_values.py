"""Values keep their type and exact value on a round trip to a daemon in another process.

The probe's ``echo_type`` returns the value together with the name of the type the
server received, so each test checks both directions: what arrived and what came back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from conftest import DaemonProcess

from ember import Proxy


@pytest.fixture(scope="module")
def probe(shared_daemon: DaemonProcess) -> Iterator[Any]:
    with Proxy(shared_daemon.uri, call_timeout=10.0) as proxy:
        yield proxy


def round_trip(probe: Any, value: object) -> tuple[object, str]:
    echoed, server_type = probe.echo_type(value)
    return echoed, server_type


def test_aware_datetime_round_trip(probe: Any) -> None:
    value = datetime(2026, 3, 29, 1, 59, 59, 123456,
                     tzinfo=timezone(timedelta(hours=-3, minutes=-30)))

    echoed, server_type = round_trip(probe, value)

    assert server_type == "datetime"
    assert type(echoed) is datetime
    assert echoed == value
    assert echoed.utcoffset() == timedelta(hours=-3, minutes=-30)
    assert echoed.microsecond == 123456


def test_uuid_round_trip(probe: Any) -> None:
    value = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")

    echoed, server_type = round_trip(probe, value)

    assert server_type == "UUID"
    assert type(echoed) is uuid.UUID
    assert echoed == value


@pytest.mark.parametrize("text", ["19.99", "-0.000000000000000000000001",
                                  "123456789012345678901234567890.5", "0E+3"])
def test_decimal_round_trip(probe: Any, text: str) -> None:
    value = Decimal(text)

    echoed, server_type = round_trip(probe, value)

    assert server_type == "Decimal"
    assert type(echoed) is Decimal
    assert echoed == value
    assert echoed.as_tuple() == value.as_tuple()


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"\x00\xff", "bytes"),
        (bytearray(b"\x00\xff\x10"), "bytearray"),
        (b"", "bytes"),
        (bytearray(), "bytearray"),
        ("ü", "str"),
        ("", "str"),
    ],
    ids=["bytes", "bytearray", "empty-bytes", "empty-bytearray", "umlaut", "empty-str"],
)
def test_binary_and_text_keep_types(probe: Any, value: object, type_name: str) -> None:
    echoed, server_type = round_trip(probe, value)

    assert server_type == type_name
    assert type(echoed) is type(value)
    assert echoed == value


def test_binary_and_text_inside_containers(probe: Any) -> None:
    value = {"b": b"\x00\xff", "a": bytearray(b"\x01"), "e": b"", "s": "ü"}

    echoed, _ = round_trip(probe, value)

    assert isinstance(echoed, dict)
    assert {key: type(item) for key, item in echoed.items()} == {
        "b": bytes, "a": bytearray, "e": bytes, "s": str}
    assert echoed == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 2**200, -(2**200), 2**64 - 1,
                                   -(2**64)],
                         ids=["2**64", "-2**63-1", "2**200", "-2**200", "2**64-1",
                              "-2**64"])
def test_big_integers_exact(probe: Any, value: int) -> None:
    echoed, server_type = round_trip(probe, value)

    assert server_type == "int"
    assert type(echoed) is int
    assert echoed == value
