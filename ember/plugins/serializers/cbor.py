"""The ``cbor`` serializer: CBOR (RFC 8949) through cbor2 6.x, hardened for untrusted input.

Every supported Python type is encoded in one CBOR form and decodes back to the same type.
Standard CBOR tags are used where they exist, and ember-private tags (``TAG_*`` below)
where they do not. ``docs/serializers.md`` lists every type and tag.

Invariants:

- ``dumps`` returns a complete encoding or raises
  :class:`~ember.kernel.errors.SerializationError`. It never falls back to ``str()`` or
  ``repr()``.
- ``loads`` raises only :class:`~ember.kernel.errors.ProtocolError`, whatever the bytes,
  with code ``"bad-body"``, or ``"unknown-type"`` for a converted value whose converter
  is not registered here. It accepts exactly the tags in :data:`ACCEPTED_TAGS`, and
  rejects indefinite-length items, duplicate map keys, invalid UTF-8, bytes after the
  value, simple values other than false, true and null, and maps used as map keys. It
  returns only the types that ``dumps`` accepts. The only code the data can select is
  the ``from_data`` of a converter registered in this process.
- ``limits.max_depth`` counts CBOR nesting as cbor2 does: every array, map and tag is one
  level. A tuple or frozenset therefore uses two levels (tag and array), and a tagged
  leaf such as a datetime, UUID or big int adds one.
- ``limits.max_items`` counts CBOR data items: every array, map, tag, key and value is
  one. A body over it is rejected by a scan of the item headers before cbor2 builds
  any object (see :func:`_check_item_count`).

Speed: once cbor2 is given an ``encoders`` table, it looks up the exact type of every
value in it, and each miss raises ``KeyError`` inside cbor2. With cbor2 6.3 that made
1000-item lists and dicts 2.5 to 5 times slower to encode. The table below therefore
maps str, int, float, bool, bytes, list and dict to cbor2's own encode methods, so they
run no Python code, and only the types that need a conversion reach the hooks in this
module. Each call from cbor2 into the table also goes through CPython's call machinery,
which counts recursion, so a value nested too deeply raises ``RecursionError`` instead of
overflowing the C stack as bare ``cbor2.dumps`` does near 7000 levels.
"""

from __future__ import annotations

import array
import collections
import decimal
import email.mime.text
import fractions
import io
import ipaddress
import pickle
import re
import secrets
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, NoReturn, cast

import cbor2

from ember.kernel.converters import converters
from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import DecodeLimits, Serializer

__all__ = [
    "ACCEPTED_TAGS",
    "CborSerializer",
    "MAX_DECIMAL_DIGITS",
    "TAG_BYTEARRAY",
    "TAG_CONVERTED",
    "TAG_DATETIME",
    "TAG_DECIMAL_TEXT",
    "TAG_FROZENSET",
    "TAG_TIME",
    "TAG_TUPLE",
    "ember_serializers",
]

# Ember-private tags for types that no registered CBOR tag describes. They sit in the
# first-come-first-served range of the IANA registry (32768 and above) but are not
# registered, so only ember peers understand them.
# NOTE: register these numbers with IANA before the wire format is declared stable.

#: Tuple: an array of the items.
TAG_TUPLE = 47701
#: Frozenset: an array of the items.
TAG_FROZENSET = 47702
#: Bytearray: a byte string.
TAG_BYTEARRAY = 47703
#: Datetime that RFC 3339 (tag 0) cannot express: a naive datetime, or a UTC offset with
#: seconds or microseconds. An array [local time as ``isoformat()`` text without offset,
#: UTC offset in microseconds or null]. The offset travels as a number because
#: ``fromisoformat`` in Python 3.11 drops a sub-second offset such as -00:00:00.000005.
TAG_DATETIME = 47704
#: Time of day: an array [``isoformat()`` text without offset, UTC offset in microseconds
#: or null], as for :data:`TAG_DATETIME`.
TAG_TIME = 47705
#: Decimal that tag 4 cannot express: NaN, sNaN (with payload), infinities and negative
#: zero. Text in ``str(Decimal)`` form.
TAG_DECIMAL_TEXT = 47706
#: Value of a type with a registered converter (see ember.kernel.converters): an array
#: [converter name, plain data]. The receiver rebuilds it only with a local converter.
TAG_CONVERTED = 47710

# Standard tags whose decoding is left to cbor2's built-in decoders.
_STANDARD_TAGS = frozenset({
    0,  # RFC 3339 date/time text -> aware datetime
    1,  # epoch date/time number -> aware datetime in UTC
    2,  # positive bignum -> int
    3,  # negative bignum -> int
    37,  # binary UUID -> uuid.UUID
    100,  # days since 1970-01-01 -> date (RFC 8943)
    258,  # set of unique items -> set (frozenset inside a map key)
    1004,  # RFC 3339 full-date text -> date (RFC 8943)
})

#: Every tag number that ``loads`` accepts. Any other tag is rejected before its content
#: is decoded. Tag 4 (decimal fraction) is decoded here, with a size bound.
ACCEPTED_TAGS = _STANDARD_TAGS | {
    4,
    TAG_TUPLE,
    TAG_FROZENSET,
    TAG_BYTEARRAY,
    TAG_DATETIME,
    TAG_TIME,
    TAG_DECIMAL_TEXT,
    TAG_CONVERTED,
}

#: Most coefficient digits of a Decimal, on both sides. Converting a binary integer to
#: decimal digits takes quadratic time in CPython 3.11, so without a bound one body of
#: large decimal fractions could cost minutes of CPU to decode.
MAX_DECIMAL_DIGITS = 1000

# Bodies up to this size are decoded with one cbor2.loads call (see _decode_small).
# Larger ones stream through a CBORDecoder, which avoids copying the body.
_SMALL_BODY_SIZE = 64 * 1024
_STREAM_READ_SIZE = 64 * 1024

# Maximum length of cbor2's text repeated in an error message, because the rest may be
# peer data.
_MAX_DETAIL_LENGTH = 120

_MINUTE = timedelta(minutes=1)
_NO_OFFSET = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)
# A UTC offset must be strictly within one day (datetime.timezone's own bound).
_MAX_OFFSET_MICROSECONDS = 24 * 60 * 60 * 1_000_000

# Decimal arithmetic context that never rounds, for rebuilding decimal fractions exactly.
_EXACT_CONTEXT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN
)
_MAX_DECIMAL_COEFFICIENT = 10**MAX_DECIMAL_DIGITS


# --- Encoding ---------------------------------------------------------------------------


class _UnsupportedValue(Exception):
    """Raised inside cbor2 by the encoder hooks for a value of an unsupported type.

    ``dumps`` replaces it with a SerializationError that names the type and the place of
    the value. Only ``dumps`` can find that place, because only it has the whole value.
    """

    def __init__(self, value: object) -> None:
        super().__init__(type(value).__qualname__)
        self.value = value


def _reject_unsupported(encoder: cbor2.CBOREncoder, value: object) -> NoReturn:
    raise _UnsupportedValue(value)


def _encode_converted(encoder: cbor2.CBOREncoder, value: object) -> None:
    tagged = converters.to_wire(value)
    if tagged is None:
        raise _UnsupportedValue(value)
    encoder.encode_semantic(TAG_CONVERTED, list(tagged))


def _encode_none(encoder: cbor2.CBOREncoder, value: None) -> None:
    encoder.encode_none()


def _encode_tuple(encoder: cbor2.CBOREncoder, value: tuple[Any, ...]) -> None:
    # A list, because cbor2 would look up a tuple in this same table again and recurse.
    encoder.encode_semantic(TAG_TUPLE, list(value))


def _encode_frozenset(encoder: cbor2.CBOREncoder, value: frozenset[Any]) -> None:
    encoder.encode_semantic(TAG_FROZENSET, list(value))


def _encode_bytearray(encoder: cbor2.CBOREncoder, value: bytearray) -> None:
    encoder.encode_semantic(TAG_BYTEARRAY, bytes(value))


def _encode_datetime(encoder: cbor2.CBOREncoder, value: datetime) -> None:
    offset = value.utcoffset()

    # RFC 3339 offsets are whole minutes, and cbor2 writes those as tag 0 with the offset
    # kept exactly. Naive datetimes and finer offsets use the private tag.
    if offset is not None and offset % _MINUTE == _NO_OFFSET:
        encoder.encode_datetime(value)
    else:
        local_text = value.replace(tzinfo=None).isoformat()
        encoder.encode_semantic(TAG_DATETIME, [local_text, _offset_microseconds(offset)])


def _encode_time(encoder: cbor2.CBOREncoder, value: time) -> None:
    local_text = value.replace(tzinfo=None).isoformat()
    encoder.encode_semantic(TAG_TIME, [local_text, _offset_microseconds(value.utcoffset())])


def _offset_microseconds(offset: timedelta | None) -> int | None:
    # None means a naive value. A tzinfo whose utcoffset() returns None makes it naive too.
    return None if offset is None else offset // _MICROSECOND


def _encode_decimal(encoder: cbor2.CBOREncoder, value: decimal.Decimal) -> None:
    if not value.is_finite() or (value.is_zero() and value.is_signed()):
        encoder.encode_semantic(TAG_DECIMAL_TEXT, str(value))
        return

    digit_count = len(value.as_tuple().digits)
    if digit_count > MAX_DECIMAL_DIGITS:
        raise SerializationError(
            f"cannot encode a Decimal with {digit_count} coefficient digits: the cbor "
            f"serializer allows at most {MAX_DECIMAL_DIGITS}. Round it, or send it as str."
        )
    encoder.encode_decimal(value)


_Hook = Callable[[cbor2.CBOREncoder, Any], Any]

# cbor2 looks types up here by exact type. A subclass of a built-in type (an IntEnum, a
# StrEnum, an OrderedDict, a namedtuple) misses this table and takes cbor2's generic
# path, which encodes it as its base CBOR type. It therefore decodes as int, str, dict or
# list. Subclasses of datetime, date, time, Decimal and UUID reach _reject_unsupported.
_ENCODERS: dict[type, _Hook] = {
    # Plain data: cbor2's own methods, so no Python code runs for it.
    str: cbor2.CBOREncoder.encode_string,
    int: cbor2.CBOREncoder.encode_int,
    float: cbor2.CBOREncoder.encode_float,
    bool: cbor2.CBOREncoder.encode_bool,
    bytes: cbor2.CBOREncoder.encode_bytes,
    list: cbor2.CBOREncoder.encode_array,
    dict: cbor2.CBOREncoder.encode_map,
    set: cbor2.CBOREncoder.encode_set,
    date: cbor2.CBOREncoder.encode_date,
    uuid.UUID: cbor2.CBOREncoder.encode_uuid,
    type(None): _encode_none,
    # Types that need a tag of their own or a check.
    tuple: _encode_tuple,
    frozenset: _encode_frozenset,
    bytearray: _encode_bytearray,
    datetime: _encode_datetime,
    time: _encode_time,
    decimal.Decimal: _encode_decimal,
}

# Types that cbor2 would encode on its own but that ember does not support, because they
# would not decode back to the same type or because loads rejects their tags.
# NOTE: any other object registered as a collections.abc.Sequence or Mapping (a custom
# class) is still encoded by cbor2 as an array or map and decodes as list or dict.
for _unsupported_type in (
    fractions.Fraction,
    complex,
    re.Pattern,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    email.mime.text.MIMEText,
    cbor2.CBORTag,
    cbor2.CBORSimpleValue,
    type(cbor2.undefined),
    cbor2.frozendict,
    range,
    memoryview,
    array.array,
    types.MappingProxyType,
    collections.deque,
    collections.ChainMap,
    collections.UserDict,
    collections.UserList,
    collections.UserString,
):
    _ENCODERS[_unsupported_type] = _reject_unsupported

# _ENCODERS plus an entry for each class with a converter, rebuilt when the converter
# table changes. Exact-type entries keep an IntEnum with a converter from being encoded
# as a plain int, and leave the plain-data path untouched.
_encoders_cache: tuple[int, dict[type, _Hook]] = (-1, _ENCODERS)


def _current_encoders() -> dict[type, _Hook]:
    global _encoders_cache
    version, table = _encoders_cache
    if version != converters.version:
        version = converters.version
        table = dict(_ENCODERS)
        table.update(dict.fromkeys(converters.types(), _encode_converted))
        _encoders_cache = (version, table)
    return table


def _describe_unsupported(root: object, value: object) -> str:
    kind = type(value)
    type_name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}"
    )
    place = _locate(root, value)
    where = "" if place in (None, "value") else f" at {place}"

    return (
        f"cannot encode {type_name}{where}: the cbor serializer supports None, bool, "
        f"int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset, "
        f"datetime, date, time, Decimal and UUID. Convert the value to one of these."
    )


def _locate(root: object, target: object) -> str | None:
    """Return the path of ``target`` inside ``root`` (``value[1]['x']``), or ``None``.

    Runs only after encoding failed, so the walk costs nothing on the normal path.
    """
    pending: list[tuple[object, str]] = [(root, "value")]
    visited: set[int] = set()

    while pending:
        node, path = pending.pop()
        if node is target:
            return path
        if id(node) in visited:
            continue

        if isinstance(node, (list, tuple)):
            visited.add(id(node))
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(node))
        elif isinstance(node, dict):
            visited.add(id(node))
            for key, item in node.items():
                shown_key = _shorten(repr(key), 40)
                pending.append((key, f"key {shown_key} of {path}"))
                pending.append((item, f"{path}[{shown_key}]"))
        elif isinstance(node, (set, frozenset)):
            visited.add(id(node))
            pending.extend((item, f"an item of {path}") for item in node)

    return None


# --- Decoding ---------------------------------------------------------------------------

# Private tags and tag 4 are decoded through cbor2's two-stage decoder protocol
# (cbor2.shareable_decoder). The first call returns (container, finish), and cbor2 calls
# finish(content) once the content is decoded. A plain callback would cost about twice
# as much per item, because cbor2 first probes it for the two-stage attributes.
# The content is decoded mutable (immutable=False), so a tuple's items keep their types.

_Finish = Callable[[Any], Any]
_Begin = Callable[[bool], tuple[None, _Finish]]


def _two_stage(name: str, finish: _Finish) -> _Begin:
    """Wrap ``finish`` as a cbor2 two-stage decoder named ``name`` in cbor2's errors."""
    stage = (None, finish)

    def begin(immutable: bool) -> tuple[None, _Finish]:
        return stage

    decorated: _Begin = cbor2.shareable_decoder(name=name, immutable=False)(begin)
    return decorated


def _finish_tuple(content: object) -> tuple[Any, ...]:
    return tuple(_require_array(content, TAG_TUPLE, "tuple"))


def _finish_frozenset(content: object) -> frozenset[Any]:
    items = _require_array(content, TAG_FROZENSET, "frozenset")
    try:
        return frozenset(items)
    except TypeError:
        raise ProtocolError(
            f"CBOR tag {TAG_FROZENSET} (frozenset) contains an unhashable item",
            code="bad-body",
        ) from None


def _finish_bytearray(content: object) -> bytearray:
    if type(content) is not bytes:
        raise _content_error(TAG_BYTEARRAY, "bytearray", "a byte string", content)
    return bytearray(content)


def _finish_datetime(content: object) -> datetime:
    text, offset = _require_local_and_offset(content, TAG_DATETIME, "datetime")
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        local = None
    if local is None or local.tzinfo is not None:
        raise ProtocolError(
            f"CBOR tag {TAG_DATETIME} (datetime) must contain an ISO 8601 datetime without a "
            f"UTC offset",
            code="bad-body",
        )
    return local if offset is None else local.replace(tzinfo=offset)


def _finish_time(content: object) -> time:
    text, offset = _require_local_and_offset(content, TAG_TIME, "time")
    try:
        local = time.fromisoformat(text)
    except ValueError:
        local = None
    if local is None or local.tzinfo is not None:
        raise ProtocolError(
            f"CBOR tag {TAG_TIME} (time) must contain an ISO 8601 time without a UTC offset",
            code="bad-body",
        )
    return local if offset is None else local.replace(tzinfo=offset)


def _require_local_and_offset(
    content: object, tag: int, type_name: str
) -> tuple[str, timezone | None]:
    pair = _require_array(content, tag, type_name)
    text, offset = pair if len(pair) == 2 else (None, None)

    if type(text) is not str or not (offset is None or _is_valid_offset(offset)):
        raise ProtocolError(
            f"CBOR tag {tag} ({type_name}) must contain [text, UTC offset in microseconds or "
            f"null] with an offset of less than one day",
            code="bad-body",
        )

    if offset is None:
        return text, None
    return text, timezone(timedelta(microseconds=offset))


def _is_valid_offset(offset: object) -> bool:
    return type(offset) is int and -_MAX_OFFSET_MICROSECONDS < offset < _MAX_OFFSET_MICROSECONDS


def _finish_decimal_text(content: object) -> decimal.Decimal:
    text = _require_text(content, TAG_DECIMAL_TEXT, "Decimal")
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        value = None

    # Finite values travel as tag 4. Accepting them here too would give the same number
    # two encodings and bypass the digit bound.
    if value is None or (value.is_finite() and not (value.is_zero() and value.is_signed())):
        raise ProtocolError(
            f"CBOR tag {TAG_DECIMAL_TEXT} (Decimal) must contain NaN, sNaN, Infinity or a "
            f"negative zero; finite decimals use tag 4",
            code="bad-body",
        )
    return value


def _finish_decimal_fraction(content: object) -> decimal.Decimal:
    # Tag 4 contains [exponent, mantissa], and the mantissa may be a bignum (tag 2 or 3).
    pair = _require_array(content, 4, "decimal fraction")
    if len(pair) != 2 or type(pair[0]) is not int or type(pair[1]) is not int:
        raise ProtocolError(
            "CBOR tag 4 (decimal fraction) must contain [exponent, mantissa] as two integers",
            code="bad-body",
        )
    exponent, mantissa = pair

    if not decimal.MIN_ETINY <= exponent <= decimal.MAX_EMAX:
        raise ProtocolError(
            f"CBOR tag 4 (decimal fraction) exponent is outside the Decimal range "
            f"{decimal.MIN_ETINY}..{decimal.MAX_EMAX}",
            code="bad-body",
        )
    if not -_MAX_DECIMAL_COEFFICIENT < mantissa < _MAX_DECIMAL_COEFFICIENT:
        raise ProtocolError(
            f"CBOR tag 4 (decimal fraction) mantissa has more than {MAX_DECIMAL_DIGITS} "
            f"digits",
            code="bad-body",
        )

    try:
        return decimal.Decimal(mantissa).scaleb(exponent, context=_EXACT_CONTEXT)
    except decimal.DecimalException:
        raise ProtocolError(
            "CBOR tag 4 (decimal fraction) is outside the range of Decimal",
            code="bad-body",
        ) from None


def _finish_converted(content: object) -> object:
    pair = _require_array(content, TAG_CONVERTED, "converted value")
    if len(pair) != 2 or type(pair[0]) is not str:
        raise ProtocolError(
            f"CBOR tag {TAG_CONVERTED} (converted value) must hold [name, data]",
            code="bad-body",
        )
    # from_data keeps what it gets, where the check after decoding would not see it.
    _reject_foreign_values(pair[1])
    return converters.from_wire(pair[0], pair[1])


def _require_array(content: object, tag: int, type_name: str) -> list[Any] | tuple[Any, ...]:
    if type(content) is not list and type(content) is not tuple:
        raise _content_error(tag, type_name, "an array", content)
    return content


def _require_text(content: object, tag: int, type_name: str) -> str:
    if type(content) is not str:
        raise _content_error(tag, type_name, "a text string", content)
    return content


def _content_error(tag: int, type_name: str, expected: str, content: object) -> ProtocolError:
    return ProtocolError(
        f"CBOR tag {tag} ({type_name}) must contain {expected}, not {type(content).__name__}",
        code="bad-body",
    )


class _TagDecoders(dict[int, _Begin]):
    """cbor2's ``semantic_decoders`` table, rejecting every tag that ember does not use.

    cbor2 looks up each tag here before its built-in decoders. A missing standard tag
    raises ``KeyError``, which hands it to the built-in decoder. Any other missing tag
    raises ProtocolError before its content is decoded. Because the table denies by
    default, a later cbor2 release that decodes more tags cannot widen what ember accepts.
    """

    def __missing__(self, tag: int) -> _Begin:
        if tag in _STANDARD_TAGS:
            raise KeyError(tag)
        accepted = ", ".join(str(number) for number in sorted(ACCEPTED_TAGS))
        raise ProtocolError(
            f"CBOR tag {tag} is not accepted by the cbor serializer; accepted tags: "
            f"{accepted}",
            code="bad-body",
        )


_TAG_DECODERS = _TagDecoders({
    4: _two_stage("decimal fraction", _finish_decimal_fraction),
    TAG_TUPLE: _two_stage("tuple", _finish_tuple),
    TAG_FROZENSET: _two_stage("frozenset", _finish_frozenset),
    TAG_BYTEARRAY: _two_stage("bytearray", _finish_bytearray),
    TAG_DATETIME: _two_stage("datetime", _finish_datetime),
    TAG_TIME: _two_stage("time", _finish_time),
    TAG_DECIMAL_TEXT: _two_stage("Decimal", _finish_decimal_text),
    TAG_CONVERTED: _two_stage("converted value", _finish_converted),
})

# cbor2 types that a body can decode to although ember's encoder never writes them:
# simple values other than false, true and null (CBORSimpleValue, undefined), and a map
# inside a map key or set item, which cbor2 makes a frozendict because a key must be
# hashable. cbor2 creates these without calling any hook, so only a look at the decoded
# value finds them.
_FOREIGN_TYPES = frozenset({cbor2.CBORSimpleValue, type(cbor2.undefined), cbor2.frozendict})

_SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes})


class _ForeignValueFound(Exception):
    def __init__(self, value: object) -> None:
        super().__init__(type(value).__qualname__)
        self.value = value


class _ForeignValueFinder(pickle.Pickler):
    """A pickler used only to visit every object of a decoded value at C speed.

    CPython's pickler handles None, bool, int, float, str, bytes and the containers
    natively, and calls :meth:`reducer_override` for every other object. On a list of
    200 small dicts it took 35 us where :func:`_walk_for_foreign_values` took 290 us
    (CPython 3.11). Its output goes to ``len`` and is discarded.
    """

    def __init__(self) -> None:
        super().__init__(_DiscardingFile(), protocol=pickle.HIGHEST_PROTOCOL)

    def reducer_override(self, obj: object) -> Any:
        if type(obj) in _FOREIGN_TYPES:
            raise _ForeignValueFound(obj)
        # Any other object here is a leaf: a datetime, Decimal or UUID, or a value that a
        # converter rebuilt from data checked before. An empty tuple stands in for it, so
        # the pickler neither descends into it nor runs its __reduce__ code.
        return _EMPTY_TUPLE_REDUCTION


class _DiscardingFile:
    write = staticmethod(len)


_EMPTY_TUPLE_REDUCTION = (tuple, ())


# A pickler is not thread-safe, so each thread keeps its own.
_finders = threading.local()


def _reject_foreign_values(value: object) -> None:
    """Raise ProtocolError if ``value`` contains an object of a type in _FOREIGN_TYPES."""
    if type(value) in _SCALAR_TYPES:
        return  # the common result of a call, such as None, needs no visit

    finder: _ForeignValueFinder | None = getattr(_finders, "finder", None)
    if finder is None:
        finder = _finders.finder = _ForeignValueFinder()

    try:
        finder.dump(value)
    except _ForeignValueFound as found:
        _finders.finder = None  # a failed dump leaves the pickler's state unknown
        raise _foreign_value_error(found.value) from None
    except RecursionError:
        # The value nests deeper than the pickler can recurse; the iterative walk decides.
        _finders.finder = None
        _walk_for_foreign_values(value)
    finally:
        finder.clear_memo()  # the memo would keep the decoded objects alive


def _walk_for_foreign_values(value: object) -> None:
    pending = [value]
    while pending:
        node = pending.pop()
        kind = type(node)
        if kind in _FOREIGN_TYPES:
            raise _foreign_value_error(node)
        if kind is dict:
            mapping = cast("dict[object, object]", node)
            pending.extend(mapping.keys())
            pending.extend(mapping.values())
        elif kind in (list, tuple, set, frozenset):
            pending.extend(cast("Iterable[object]", node))


def _foreign_value_error(node: object) -> ProtocolError:
    if isinstance(node, cbor2.CBORSimpleValue):
        detail = f"simple value {node.value} is not accepted"
    elif node is cbor2.undefined:
        detail = "the undefined value is not accepted (use null)"
    else:
        detail = "a map is used as a map key or set item, where ember accepts no map"
    return ProtocolError(f"invalid CBOR body: {detail}", code="bad-body")


# cbor2.loads ignores bytes after the first value. So a small body is decoded as the
# first item of a two-item array whose second item is this random 16-byte string. That
# second item decodes as the trailer only if the body ended exactly where its value did.
# The trailer is generated per process and never sent, so a peer cannot append a copy.
_TRAILER_VALUE = secrets.token_bytes(16)
_TRAILER = b"\x50" + _TRAILER_VALUE  # 0x50: byte string of length 16
_PAIR_HEADER = b"\x82"  # array of two items


def _decode_small(data: bytes, max_depth: int) -> object:
    wrapped = b"".join((_PAIR_HEADER, data, _TRAILER))
    try:
        # The wrapping array is one more level of nesting. The options are spelled out
        # because passing them as **kwargs costs about a third of a small decode.
        value, trailer = cbor2.loads(
            wrapped,
            max_depth=max_depth + 1,
            semantic_decoders=_TAG_DECODERS,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
        complete = trailer == _TRAILER_VALUE
    except cbor2.CBORError:
        complete = False

    if complete:
        return value
    # The body is malformed, truncated, or continues after its value. The streaming
    # decoder reads the body alone and raises the precise error, at a cost paid only here.
    return _decode_streamed(data, max_depth)


def _decode_streamed(data: bytes, max_depth: int) -> object:
    decoder = cbor2.CBORDecoder(
        io.BytesIO(data),
        read_size=_STREAM_READ_SIZE,
        max_depth=max_depth,
        semantic_decoders=_TAG_DECODERS,
        allow_indefinite=False,
        allow_duplicate_keys=False,
    )
    value = decoder.decode()

    try:
        decoder.read(1)
    except cbor2.CBORDecodeEOF:
        return value
    raise _trailing_bytes_error()


def _check_item_count(data: bytes, max_items: int) -> None:
    """Raise ProtocolError if ``data`` holds more than ``max_items`` CBOR data items.

    cbor2's C decoder has no item budget, and a 4 MB body of empty maps decodes to about
    500 MB of dicts. This scan reads every item header in order and skips string and
    byte string payloads by their declared length, so it needs no memory and one step
    per item, and it does not follow the nesting: the headers of a well-formed body,
    read one after the other, are exactly its items. Each array, map, tag, key and
    value counts as one. A header it cannot read (reserved, indefinite length or
    truncated) ends the scan, because cbor2 rejects the body at that same header,
    having built only the items counted before it.
    """
    end = len(data)
    position = 0
    count = 0
    from_bytes = int.from_bytes
    while position < end:
        count += 1
        if count > max_items:
            raise ProtocolError(
                f"CBOR body contains more than max_items={max_items} items (each array, "
                f"map, tag, key and value is one); send less data per call, or raise the "
                f"max_items setting on the receiving side",
                code="bad-body",
            )
        initial = data[position]
        position += 1
        info = initial & 0x1F
        if info < 24:
            argument = info
        elif info < 28:
            size = 1 << (info - 24)
            argument = from_bytes(data[position:position + size], "big")
            position += size
        else:
            return
        # Only strings carry a payload after the argument; floats keep theirs in it.
        major = initial >> 5
        if major == 2 or major == 3:
            position += argument


def _trailing_bytes_error() -> ProtocolError:
    return ProtocolError(
        "invalid CBOR body: extra bytes follow the value, but a body must contain "
        "exactly one value",
        code="bad-body",
    )


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    # Only explicit causes: cbor2 chains the error of a tag decoder with ``from``.
    current: BaseException | None = error
    while current is not None:
        yield current
        current = current.__cause__


def _describe_decode_failure(error: Exception, max_depth: int) -> ProtocolError:
    """Translate any failure inside cbor2 into one ProtocolError with a fixed message.

    cbor2's own messages can quote peer data (a duplicate key, a bad string). So they
    are classified here, and only an unclassified one is repeated, shortened.
    """
    for cause in _exception_chain(error):
        if isinstance(cause, ProtocolError):
            return ProtocolError(str(cause), code=cause.code)
        if isinstance(cause, UnicodeDecodeError):
            return ProtocolError("CBOR text string is not valid UTF-8", code="bad-body")

    detail = str(error)
    if isinstance(error, cbor2.CBORDecodeEOF):
        message = (
            "CBOR body ends inside a value: it is truncated, or a declared length exceeds "
            "the body"
        )
    elif "nesting depth" in detail:
        message = (
            f"CBOR value nests deeper than max_depth={max_depth} (each array, map and tag "
            f"is one level)"
        )
    elif "indefinite length" in detail:
        message = "indefinite-length CBOR items are not accepted: use definite lengths"
    elif "Duplicate map key" in detail:
        message = "invalid CBOR body: a map contains the same key twice"
    elif isinstance(error, MemoryError):
        message = "CBOR body needs more memory to decode than is available"
    elif isinstance(error, RecursionError):
        message = "CBOR body nests too deeply to decode"
    else:
        message = f"invalid CBOR body: {_shorten(detail, _MAX_DETAIL_LENGTH)}"
    return ProtocolError(message, code="bad-body")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- The plugin -------------------------------------------------------------------------

# cbor2 stops at 400 levels of tags such as tuples. Lists and dicts stop at Python's
# recursion limit (1000 by default), because each level passes through a Python call.
_TOO_DEEP_TO_ENCODE = (
    "cannot encode value: it nests too deeply (at most about 400 levels of tuples and "
    "other tagged values, or Python's recursion limit for lists and dicts). Flatten it."
)


class CborSerializer(Serializer):
    """CBOR through cbor2: fast, compact, and unable to run code while decoding."""

    name = "cbor"
    wire_id = 1
    is_safe = True

    def dumps(self, value: object) -> bytes:
        try:
            return cbor2.dumps(value, encoders=_current_encoders(), default=_encode_converted)
        except _UnsupportedValue as error:
            raise SerializationError(_describe_unsupported(value, error.value)) from None
        except SerializationError:
            raise
        except RecursionError as error:
            raise SerializationError(_TOO_DEEP_TO_ENCODE) from error
        except UnicodeEncodeError as error:
            raise SerializationError(
                "cannot encode a str that contains a lone surrogate: CBOR text must be "
                "valid UTF-8. Encode such text to bytes with errors='surrogatepass' first."
            ) from error
        except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as error:
            detail = str(error)
            if "maximum encoding depth" in detail:
                raise SerializationError(_TOO_DEEP_TO_ENCODE) from error
            if "cyclic" in detail:
                raise SerializationError(
                    "cannot encode a value that contains itself: CBOR has no references. "
                    "Break the cycle before sending it."
                ) from error
            detail = _shorten(detail, _MAX_DETAIL_LENGTH)
            raise SerializationError(f"cannot encode value as CBOR: {detail}") from error

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        size = len(data)
        if size > limits.max_size:
            raise ProtocolError(
                f"CBOR body of {size} bytes exceeds the limit of {limits.max_size} bytes",
                code="bad-body",
            )

        # Every item takes at least one byte, so a body no longer than max_items cannot
        # exceed it, and the common small body skips the scan.
        if size > limits.max_items:
            _check_item_count(data, limits.max_items)

        try:
            if size <= _SMALL_BODY_SIZE:
                value = _decode_small(data, limits.max_depth)
            else:
                value = _decode_streamed(data, limits.max_depth)
        except ProtocolError:
            raise
        except Exception as error:
            # Whatever cbor2 or a tag decoder raised, the peer sent a body that ember
            # cannot decode.
            raise _describe_decode_failure(error, limits.max_depth) from error

        _reject_foreign_values(value)
        return value


@hookimpl
def ember_serializers() -> list[Serializer]:
    return [CborSerializer()]
