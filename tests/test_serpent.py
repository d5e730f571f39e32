"""The serpent serializer: exact round trips, rejected values and bounded decoding."""

from __future__ import annotations

import collections
import decimal
import enum
import math
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.serializer import DecodeLimits
from ember.plugins.serializers.serpent import MARKER, MAX_INT_DIGITS, SerpentSerializer

SERIALIZER = SerpentSerializer()
LIMITS = DecodeLimits()


def round_trip(value: object) -> object:
    return SERIALIZER.loads(SERIALIZER.dumps(value), LIMITS)


EXACT_VALUES = [
    None, True, False, 0, -7, 2**64, -(2**64), 2**20_000, -(2**20_000),
    1.5, -0.0, math.inf, -math.inf, 1e-300,
    "", "text with 'quotes' \"both\" and ((( brackets", "\u00e9\u4e2d\U0001f600",
    b"", b"\x00\xff'\"(\n", bytearray(b"mutable"),
    [], [1, [2, [3]]], (), (1,), (1, (2, 3)), {}, {"a": 1, 2: "b", (1, 2): None},
    {1, 2}, set(), frozenset(), frozenset({1, "a"}),
    datetime(2024, 2, 29, 12, 30, 45, 123456),
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5, seconds=7, microseconds=3))),
    date(1, 1, 1), time(23, 59, 59, 999999), time(1, tzinfo=timezone(timedelta(hours=2))),
    decimal.Decimal("3.14159"), decimal.Decimal("-0"), decimal.Decimal("Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {datetime(2024, 1, 1): "datetime key", uuid.UUID(int=1): "uuid key"},
    ("__ember_type__", "not three items"),
]


@pytest.mark.parametrize("value", EXACT_VALUES, ids=lambda value: type(value).__name__)
def test_value_round_trips_exactly(value: object) -> None:
    result = round_trip(value)

    assert result == value
    assert type(result) is type(value)


def test_nan_round_trips() -> None:
    result = round_trip(math.nan)

    assert isinstance(result, float)
    assert math.isnan(result)


def test_nested_types_survive() -> None:
    value = {"when": [datetime(2020, 5, 17, 8, 0)], "ids": (uuid.UUID(int=5), b"x")}

    result = round_trip(value)

    assert type(result["when"][0]) is datetime
    assert type(result["ids"][0]) is uuid.UUID
    assert type(result["ids"][1]) is bytes


def test_subclasses_travel_as_base_type() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    point = collections.namedtuple("point", "x y")(1, 2)

    result = round_trip([Level.HIGH, collections.OrderedDict(a=1), point])

    assert result == [3, {"a": 1}, (1, 2)]
    assert [type(item) for item in result] == [int, dict, tuple]


@pytest.mark.parametrize("value", [object(), timedelta(seconds=1), complex(1, 2), range(3)],
                         ids=lambda value: type(value).__name__)
def test_unsupported_value_is_rejected(value: object) -> None:
    with pytest.raises(SerializationError, match="cannot encode"):
        SERIALIZER.dumps(value)


def test_reserved_tuple_is_rejected() -> None:
    with pytest.raises(SerializationError, match="reserves that form"):
        SERIALIZER.dumps((MARKER, "@date", "2020-01-01"))


def test_object_attributes_are_never_written() -> None:
    class Secretive:
        def __init__(self) -> None:
            self.password = "hunter2"

    with pytest.raises(SerializationError) as caught:
        SERIALIZER.dumps({"x": Secretive()})
    assert "hunter2" not in str(caught.value)


def test_cycle_is_rejected() -> None:
    cycle: list[object] = []
    cycle.append(cycle)

    with pytest.raises(SerializationError):
        SERIALIZER.dumps(cycle)


def test_encoding_too_deep_is_rejected() -> None:
    value: list[object] = []
    for _ in range(500):
        value = [value]

    with pytest.raises(SerializationError, match="nests deeper"):
        SERIALIZER.dumps(value)


@pytest.mark.parametrize("body", [
    b"__import__('os').system('true')",
    b"open('/etc/passwd')",
    b"x",
    b"1 + 2",
    b"[i for i in range(3)]",
    b"lambda: 0",
    b"1j",
    b"...",
    b"{**{}}",
    b"f'{1}'",
    b"-'text'",
], ids=lambda body: body.decode())
def test_non_literal_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        SERIALIZER.loads(body, LIMITS)
    assert caught.value.code == "bad-body"


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[1,\x00 2]", b"[1, 2", b"", b"1 2"],
                         ids=["utf8", "nul", "truncated", "empty", "two-values"])
def test_malformed_body_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        SERIALIZER.loads(body, LIMITS)


def test_duplicate_dict_key_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="same key twice"):
        SERIALIZER.loads(b"{'a': 1, 'a': 2}", LIMITS)


def test_duplicate_set_item_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="same item twice"):
        SERIALIZER.loads(b"{1, 1}", LIMITS)


def test_depth_is_checked_before_parsing() -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    with pytest.raises(ProtocolError, match="nests 100000 brackets deep"):
        SERIALIZER.loads(body, LIMITS)


def test_depth_limit_is_exact() -> None:
    limits = DecodeLimits(max_depth=3)

    assert SERIALIZER.loads(b"[[[1]]]", limits) == [[[1]]]
    with pytest.raises(ProtocolError, match="max_depth=3"):
        SERIALIZER.loads(b"[[[[1]]]]", limits)


def test_brackets_inside_strings_do_not_count() -> None:
    limits = DecodeLimits(max_depth=2)
    body = SERIALIZER.dumps(["(" * 500, b"[" * 500, "'" + "{" * 50])

    assert SERIALIZER.loads(body, limits)[0] == "(" * 500


def test_million_digit_integer_is_rejected() -> None:
    with pytest.raises(ProtocolError):
        SERIALIZER.loads(b"1" * 1_000_000, LIMITS)


def test_long_integer_rejected_with_interpreter_limit_off() -> None:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(ProtocolError, match=f"more than {MAX_INT_DIGITS}"):
            SERIALIZER.loads(b"[" + b"9" * 1_000_000 + b"]", LIMITS)
        # A string of digits is not an integer literal.
        assert SERIALIZER.loads(repr("9" * 10_000).encode(), LIMITS) == "9" * 10_000
    finally:
        sys.set_int_max_str_digits(previous)


def test_large_integer_travels_in_hexadecimal() -> None:
    body = SERIALIZER.dumps(7**10_000)

    assert b"0x" in body
    assert SERIALIZER.loads(body, LIMITS) == 7**10_000


def test_body_over_size_limit_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit of 10 bytes"):
        SERIALIZER.loads(b"'" + b"a" * 20 + b"'", DecodeLimits(max_size=10))


@pytest.mark.parametrize("body", [
    b"('__ember_type__', '@date', 5)",
    b"('__ember_type__', '@datetime', ['2020-01-01T00:00:00+01:00', None])",
    b"('__ember_type__', '@datetime', ['2020-01-01T00:00:00', 86400000000])",
    b"('__ember_type__', '@decimal', '1' * 2)",
    b"('__ember_type__', '@decimal', '" + b"1" * 2000 + b"')",
    b"('__ember_type__', '@uuid', 'zz')",
    b"('__ember_type__', '@frozenset', [[1]])",
    b"('__ember_type__', '@float', 'inf')",
], ids=range(8))
def test_bad_tagged_data_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        SERIALIZER.loads(body, LIMITS)


def test_unknown_tag_name_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="no converter of that name") as caught:
        SERIALIZER.loads(b"('__ember_type__', 'os.system', 'true')", LIMITS)
    assert caught.value.code == "unknown-type"


def test_pyro5_style_class_dict_stays_a_dict() -> None:
    body = b"{'__class__': 'os.system', 'args': ['true']}"

    assert SERIALIZER.loads(body, LIMITS) == {"__class__": "os.system", "args": ["true"]}
