"""Check every cell of the type table in docs/serializers.md against the real serializers.

Each row of :data:`ROWS` is sent through each bundled serializer; the cell says what the
receiver gets: ``same`` (equal value of the same type), the name of the type that comes
back instead, ``rejected`` (``dumps`` raises SerializationError) or ``rejected on
receipt`` (the receiver's ``loads`` raises ProtocolError). The table in the
document must match the computed one exactly; ``python tests/test_serializer_table.py``
prints it.
"""

from __future__ import annotations

import collections
import decimal
import enum
import math
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.serializers.pickle import PickleSerializer
from ember.plugins.serializers.serpent import SerpentSerializer

DOC = Path(__file__).parent.parent / "docs" / "serializers.md"
BEGIN = "<!-- type-table: begin -->"
END = "<!-- type-table: end -->"

SERIALIZERS: list[Serializer] = [CborSerializer(), SerpentSerializer(),
                                 PickleSerializer(allowed_globals=())]


class Level(enum.IntEnum):
    HIGH = 3


class Color(enum.Enum):
    RED = "red"


Pair = collections.namedtuple("Pair", "left right")

ROWS: list[tuple[str, Callable[[], object]]] = [
    ("None", lambda: None),
    ("bool", lambda: True),
    ("int", lambda: -42),
    ("int beyond 64 bits", lambda: 3**200),
    ("float", lambda: 2.5),
    ("float NaN, inf, -0.0", lambda: [math.nan, math.inf, -0.0]),
    ("str", lambda: "h\u00e9llo"),
    ("bytes", lambda: b"\x00\xff"),
    ("bytearray", lambda: bytearray(b"ab")),
    ("list", lambda: [1, "a"]),
    ("tuple", lambda: (1, "a")),
    ("dict", lambda: {"a": 1, 2: "b"}),
    ("dict with tuple keys", lambda: {(1, 2): "pair"}),
    ("set", lambda: {1, 2}),
    ("empty set", lambda: set()),
    ("frozenset", lambda: frozenset({1})),
    ("datetime, naive", lambda: datetime(2024, 5, 6, 7, 8, 9, 10)),
    ("datetime, UTC", lambda: datetime(2024, 5, 6, tzinfo=UTC)),
    ("datetime, offset in seconds",
     lambda: datetime(2024, 5, 6, tzinfo=timezone(timedelta(hours=1, seconds=30)))),
    ("date", lambda: date(2024, 5, 6)),
    ("time", lambda: time(7, 8, 9)),
    ("Decimal", lambda: decimal.Decimal("1.10")),
    ("UUID", lambda: uuid.UUID(int=7)),
    ("timedelta", lambda: timedelta(seconds=3)),
    ("complex", lambda: complex(1, 2)),
    ("IntEnum member, no converter", lambda: Level.HIGH),
    ("Enum member, no converter", lambda: Color.RED),
    ("namedtuple", lambda: Pair(1, 2)),
    ("OrderedDict", lambda: collections.OrderedDict(a=1)),
    ("deque", lambda: collections.deque([1])),
    ("other object", lambda: object()),
]


def _same(left: object, right: object) -> bool:
    if type(left) is not type(right):
        return False
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, float) and isinstance(right, float):
        return math.copysign(1, left) == math.copysign(1, right) and (
            left == right or (math.isnan(left) and math.isnan(right)))
    return left == right


def compute_cell(serializer: Serializer, make: Callable[[], object]) -> str:
    value = make()
    try:
        body = serializer.dumps(value)
    except SerializationError:
        return "rejected"
    try:
        result = serializer.loads(body, DecodeLimits())
    except ProtocolError:
        return "rejected on receipt"
    if _same(value, result):
        return "same"
    return f"`{type(result).__name__}`"


def compute_table() -> list[list[str]]:
    header = ["Python value sent", *(serializer.name for serializer in SERIALIZERS)]
    rows = [header]
    for label, make in ROWS:
        rows.append([label, *(compute_cell(serializer, make) for serializer in SERIALIZERS)])
    return rows


def render(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def parse_document_table() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(BEGIN) + len(BEGIN)
    table = text[start:text.index(END)].strip().splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    return [rows[0], *rows[2:]]


def test_document_lists_every_row() -> None:
    documented = [row[0] for row in parse_document_table()[1:]]

    assert documented == [label for label, _ in ROWS]


def test_document_header_names_serializers() -> None:
    assert parse_document_table()[0] == compute_table()[0]


def test_every_cell_matches() -> None:
    documented = {row[0]: row[1:] for row in parse_document_table()[1:]}
    names = [serializer.name for serializer in SERIALIZERS]

    for label, make in ROWS:
        for serializer, cell in zip(SERIALIZERS, documented[label], strict=True):
            actual = compute_cell(serializer, make)
            assert cell == actual, (
                f"docs/serializers.md says {serializer.name} delivers {cell} for {label!r}, "
                f"but it delivers {actual}; columns: {names}")


if __name__ == "__main__":
    print(render(compute_table()))
