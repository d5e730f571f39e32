"""Sample values per type, exact comparison, and the JSON notation for typed values.

Serializers declare the types they support by the names in :data:`TYPE_NAMES`. The
suite round-trips the samples of each declared type and compares the result with
:func:`find_difference`, which is stricter than ``==``: the type must be identical at
every level (``True`` is not ``1``, a tuple is not a list), ``-0.0`` keeps its sign and a
NaN equals a NaN.

Vector files need typed values that JSON cannot express directly (bytes, tuples, big
integers, NaN). :func:`decode_notation` reads them from JSON objects with a single
``"$type"`` key, for example ``{"$tuple": [1, {"$bytes": "00ff"}]}``.
"""

from __future__ import annotations

import decimal
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

__all__ = [
    "CONTAINER_TYPES",
    "TYPE_NAMES",
    "decode_notation",
    "find_difference",
    "find_undeclared_type",
    "nested_sample",
    "sample_values",
]

_OFFSET = timezone(timedelta(hours=5, minutes=45))


def _samples() -> dict[str, Callable[[], list[Any]]]:
    # Functions, so that every check gets fresh mutable samples.
    return {
        "none": lambda: [None],
        "bool": lambda: [True, False],
        "int": lambda: [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**31 - 1, -(2**31),
                        2**63 - 1, -(2**63)],
        "bigint": lambda: [2**64, -(2**64) - 1, 2**200, -(3**100)],
        "float": lambda: [0.0, -0.0, 1.5, -2.25e-300, 1e308, 0.1],
        "float-special": lambda: [math.inf, -math.inf, math.nan],
        # The last sample of each type goes into the nested value, so it stays short.
        "str": lambda: ["", "x" * 5000, "grüß dich", "\u0000", "plain ascii \U0001f600"],
        "bytes": lambda: [b"", b"\xab" * 5000, bytes(range(256)), b"\x00\xff"],
        "bytearray": lambda: [bytearray(), bytearray(b"\x00\xff")],
        "list": lambda: [[], [1, "two"], [[[]]]],
        "tuple": lambda: [(), (1,), (1, (2, 3))],
        "dict": lambda: [{}, {"key": 1}, {"outer": {"inner": "value"}}],
        "dict-int-keys": lambda: [{1: "one", -2: "minus two"}],
        "set": lambda: [set(), {1, 2, 3}, {"a", "b"}],
        "frozenset": lambda: [frozenset(), frozenset({1, 2})],
        "datetime": lambda: [
            datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=_OFFSET),
            datetime(1999, 1, 1, tzinfo=UTC),
        ],
        "datetime-naive": lambda: [datetime(2026, 12, 4, 9, 30, 15, 123456)],
        "date": lambda: [date(2026, 12, 4), date(1, 1, 1)],
        "time": lambda: [time(9, 30, 15, 123456), time(23, 59, tzinfo=_OFFSET)],
        "decimal": lambda: [decimal.Decimal("19.99"), decimal.Decimal("-1E+400"),
                            decimal.Decimal("0.000001")],
        "decimal-special": lambda: [decimal.Decimal("NaN"), decimal.Decimal("Infinity"),
                                    decimal.Decimal("-0")],
        "uuid": lambda: [uuid.UUID("12345678-1234-5678-1234-567812345678")],
    }


_SAMPLES = _samples()

#: Every type name a serializer may declare, in a stable order.
TYPE_NAMES: tuple[str, ...] = tuple(_SAMPLES)

#: Type names whose values contain other values.
CONTAINER_TYPES = frozenset({"list", "tuple", "dict", "dict-int-keys", "set", "frozenset"})


def sample_values(type_name: str) -> list[Any]:
    """Return fresh sample values of the declared type ``type_name``."""
    try:
        return _SAMPLES[type_name]()
    except KeyError:
        raise ValueError(
            f"unknown type name {type_name!r}; known type names: {', '.join(TYPE_NAMES)}"
        ) from None


def nested_sample(types: frozenset[str]) -> object | None:
    """Combine one sample of every declared scalar type inside the declared containers.

    Returns ``None`` when no container type that contains arbitrary values (list or dict)
    is declared, because then there is nothing to nest in.
    """
    scalars = [
        sample_values(name)[-1]
        for name in TYPE_NAMES
        if name in types and name not in CONTAINER_TYPES and name != "float-special"
    ]
    if "list" in types:
        value: object = list(scalars)
        if "tuple" in types:
            value = [value, tuple(scalars)]
        if "dict" in types:
            value = [value, {"nested": list(scalars), "empty": {}}]
        return value
    if "dict" in types:
        return {f"item{index}": item for index, item in enumerate(scalars)}
    return None


def find_undeclared_type(value: object, types: frozenset[str]) -> str | None:
    """Return a description of the first part of ``value`` whose type is not declared.

    A serializer that declares ``types`` may decode only values built from them, so
    that no peer can make it hand the application an object of another class.
    """
    allowed = {type(sample) for name in types for sample in sample_values(name)}
    pending: list[tuple[object, str]] = [(value, "value")]
    while pending:
        node, path = pending.pop()
        if type(node) not in allowed:
            return f"{path} is a {type(node).__module__}.{type(node).__qualname__}"
        if isinstance(node, list | tuple):
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(node))
        elif isinstance(node, dict):
            for key, item in node.items():
                pending.append((key, f"key {_shown(key)} of {path}"))
                pending.append((item, f"{path}[{_shown(key)}]"))
        elif isinstance(node, set | frozenset):
            pending.extend((item, f"an item of {path}") for item in node)
    return None


def find_difference(expected: object, actual: object, path: str = "value") -> str | None:
    """Return where ``actual`` differs from ``expected`` in type or value, or ``None``.

    The result reads like ``"value[2]: expected tuple (1, 2), got list [1, 2]"``.
    """
    if type(expected) is not type(actual):
        return (
            f"{path}: expected {type(expected).__name__} {_shown(expected)}, got "
            f"{type(actual).__name__} {_shown(actual)}"
        )

    if isinstance(expected, float):
        assert isinstance(actual, float)
        same = (math.isnan(expected) and math.isnan(actual)) or (
            expected == actual and math.copysign(1, expected) == math.copysign(1, actual)
        )
        return None if same else f"{path}: expected {expected!r}, got {actual!r}"

    if isinstance(expected, decimal.Decimal):
        assert isinstance(actual, decimal.Decimal)
        # compare_total distinguishes NaN from sNaN and 1.0 from 1.00, which == does not.
        same = expected.compare_total(actual) == 0
        return None if same else f"{path}: expected {expected!r}, got {actual!r}"

    if isinstance(expected, datetime | time):
        assert isinstance(actual, datetime | time)
        if expected != actual or expected.utcoffset() != actual.utcoffset():
            return f"{path}: expected {expected!r}, got {actual!r}"
        return None

    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple)
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} items, got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            difference = find_difference(want, got, f"{path}[{index}]")
            if difference:
                return difference
        return None

    if isinstance(expected, Mapping):
        assert isinstance(actual, Mapping)
        if set(expected) != set(actual):
            return f"{path}: expected keys {_shown(sorted(map(repr, expected)))}, got " \
                   f"{_shown(sorted(map(repr, actual)))}"
        for key, want in expected.items():
            actual_key = next(k for k in actual if k == key)
            difference = (
                find_difference(key, actual_key, f"key {key!r} of {path}")
                or find_difference(want, actual[key], f"{path}[{key!r}]")
            )
            if difference:
                return difference
        return None

    if expected != actual:
        return f"{path}: expected {_shown(expected)}, got {_shown(actual)}"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- notation -----------------------------------------------------------------------

_FLOAT_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0.0": -0.0}


def decode_notation(data: object) -> object:
    """Build the Python value that the JSON ``data`` describes.

    JSON null, booleans, strings, integers, floats and arrays stand for themselves
    (arrays are lists). An object with one key starting with ``$`` is a typed value:
    ``$bytes``/``$bytearray`` (hex text), ``$tuple``/``$set``/``$frozenset`` (an array),
    ``$dict`` (an array of ``[key, value]`` pairs, for keys that are not strings),
    ``$int`` (decimal text), ``$float`` (``nan``, ``inf``, ``-inf`` or ``-0.0``),
    ``$decimal``, ``$datetime``, ``$date``, ``$time`` (ISO 8601 text) and ``$uuid``. Any
    other object is a dict with string keys. Raises ``ValueError`` for a malformed one.
    """
    if isinstance(data, list):
        return [decode_notation(item) for item in data]
    if not isinstance(data, dict):
        return data
    if len(data) != 1 or not next(iter(data)).startswith("$"):
        return {key: decode_notation(value) for key, value in data.items()}

    tag, content = next(iter(data.items()))
    decoder = _NOTATION.get(tag)
    if decoder is None:
        known = ", ".join(sorted(_NOTATION))
        raise ValueError(f"unknown typed value {tag!r}; known: {known}")
    try:
        return decoder(content)
    except (TypeError, ValueError, KeyError, decimal.InvalidOperation) as error:
        raise ValueError(f"invalid {tag} value {content!r}: {error}") from None


def _decode_pairs(content: Any) -> dict[Any, Any]:
    return {decode_notation(key): decode_notation(value) for key, value in content}


_NOTATION: dict[str, Callable[[Any], object]] = {
    "$bytes": bytes.fromhex,
    "$bytearray": lambda content: bytearray.fromhex(content),
    "$tuple": lambda content: tuple(decode_notation(item) for item in content),
    "$set": lambda content: {decode_notation(item) for item in content},
    "$frozenset": lambda content: frozenset(decode_notation(item) for item in content),
    "$dict": _decode_pairs,
    "$int": lambda content: int(content, 10),
    "$float": lambda content: _FLOAT_WORDS[content],
    "$decimal": decimal.Decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$uuid": uuid.UUID,
}
