"""Tests for the cbor serializer: the type table, rejected values and hostile input."""

from __future__ import annotations

import collections
import concurrent.futures
import decimal
import enum
import fractions
import importlib.metadata
import ipaddress
import math
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, NamedTuple, NoReturn

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember.kernel.converters import converters, register_type
from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.serializer import DecodeLimits
from ember.plugins.serializers import cbor as cbor_module
from ember.plugins.serializers.cbor import (
    ACCEPTED_TAGS,
    MAX_DECIMAL_DIGITS,
    TAG_BYTEARRAY,
    TAG_CONVERTED,
    TAG_DATETIME,
    TAG_DECIMAL_TEXT,
    TAG_FROZENSET,
    TAG_TIME,
    TAG_TUPLE,
    CborSerializer,
)

# The composed Hypothesis strategies below have a long repr, and Hypothesis warns the
# first time it builds one.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SERIALIZER = CborSerializer()
LIMITS = DecodeLimits()

# Bodies above this size take the streaming decoder instead of the single-call one.
STREAMED_SIZE = 64 * 1024 + 1


def round_trip(value: object, limits: DecodeLimits = LIMITS) -> object:
    return SERIALIZER.loads(SERIALIZER.dumps(value), limits)


def encode_raw(value: object) -> bytes:
    """Encode with bare cbor2, to build bodies that ember's encoder never produces."""
    return cbor2.dumps(value)


def assert_same(actual: object, expected: object) -> None:
    """Assert equal values of the exact same types, all the way down."""
    assert type(actual) is type(expected), f"{type(actual)} is not {type(expected)}"

    if isinstance(expected, float):
        assert isinstance(actual, float)
        if math.isnan(expected):
            assert math.isnan(actual)
        else:
            assert actual == expected
            assert math.copysign(1, actual) == math.copysign(1, expected)
    elif isinstance(expected, Decimal):
        # str() shows sign, exponent, NaN kind and payload, which == ignores.
        assert str(actual) == str(expected)
    elif isinstance(expected, (datetime, time)):
        assert isinstance(actual, (datetime, time))
        assert actual.isoformat() == expected.isoformat()
        assert actual.utcoffset() == expected.utcoffset()
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple))
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_same(actual_item, expected_item)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        assert len(actual) == len(expected)
        for (actual_key, actual_value), (expected_key, expected_value) in zip(
            actual.items(), expected.items(), strict=True
        ):
            assert_same(actual_key, expected_key)
            assert_same(actual_value, expected_value)
    elif isinstance(expected, (set, frozenset)):
        assert isinstance(actual, (set, frozenset))
        assert len(actual) == len(expected)
        by_value = {item: item for item in actual}
        for expected_item in expected:
            assert_same(by_value[expected_item], expected_item)
    else:
        assert actual == expected


def top_tag(data: bytes) -> int | None:
    """Return the tag number of the first item of ``data``, or None if it has no tag."""
    initial = data[0]
    if initial >> 5 != 6:
        return None
    argument = initial & 0x1F
    if argument < 24:
        return argument
    width = {24: 1, 25: 2, 26: 4, 27: 8}[argument]
    return int.from_bytes(data[1 : 1 + width], "big")


def offset(**kwargs: float) -> timezone:
    return timezone(timedelta(**kwargs))


# --- The type table ---------------------------------------------------------------------

ROUND_TRIP_CASES: list[tuple[str, object]] = [
    ("none", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("negative int", -1),
    ("int64 max", 2**63 - 1),
    ("uint64 max", 2**64 - 1),
    ("bignum", 2**64),
    ("negative bignum", -(2**64) - 1),
    ("huge bignum", 3**500),
    ("float", 1.5),
    ("negative zero float", -0.0),
    ("float inf", math.inf),
    ("float negative inf", -math.inf),
    ("float nan", math.nan),
    ("empty str", ""),
    ("unicode str", "grüße, 世界 🚀"),
    ("empty bytes", b""),
    ("bytes", bytes(range(256))),
    ("bytearray", bytearray(b"\x00\xff")),
    ("empty bytearray", bytearray()),
    ("empty list", []),
    ("nested list", [1, [2, [3]]]),
    ("empty tuple", ()),
    ("tuple", (1, "a", None)),
    ("tuple of one", (1,)),
    ("nested tuple", ((1, 2), (3, (4,)))),
    ("empty dict", {}),
    ("dict", {"a": 1, "b": [2]}),
    ("int keys", {1: "a", -5: "b"}),
    ("empty set", set()),
    ("set", {1, "a", b"b"}),
    ("empty frozenset", frozenset()),
    ("frozenset", frozenset({1, 2})),
    ("utc datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (
        "kathmandu datetime",
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=offset(hours=5, minutes=45)),
    ),
    ("negative offset datetime", datetime(2024, 6, 1, 12, tzinfo=offset(hours=-3, minutes=-30))),
    ("naive datetime", datetime(2024, 1, 2, 3, 4, 5)),
    ("naive datetime microseconds", datetime(2024, 1, 2, 3, 4, 5, 7)),
    ("seconds offset datetime", datetime(1850, 7, 1, 12, tzinfo=offset(minutes=19, seconds=32))),
    ("microseconds offset datetime", datetime(2024, 1, 1, tzinfo=offset(microseconds=-5))),
    ("earliest datetime", datetime.min),
    ("latest datetime", datetime.max),
    ("date", date(2024, 2, 29)),
    ("earliest date", date.min),
    ("latest date", date.max),
    ("naive time", time(1, 2, 3)),
    ("time microseconds", time(23, 59, 59, 999999)),
    ("aware time", time(1, 2, 3, tzinfo=offset(hours=5, minutes=45))),
    ("utc time", time(0, 0, tzinfo=UTC)),
    ("seconds offset time", time(1, 2, 3, 4, tzinfo=offset(seconds=-7, microseconds=3))),
    ("decimal", Decimal("1.50")),
    ("negative decimal", Decimal("-123.456")),
    ("decimal zero exponent", Decimal("0E-5")),
    ("decimal negative zero", Decimal("-0")),
    ("decimal negative zero exponent", Decimal("-0.00")),
    ("decimal nan", Decimal("NaN")),
    ("decimal negative nan", Decimal("-NaN")),
    ("decimal nan payload", Decimal("NaN123")),
    ("decimal snan", Decimal("sNaN")),
    ("decimal snan payload", Decimal("-sNaN45")),
    ("decimal infinity", Decimal("Infinity")),
    ("decimal negative infinity", Decimal("-Infinity")),
    ("decimal largest exponent", Decimal("1E+999999999999999999")),
    ("decimal smallest exponent", Decimal("-1E-1000000000000000006")),
    ("decimal 40 digits", Decimal("1." + "3" * 39)),
    ("decimal max digits", Decimal("9" * MAX_DECIMAL_DIGITS)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
]


@pytest.mark.parametrize(
    "value", [case[1] for case in ROUND_TRIP_CASES], ids=[case[0] for case in ROUND_TRIP_CASES]
)
def test_round_trip_keeps_type_and_value(value: object) -> None:
    assert_same(round_trip(value), value)


@pytest.mark.parametrize(
    "value", [case[1] for case in ROUND_TRIP_CASES], ids=[case[0] for case in ROUND_TRIP_CASES]
)
def test_round_trip_through_streaming_decoder(value: object) -> None:
    # A large neighbour pushes the body past the single-call size.
    padded = [value, b"\x00" * STREAMED_SIZE]
    assert_same(round_trip(padded), padded)


def test_zoneinfo_datetime_keeps_exact_offset() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("this machine has no time zone database")
    value = datetime(2024, 7, 1, 12, 30, tzinfo=paris)

    decoded = round_trip(value)

    assert isinstance(decoded, datetime)
    assert decoded == value
    assert decoded.utcoffset() == timedelta(hours=2)


STANDARD_TAG_CASES: list[tuple[str, object, int | None]] = [
    ("aware datetime uses tag 0", datetime(2024, 1, 1, tzinfo=offset(hours=5, minutes=45)), 0),
    ("bignum uses tag 2", 2**64, 2),
    ("negative bignum uses tag 3", -(2**64) - 1, 3),
    ("decimal uses tag 4", Decimal("1.50"), 4),
    ("uuid uses tag 37", uuid.uuid4(), 37),
    ("set uses tag 258", {1}, 258),
    ("date uses tag 1004", date(2024, 1, 1), 1004),
    ("tuple uses private tag", (1,), TAG_TUPLE),
    ("frozenset uses private tag", frozenset({1}), TAG_FROZENSET),
    ("bytearray uses private tag", bytearray(b"x"), TAG_BYTEARRAY),
    ("naive datetime uses private tag", datetime(2024, 1, 1), TAG_DATETIME),
    (
        "seconds offset uses private tag",
        datetime(2024, 1, 1, tzinfo=offset(seconds=1)),
        TAG_DATETIME,
    ),
    ("time uses private tag", time(1), TAG_TIME),
    ("decimal nan uses private tag", Decimal("NaN"), TAG_DECIMAL_TEXT),
    ("list has no tag", [1], None),
    ("int has no tag", 2**63, None),
]


@pytest.mark.parametrize(
    ("value", "tag"),
    [case[1:] for case in STANDARD_TAG_CASES],
    ids=[case[0] for case in STANDARD_TAG_CASES],
)
def test_wire_form_uses_expected_tag(value: object, tag: int | None) -> None:
    assert top_tag(SERIALIZER.dumps(value)) == tag


def test_aware_datetime_text_is_rfc3339() -> None:
    value = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=offset(hours=5, minutes=45))

    assert cbor2.loads(SERIALIZER.dumps(value)) == value
    assert b"2024-01-02T03:04:05.123456+05:45" in SERIALIZER.dumps(value)


def test_private_tags_are_unregistered_range() -> None:
    private = [
        TAG_TUPLE, TAG_FROZENSET, TAG_BYTEARRAY, TAG_DATETIME, TAG_TIME, TAG_DECIMAL_TEXT,
        TAG_CONVERTED,
    ]

    assert all(tag >= 32768 for tag in private)
    assert len(set(private)) == len(private)
    assert set(private) <= ACCEPTED_TAGS


NESTED_CASES: list[tuple[str, object]] = [
    ("tuple keys", {(1, 2): "a", ("x", (3,)): "b"}),
    ("frozenset keys", {frozenset({1, 2}): 1, frozenset(): 2}),
    ("tagged scalar keys", {
        datetime(2024, 1, 1): 1,
        datetime(2024, 1, 1, tzinfo=UTC): 2,
        date(2024, 1, 1): 3,
        time(1): 4,
        Decimal("1.5"): 5,
        uuid.UUID(int=7): 6,
        2**70: 7,
    }),
    ("tuple key holding frozenset", {(1, frozenset({(2, 3)})): None}),
    ("tuple holding mutable containers", ([1, [2]], {"a": {"b": [3]}}, {4})),
    ("list of tuples of dicts", [({"a": (1,)},), ({},)]),
    ("set of tuples", {(1, 2), (3,), ()}),
    ("frozenset of frozensets", frozenset({frozenset({1}), frozenset()})),
    ("set of tagged scalars", {Decimal("2.50"), datetime(2024, 1, 1), uuid.UUID(int=1), 2**80}),
    ("dict of everything", {
        "none": None,
        "bytes": bytearray(b"x"),
        "tuple": (1, (2, bytearray(b"y"))),
        "nan": Decimal("NaN"),
        "when": [datetime(2024, 1, 1, tzinfo=offset(minutes=-90)), time(2, tzinfo=UTC)],
    }),
    ("call shape", ["kvstore", "put", ["key", (1, 2)], {"ttl": Decimal("1.5")}]),
]


@pytest.mark.parametrize(
    "value", [case[1] for case in NESTED_CASES], ids=[case[0] for case in NESTED_CASES]
)
def test_nested_combination_round_trips(value: object) -> None:
    assert_same(round_trip(value), value)


# --- Subclasses -------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Mode(enum.Enum):
    FAST = "fast"


class Name(str):
    pass


class Point(NamedTuple):
    x: int
    y: int


class Moment(datetime):
    pass


class Money(Decimal):
    pass


def test_bool_stays_bool_and_int_stays_int() -> None:
    decoded = round_trip([True, 1, False, 0])

    assert_same(decoded, [True, 1, False, 0])


SUBCLASS_MAPPINGS: list[tuple[str, object, object]] = [
    ("intenum becomes int", Color.RED, 1),
    ("str subclass becomes str", Name("bob"), "bob"),
    ("ordereddict becomes dict", collections.OrderedDict(a=1), {"a": 1}),
    ("defaultdict becomes dict", collections.defaultdict(int, a=1), {"a": 1}),
    ("namedtuple becomes list", Point(1, 2), [1, 2]),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [case[1:] for case in SUBCLASS_MAPPINGS],
    ids=[case[0] for case in SUBCLASS_MAPPINGS],
)
def test_builtin_subclass_maps_to_base_type(value: object, expected: object) -> None:
    assert_same(round_trip(value), expected)


@pytest.mark.parametrize(
    "value",
    [Mode.FAST, Moment(2024, 1, 1), Money("1.5")],
    ids=["plain enum", "datetime subclass", "decimal subclass"],
)
def test_other_subclasses_are_rejected(value: object) -> None:
    with pytest.raises(SerializationError, match=type(value).__qualname__):
        SERIALIZER.dumps(value)


# --- Rejected values --------------------------------------------------------------------

REJECTED_CASES: list[tuple[str, object, str]] = [
    ("object", object(), "object"),
    ("fraction", fractions.Fraction(1, 3), "fractions.Fraction"),
    ("complex", 1j, "complex"),
    ("ip address", ipaddress.ip_address("127.0.0.1"), "ipaddress.IPv4Address"),
    ("ip network", ipaddress.ip_network("::/64"), "ipaddress.IPv6Network"),
    ("regex", re.compile("x"), "re.Pattern"),
    ("timedelta", timedelta(1), "datetime.timedelta"),
    ("function", len, "builtin_function_or_method"),
    ("class", int, "type"),
    ("cbor2 tag", cbor2.CBORTag(99, 1), "cbor2.CBORTag"),
    ("cbor2 simple value", cbor2.CBORSimpleValue(99), "cbor2.CBORSimpleValue"),
    ("cbor2 undefined", cbor2.undefined, "cbor2.UndefinedType"),
    ("range", range(3), "range"),
    ("memoryview", memoryview(b"x"), "memoryview"),
    ("deque", collections.deque([1]), "collections.deque"),
    ("userlist", collections.UserList([1]), "collections.UserList"),
    ("dict keys view", {1: 2}.keys(), "dict_keys"),
    ("generator", (n for n in range(2)), "generator"),
    ("exception", ValueError("x"), "ValueError"),
]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [case[1:] for case in REJECTED_CASES],
    ids=[case[0] for case in REJECTED_CASES],
)
def test_unsupported_type_is_rejected_by_name(value: object, type_name: str) -> None:
    with pytest.raises(SerializationError, match=f"cannot encode {re.escape(type_name)}"):
        SERIALIZER.dumps(value)


def test_rejection_names_path_of_nested_value() -> None:
    value = [1, {"k": [2, object()]}]

    with pytest.raises(SerializationError, match=re.escape("at value[1]['k'][1]")):
        SERIALIZER.dumps(value)


def test_rejection_names_dict_key_and_set_item() -> None:
    with pytest.raises(SerializationError, match=re.escape("at key 1j of value")):
        SERIALIZER.dumps({1j: 1})
    with pytest.raises(SerializationError, match=re.escape("at an item of value[0]")):
        SERIALIZER.dumps([{ipaddress.ip_address("::1")}])


def test_serialization_error_is_type_error() -> None:
    # Callers that catch TypeError for unencodable values keep working.
    with pytest.raises(TypeError):
        SERIALIZER.dumps(object())


def test_cycle_is_rejected() -> None:
    value: list[object] = []
    value.append(value)

    with pytest.raises(SerializationError, match="contains itself"):
        SERIALIZER.dumps(value)


@pytest.mark.parametrize(
    "build",
    [lambda inner: [inner], lambda inner: {"k": inner}, lambda inner: (inner,)],
    ids=["lists", "dicts", "tuples"],
)
def test_deep_nesting_is_rejected_without_crash(build: Callable[[object], object]) -> None:
    # cbor2 6.3 without ember's encoder table overflows the C stack near 7000 lists.
    value: object = 0
    for _ in range(20_000):
        value = build(value)

    with pytest.raises(SerializationError, match="nests too deeply"):
        SERIALIZER.dumps(value)


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(SerializationError, match="lone surrogate"):
        SERIALIZER.dumps("\ud800")


def test_decimal_over_digit_limit_is_rejected() -> None:
    with pytest.raises(SerializationError, match=f"at most {MAX_DECIMAL_DIGITS}"):
        SERIALIZER.dumps(Decimal("9" * (MAX_DECIMAL_DIGITS + 1)))


# --- Decoding hostile input -------------------------------------------------------------


def assert_rejected(data: bytes, match: str, limits: DecodeLimits = LIMITS) -> None:
    with pytest.raises(ProtocolError, match=match) as caught:
        SERIALIZER.loads(data, limits)
    assert caught.value.code == "bad-body"


def nested_arrays(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


@pytest.mark.parametrize("padding", [0, STREAMED_SIZE], ids=["single call", "streamed"])
def test_max_depth_is_enforced_at_the_boundary(padding: int) -> None:
    limits = DecodeLimits(max_depth=10)
    # A two-item array around the nested arrays adds one level.
    at_limit = b"\x82" + nested_arrays(9) + encode_raw(b"\x00" * padding)
    over_limit = b"\x82" + nested_arrays(10) + encode_raw(b"\x00" * padding)

    assert SERIALIZER.loads(at_limit, limits)
    assert_rejected(over_limit, "max_depth=10", limits)


def test_tags_count_as_nesting_levels() -> None:
    limits = DecodeLimits(max_depth=2)

    assert SERIALIZER.loads(SERIALIZER.dumps((1,)), limits) == (1,)
    assert_rejected(SERIALIZER.dumps(((1,),)), "max_depth=2", limits)


def test_very_deep_input_is_rejected() -> None:
    # max_items is raised so that the depth check, not the item count, rejects it.
    limits = DecodeLimits(max_items=2_000_000)
    assert_rejected(nested_arrays(1_000_000), "max_depth=64", limits)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("a2 01 01 01 02"),  # {1: 1, 1: 2}
        bytes.fromhex("a2 01 01 f9 3c00 02"),  # {1: 1, 1.0: 2}
        bytes.fromhex("a2 6161 01 6161 02"),  # {"a": 1, "a": 2}
        bytes.fromhex("81 a2 01 01 01 02"),  # nested
    ],
    ids=["int", "int and float", "str", "nested"],
)
def test_duplicate_map_keys_are_rejected(data: bytes) -> None:
    assert_rejected(data, "same key twice")


def test_duplicate_key_is_not_quoted_in_message() -> None:
    key = encode_raw("secret-key-value")
    data = b"\xa2" + key + b"\x01" + key + b"\x02"

    with pytest.raises(ProtocolError) as caught:
        SERIALIZER.loads(data, LIMITS)
    assert "secret-key-value" not in str(caught.value)


REJECTED_BUILTIN_TAGS = [5, 25, 28, 29, 30, 35, 36, 52, 54, 256, 260, 261, 43000, 55799]
REJECTED_OTHER_TAGS = [6, 24, 32, 99, 32768, 47700, 47707, 65535, 2**32, 2**64 - 1]


@pytest.mark.parametrize("tag", REJECTED_BUILTIN_TAGS + REJECTED_OTHER_TAGS)
def test_unaccepted_tag_is_rejected_by_number(tag: int) -> None:
    assert_rejected(encode_raw(cbor2.CBORTag(tag, [1, 2])), f"CBOR tag {tag} is not accepted")


def test_only_accepted_tags_decode_across_range() -> None:
    # Fails if a later cbor2 release decodes a tag that ember's table does not list.
    accepted_seen = set()
    for tag in range(65536):
        data = encode_raw(cbor2.CBORTag(tag, 0))
        try:
            SERIALIZER.loads(data, LIMITS)
        except ProtocolError as error:
            if "is not accepted" not in str(error):
                accepted_seen.add(tag)
        else:
            accepted_seen.add(tag)

    assert accepted_seen == {tag for tag in ACCEPTED_TAGS if tag < 65536}


def test_unaccepted_tag_fails_before_its_content() -> None:
    # The content is a byte string claiming 4 GiB, which a decoder would read first.
    assert_rejected(bytes.fromhex("d8 1e 5a ffffffff"), "CBOR tag 30 is not accepted")


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("9f 01 ff"),
        bytes.fromhex("bf 01 01 ff"),
        bytes.fromhex("5f 41 00 ff"),
        bytes.fromhex("7f 61 61 ff"),
        bytes.fromhex("81 9f ff"),
    ],
    ids=["array", "map", "bytes", "text", "nested"],
)
def test_indefinite_length_items_are_rejected(data: bytes) -> None:
    assert_rejected(data, "indefinite-length")


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00",
        encode_raw([1, 2]) + b"\xff",
        encode_raw("x") + b"\x50" + bytes(16),
        encode_raw(b"\x00" * STREAMED_SIZE) + b"\x00",
        encode_raw(1) + b"\x5a\xff\xff\xff\xff",
        encode_raw(1) + encode_raw(cbor2.CBORTag(30, 1)),
    ],
    ids=["small", "after array", "fake trailer", "streamed", "huge length", "unaccepted tag"],
)
def test_trailing_bytes_are_rejected(data: bytes) -> None:
    assert_rejected(data, "extra bytes follow the value")


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("62 ff fe"),  # invalid start byte
        bytes.fromhex("62 c0 80"),  # overlong NUL
        bytes.fromhex("63 ed a0 80"),  # UTF-8 encoded surrogate
        bytes.fromhex("a1 62 ff fe 01"),  # as a map key
    ],
    ids=["invalid byte", "overlong", "surrogate", "map key"],
)
def test_invalid_utf8_is_rejected(data: bytes) -> None:
    assert_rejected(data, "not valid UTF-8")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x82\x01", b"\x45abc", b"\x9a\x00\x01\x00\x00", b"\xd9\xba"],
    ids=["empty", "short array", "short bytes", "long array", "tag header"],
)
def test_truncated_body_is_rejected(data: bytes) -> None:
    assert_rejected(data, "ends inside a value")


def test_body_over_max_size_is_rejected() -> None:
    limits = DecodeLimits(max_size=100)

    assert_rejected(encode_raw(b"x" * 200), "exceeds the limit of 100 bytes", limits)


MALFORMED_CASES: list[tuple[str, bytes, str]] = [
    ("reserved additional info", b"\x1c", "invalid CBOR body"),
    ("lone break", b"\xff", "invalid CBOR body"),
    ("tuple of int", encode_raw(cbor2.CBORTag(TAG_TUPLE, 1)), "must contain an array"),
    ("frozenset unhashable", encode_raw(cbor2.CBORTag(TAG_FROZENSET, [[1]])), "unhashable"),
    ("bytearray of str", encode_raw(cbor2.CBORTag(TAG_BYTEARRAY, "x")), "byte string"),
    ("datetime bad text", encode_raw(cbor2.CBORTag(TAG_DATETIME, ["x", None])), "ISO 8601"),
    (
        "datetime text with offset",
        encode_raw(cbor2.CBORTag(TAG_DATETIME, ["2024-01-01T00:00:00+01:00", None])),
        "without a UTC offset",
    ),
    (
        "datetime offset of a day",
        encode_raw(cbor2.CBORTag(TAG_DATETIME, ["2024-01-01T00:00:00", 86_400_000_000])),
        "less than one day",
    ),
    (
        "datetime offset as float",
        encode_raw(cbor2.CBORTag(TAG_DATETIME, ["2024-01-01T00:00:00", 1.0])),
        "less than one day",
    ),
    ("datetime one item", encode_raw(cbor2.CBORTag(TAG_DATETIME, ["x"])), "must contain \\[text"),
    ("time bad text", encode_raw(cbor2.CBORTag(TAG_TIME, ["25:00", None])), "ISO 8601"),
    ("decimal text finite", encode_raw(cbor2.CBORTag(TAG_DECIMAL_TEXT, "1.5")), "use tag 4"),
    ("decimal text junk", encode_raw(cbor2.CBORTag(TAG_DECIMAL_TEXT, "junk")), "use tag 4"),
    ("decimal fraction float", encode_raw(cbor2.CBORTag(4, [1.5, 1])), "two integers"),
    ("decimal fraction bool", encode_raw(cbor2.CBORTag(4, [True, 1])), "two integers"),
    ("decimal fraction three", encode_raw(cbor2.CBORTag(4, [1, 2, 3])), "two integers"),
    ("decimal fraction exponent", encode_raw(cbor2.CBORTag(4, [2**70, 1])), "exponent"),
    (
        "decimal fraction long mantissa",
        encode_raw(cbor2.CBORTag(4, [0, 10**MAX_DECIMAL_DIGITS])),
        f"more than {MAX_DECIMAL_DIGITS} digits",
    ),
    ("uuid of 15 bytes", encode_raw(cbor2.CBORTag(37, b"x" * 15)), "invalid CBOR body"),
    ("tag 0 without offset", encode_raw(cbor2.CBORTag(0, "2024-01-01T00:00:00")), "invalid CBOR"),
    ("tag 1 nan", bytes.fromhex("c1 f9 7e00"), "invalid CBOR body"),
    ("tag 1 out of range", encode_raw(cbor2.CBORTag(1, 2**62)), "invalid CBOR body"),
    ("tag 100 out of range", encode_raw(cbor2.CBORTag(100, 2**62)), "invalid CBOR body"),
]


@pytest.mark.parametrize(
    ("data", "match"),
    [case[1:] for case in MALFORMED_CASES],
    ids=[case[0] for case in MALFORMED_CASES],
)
def test_malformed_body_is_rejected(data: bytes, match: str) -> None:
    assert_rejected(data, match)


def test_long_mantissa_is_rejected_without_converting_it() -> None:
    # Converting a 1 MB integer to a Decimal takes minutes in CPython 3.11, because the
    # conversion is quadratic. The bound check rejects it first.
    data = encode_raw(cbor2.CBORTag(4, [0, 1 << 8_000_000]))

    assert_rejected(data, f"more than {MAX_DECIMAL_DIGITS} digits")


SIMPLE_VALUE_CASES: list[tuple[str, bytes, str]] = [
    ("simple 0", bytes.fromhex("e0"), "simple value 0"),
    ("simple 16", bytes.fromhex("f0"), "simple value 16"),
    ("simple 19", bytes.fromhex("f3"), "simple value 19"),
    ("undefined", bytes.fromhex("f7"), "undefined"),
    ("two-byte simple", bytes.fromhex("f8 ff"), "simple value 255"),
    ("in a list", bytes.fromhex("82 01 f7"), "undefined"),
    ("as a map key", bytes.fromhex("a1 f0 01"), "simple value 16"),
    ("as a map value", bytes.fromhex("a1 01 f0"), "simple value 16"),
    ("in a tuple", encode_raw(cbor2.CBORTag(TAG_TUPLE, [1, cbor2.undefined])), "undefined"),
    ("in a set", encode_raw(cbor2.CBORTag(258, [cbor2.CBORSimpleValue(99)])), "simple value 99"),
    ("in a large body", encode_raw([b"\x00" * STREAMED_SIZE, cbor2.undefined]), "undefined"),
]


@pytest.mark.parametrize(
    ("data", "match"),
    [case[1:] for case in SIMPLE_VALUE_CASES],
    ids=[case[0] for case in SIMPLE_VALUE_CASES],
)
def test_simple_values_are_rejected(data: bytes, match: str) -> None:
    assert_rejected(data, match)


@pytest.mark.parametrize(
    ("last", "rejected"), [(b"\xf7", True), (b"\x00", False)], ids=["undefined", "zero"]
)
def test_simple_value_found_beyond_pickle_depth(last: bytes, rejected: bool) -> None:
    # 3000 levels exceed the recursion of the C pickler that looks for foreign values,
    # so the iterative walk decides.
    limits = DecodeLimits(max_depth=3001)
    data = b"\x81" * 3000 + last

    if rejected:
        assert_rejected(data, "undefined", limits)
    else:
        assert SERIALIZER.loads(data, limits)


def test_hostile_and_valid_bodies_in_threads() -> None:
    valid = SERIALIZER.dumps([{"a": (1, Decimal("2.5"))}, "€", -1.5] * 20)
    hostile = encode_raw([{"a": [1, 2]}, cbor2.undefined])

    def work(index: int) -> None:
        for _ in range(300):
            if index % 2:
                assert_rejected(hostile, "undefined")
            else:
                assert SERIALIZER.loads(valid, LIMITS)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(work, index) for index in range(4)]
    for future in futures:
        future.result()  # re-raises a failure from the worker thread


def test_simple_value_bytes_inside_strings_decode() -> None:
    # 0xe2 starts the UTF-8 form of the euro sign and 0xf8 appears in -1.5, so the scan
    # matches, and the walk must find nothing to reject.
    value = ["€", -1.5, b"\xf7\xf8\xe0", {"€": (-1.5,)}]

    assert_same(round_trip(value), value)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("a1 a1 01 01 02"),  # {{1: 1}: 2}
        bytes.fromhex("a1 81 a0 01"),  # {[{}]: 1}, a map inside an array key
        bytes.fromhex("d9 0102 81 a0"),  # set([{}])
    ],
    ids=["map key", "inside array key", "set item"],
)
def test_map_used_as_key_is_rejected(data: bytes) -> None:
    assert_rejected(data, "used as a map key or set item")


class Sealed:
    """A converted type whose pickling would fail, as for an object holding a lock."""

    def __init__(self, data: object) -> None:
        self.data = data

    def __reduce__(self) -> NoReturn:
        raise RuntimeError("Sealed objects cannot be pickled")


@pytest.fixture
def sealed_converter() -> Iterator[list[object]]:
    received: list[object] = []

    def from_data(data: object) -> Sealed:
        received.append(data)
        return Sealed(data)

    name = register_type(Sealed, name="tests.Sealed", to_data=lambda value: value.data,
                         from_data=from_data).name
    yield received
    converters.remove(name)


def test_converted_value_is_not_pickled(sealed_converter: list[object]) -> None:
    decoded = round_trip([Sealed([1, 2]), {"k": Sealed("x")}])

    assert isinstance(decoded, list)
    assert isinstance(decoded[0], Sealed)
    assert decoded[0].data == [1, 2]
    assert decoded[1]["k"].data == "x"


def test_converter_never_sees_simple_values(sealed_converter: list[object]) -> None:
    data = encode_raw(cbor2.CBORTag(TAG_CONVERTED, ["tests.Sealed", [cbor2.undefined]]))

    assert_rejected(data, "undefined")
    assert sealed_converter == []


def test_untagged_array_key_decodes_as_tuple() -> None:
    # A foreign encoder may write a tuple key as a plain array; tuple is an ember type.
    assert SERIALIZER.loads(bytes.fromhex("a1 81 01 02"), LIMITS) == {(1,): 2}


# --- Memory bounds, in a child process --------------------------------------------------

HUGE_LENGTH_HEADERS = [
    "5a ffffffff",  # byte string of 4 GiB
    "5b 7fffffffffffffff",  # byte string of 2**63 - 1 bytes
    "5b ffffffffffffffff",  # byte string of 2**64 - 1 bytes
    "7b 7fffffffffffffff",  # text string
    "9b 7fffffffffffffff",  # array
    "bb 7fffffffffffffff",  # map
    "c2 5b 7fffffffffffffff",  # bignum
    "d9 ba55 9b 7fffffffffffffff",  # tuple
    "82 5a ffffffff",  # inside an array
]

MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from ember.kernel.errors import ProtocolError
    from ember.kernel.serializer import DecodeLimits
    from ember.plugins.serializers.cbor import CborSerializer

    serializer = CborSerializer()
    limits = DecodeLimits()
    serializer.loads(b"\\x01", limits)  # import and warm up before the limit

    # Cap the address space 256 MiB above the current size: allocating memory for any
    # declared length makes the decode fail with MemoryError or abort the process.
    with open("/proc/self/status") as status:
        size_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
    cap = (size_kib + 256 * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    for header in sys.argv[1:]:
        for padding in (b"", b"\\x00" * 70_000):
            try:
                serializer.loads(bytes.fromhex(header) + padding, limits)
            except ProtocolError as error:
                if "memory" in str(error):
                    sys.exit(f"{header}: decoding tried to allocate: {error}")
            else:
                sys.exit(f"{header}: decoded without error")
    print("ok")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_huge_declared_lengths_fail_without_allocating() -> None:
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, *HUGE_LENGTH_HEADERS],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a speed requirement
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- Property-based tests ---------------------------------------------------------------

fixed_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
    max_value=timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
).map(timezone)
minute_offsets = st.integers(min_value=-1439, max_value=1439).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
time_zones = st.none() | fixed_offsets | minute_offsets

hashable_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.dates()
    | st.datetimes(timezones=time_zones)
    | st.times(timezones=time_zones)
    | st.decimals(allow_nan=False, allow_infinity=True)
    | st.uuids()
)
hashables = st.recursive(
    hashable_scalars,
    lambda children: st.tuples(children, children) | st.frozensets(children, max_size=4),
    max_leaves=8,
)
scalars = (
    hashable_scalars
    | st.floats()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=40).map(bytearray)
)
supported_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(hashables, children, max_size=4)
        | st.sets(hashables, max_size=4)
        | st.frozensets(hashables, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(supported_values)
def test_any_supported_value_round_trips(value: Any) -> None:
    assert_same(round_trip(value, DecodeLimits(max_depth=200)), value)


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    try:
        SERIALIZER.loads(data, LIMITS)
    except ProtocolError as error:
        assert error.code == "bad-body"


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(supported_values, st.data())
def test_mutated_bodies_raise_only_protocol_error(value: Any, data: st.DataObject) -> None:
    body = bytearray(SERIALIZER.dumps(value))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(body)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and position < len(body):
            body[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "insert":
            body.insert(position, data.draw(st.integers(min_value=0, max_value=255)))
        elif position < len(body):
            del body[position]

    try:
        SERIALIZER.loads(bytes(body), LIMITS)
    except ProtocolError as error:
        assert error.code == "bad-body"


# --- Plugin surface ---------------------------------------------------------------------


def test_serializer_declares_name_wire_id_and_safety() -> None:
    assert (SERIALIZER.name, SERIALIZER.wire_id, SERIALIZER.is_safe) == ("cbor", 1, True)


def test_hook_returns_one_cbor_serializer() -> None:
    serializers = cbor_module.ember_serializers()

    assert [type(serializer) for serializer in serializers] == [CborSerializer]


def test_entry_point_loads_this_module() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="ember", name="cbor")

    assert entry_point.load() is cbor_module


def test_concurrent_use_from_threads() -> None:
    values = [(index, Decimal(index), {f"k{index}": [index] * index}) for index in range(50)]

    def work() -> None:
        for _ in range(50):
            for value in values:
                assert_same(round_trip(value), value)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(work) for _ in range(4)]
    for future in futures:
        future.result()  # re-raises a failure from the worker thread


def test_decimal_context_of_caller_is_untouched() -> None:
    with decimal.localcontext() as context:
        context.prec = 3
        context.traps[decimal.Inexact] = True

        assert_same(round_trip(Decimal("1.23456789")), Decimal("1.23456789"))
