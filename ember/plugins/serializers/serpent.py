"""The ``serpent`` serializer: Python literal text, written with the serpent library.

serpent writes a value as the source text of a Python literal, so any language with a
Python-literal parser can read it. The writer here is serpent's, with three changes:

- Values that a literal cannot express, or that parse slowly, keep their type through a
  tagged tuple ``("__ember_type__", name, data)``. These are bytes and bytearray (as
  base64 text, because a bytes literal of binary data parses several times slower),
  frozenset, the empty set, NaN, datetime,
  date, time, Decimal, UUID and every type with a registered converter. Plain serpent
  would turn most of them into strings. A tuple of three items whose first item is that
  marker string is reserved and rejected by ``dumps``.
- bytes never become serpent's base64 dictionary, which a receiver could not tell from
  a dict the application sent.
- Objects of other classes are rejected instead of being written as their attribute
  dictionary, and serpent's process-wide class registry is not consulted.

Reading never calls ``eval``. The text is parsed by :func:`ast.parse` and the tree is
converted by the reader below, which accepts only literal nodes. Before parsing, the
body is checked for size, for bracket nesting deeper than ``limits.max_depth`` and for
decimal integer literals longer than :data:`MAX_INT_DIGITS`, because the parser itself
spends time and memory on both before any check of ours could run.
"""

from __future__ import annotations

import ast
import base64
import binascii
import decimal
import itertools
import math
import re
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import serpent

from ember.kernel.converters import converters
from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.hookspecs import hookimpl
from ember.kernel.serializer import DecodeLimits, Serializer

__all__ = ["MARKER", "MAX_INT_DIGITS", "SerpentSerializer", "ember_serializers"]

#: First item of a tagged tuple.
MARKER = "__ember_type__"

#: Most digits of a decimal integer literal. CPython 3.11 converts decimal text to int in
#: quadratic time; its own default limit (sys.get_int_max_str_digits) is 4300.
MAX_INT_DIGITS = 4300

# Integers with more bits than this are written in hexadecimal, which converts in
# linear time and is not subject to the digit limit. 14,000 bits is about 4,214 digits.
_MAX_DECIMAL_INT_BITS = 14_000

# Deepest nesting dumps writes. CPython 3.11's tokenizer rejects more than 200 nested
# brackets, so deeper text could never be read back.
_MAX_ENCODE_DEPTH = 190

_HEADER = "# serpent utf-8 python3.2\n"

# Tag names of the built-in types. They contain '@', so no converter name (a dotted
# identifier) can collide with them.
_BYTES = "@bytes"
_BYTEARRAY = "@bytearray"
_FROZENSET = "@frozenset"
_SET = "@set"
_FLOAT = "@float"
_DATETIME = "@datetime"
_DATE = "@date"
_TIME = "@time"
_DECIMAL = "@decimal"
_UUID = "@uuid"

_MICROSECOND = timedelta(microseconds=1)
_MAX_OFFSET_MICROSECONDS = 24 * 60 * 60 * 1_000_000


# --- Writing ----------------------------------------------------------------------------


class _Writer(serpent.Serializer):  # type: ignore[misc]
    """serpent's writer with ember's type rules; one instance per ``dumps`` call."""

    def __init__(self) -> None:
        super().__init__(indent=False, module_in_classname=True)

    def serialize(self, obj: object) -> bytes:
        out = [_HEADER]
        self.serialized_obj_ids: set[int] = set()
        self._serialize(obj, out, 0)
        return "".join(out).encode("utf-8")

    def _serialize(self, obj: object, out: list[str], level: int) -> None:
        if level > _MAX_ENCODE_DEPTH:
            raise SerializationError(
                f"cannot encode value: it nests deeper than {_MAX_ENCODE_DEPTH} levels, "
                f"which Python literal text cannot carry. Flatten it."
            )
        kind = type(obj)
        writer = _WRITERS.get(kind)
        if writer is not None:
            writer(self, obj, out, level)
            return

        tagged = converters.to_wire(obj)
        if tagged is not None:
            self._write_tagged(tagged[0], tagged[1], out, level)
            return
        self._write_subclass(obj, out, level)

    def _check_hashable_type(self, t: type) -> None:
        # serpent allows only a few key types; ember allows every hashable key, because
        # tagged values (datetime, UUID...) are tuples and stay hashable when read.
        return

    def _write_tagged(self, name: str, data: object, out: list[str], level: int) -> None:
        out.append(f"({MARKER!r},{name!r},")
        self._serialize(data, out, level + 1)
        out.append(")")

    def _write_subclass(self, obj: object, out: list[str], level: int) -> None:
        # Subclasses of plain types (IntEnum, StrEnum, OrderedDict, namedtuple) travel
        # as their base type, as in the cbor serializer.
        for base in _BASE_TYPES:
            if isinstance(obj, base):
                self._serialize(base(obj), out, level)
                return
        raise SerializationError(_describe_unsupported(obj))

    def _write_int(self, value: int, out: list[str], level: int) -> None:
        if value.bit_length() > _MAX_DECIMAL_INT_BITS:
            out.append(hex(value))
        else:
            out.append(repr(value))

    def _write_float(self, value: float, out: list[str], level: int) -> None:
        if math.isfinite(value):
            out.append(repr(value))
        elif math.isnan(value):
            self._write_tagged(_FLOAT, "nan", out, level)
        else:
            # A literal that overflows to infinity: there is no literal for inf.
            out.append("1e999" if value > 0 else "-1e999")

    def _write_tuple(self, value: tuple[Any, ...], out: list[str], level: int) -> None:
        if len(value) == 3 and type(value[0]) is str and value[0] == MARKER:
            raise SerializationError(
                f"cannot encode a tuple of three items that starts with {MARKER!r}: the "
                f"serpent serializer reserves that form for typed values. Use a list."
            )
        self.ser_builtins_tuple(value, out, level)

    def _write_set(self, value: set[Any], out: list[str], level: int) -> None:
        if value:
            self.ser_builtins_set(value, out, level)
        else:
            # Python has no literal for an empty set.
            self._write_tagged(_SET, [], out, level)

    def _write_datetime(self, value: datetime, out: list[str], level: int) -> None:
        local = value.replace(tzinfo=None).isoformat()
        self._write_tagged(_DATETIME, [local, _offset_microseconds(value.utcoffset())],
                           out, level)

    def _write_time(self, value: time, out: list[str], level: int) -> None:
        local = value.replace(tzinfo=None).isoformat()
        self._write_tagged(_TIME, [local, _offset_microseconds(value.utcoffset())],
                           out, level)


def _offset_microseconds(offset: timedelta | None) -> int | None:
    return None if offset is None else offset // _MICROSECOND


def _base64(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


def _write_repr(writer: _Writer, value: object, out: list[str], level: int) -> None:
    out.append(repr(value))


_Write = Callable[[_Writer, Any, list[str], int], None]

# Looked up by exact type; anything else goes to converters, then to _write_subclass.
_WRITERS: dict[type, _Write] = {
    str: _write_repr,
    bool: _write_repr,
    type(None): _write_repr,
    bytes: lambda w, v, o, lv: w._write_tagged(_BYTES, _base64(v), o, lv),
    int: _Writer._write_int,
    float: _Writer._write_float,
    list: serpent.Serializer.ser_builtins_list,
    dict: serpent.Serializer.ser_builtins_dict,
    tuple: _Writer._write_tuple,
    set: _Writer._write_set,
    frozenset: lambda w, v, o, lv: w._write_tagged(_FROZENSET, list(v), o, lv),
    bytearray: lambda w, v, o, lv: w._write_tagged(_BYTEARRAY, _base64(v), o, lv),
    datetime: _Writer._write_datetime,
    date: lambda w, v, o, lv: w._write_tagged(_DATE, v.isoformat(), o, lv),
    time: _Writer._write_time,
    decimal.Decimal: lambda w, v, o, lv: w._write_tagged(_DECIMAL, str(v), o, lv),
    uuid.UUID: lambda w, v, o, lv: w._write_tagged(_UUID, v.hex, o, lv),
}

# bool cannot be subclassed; str before the others because StrEnum is also an Enum.
_BASE_TYPES: tuple[type, ...] = (int, str, float, bytes, dict, list, tuple, set, frozenset)


def _describe_unsupported(value: object) -> str:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}"
    )
    return (
        f"cannot encode {name}: the serpent serializer supports None, bool, int, float, "
        f"str, bytes, bytearray, list, tuple, dict, set, frozenset, datetime, date, time, "
        f"Decimal, UUID and types registered with ember.register_type. Convert the value "
        f"or register its type."
    )


# --- Reading ----------------------------------------------------------------------------

# A string or bytes literal on one line, closed or running to the end of the line. The
# possessive repeat and the optional closing quote make one pass over the text enough,
# whatever the input. Text inside it cannot open a bracket.
_STRING_LITERAL = re.compile(
    r"""[bBrRuU]{0,2}(?:'(?:[^'\\\n]|\\.)*+'?|"(?:[^"\\\n]|\\.)*+"?)"""
)
_NOT_BRACKET = re.compile(r"[^\[\](){}]+")
_LONG_DIGIT_RUN = re.compile(rf"[0-9_]{{{MAX_INT_DIGITS + 1},}}")
_BRACKET_DELTA = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}

# The item scan below reduces the text to one character per token and then counts
# separators. A comment runs to the end of its line; string literals are replaced first,
# so a '#' inside one is gone by then.
_COMMENT = re.compile(r"#[^\n]*")
# A Python number literal that does not continue a name or follow a string.
_NUMBER = re.compile(
    r"(?<![\w'])(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)"
)
_CONSTANT_NAME = re.compile(r"\b(?:True|False|None)\b")
# A letter or underscore: part of a name, or of a number such as 1e-05, 0x1F or 1_000.
_LETTER = re.compile(r"[^\W\d]")
# After the replacements, a literal contains only these characters.
_NOT_LITERAL = re.compile(r"[^0-9.'\[\](){},:+\-\s]")
_WHITESPACE = re.compile(r"\s+")
# A sign that follows a value is a binary operator, which no literal contains.
_BINARY_SIGN = re.compile(r"(?<=[^\[({,:])[+-]")


def _check_text(text: str, max_depth: int) -> None:
    """Reject nesting and integer literals the parser would spend too much on.

    The scan overestimates nesting when brackets sit inside a triple-quoted string,
    which serpent never writes, and never underestimates it.
    """
    opening = text.count("(") + text.count("[") + text.count("{")
    digit_limit = sys.get_int_max_str_digits()
    check_digits = digit_limit == 0 or digit_limit > MAX_INT_DIGITS
    if opening <= max_depth and not check_digits:
        return

    code = _STRING_LITERAL.sub("''", text)
    brackets = _NOT_BRACKET.sub("", code)
    depth = max(itertools.accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)
    if depth > max_depth:
        raise ProtocolError(
            f"serpent body nests {depth} brackets deep, deeper than max_depth={max_depth}",
            code="bad-body",
        )
    # The interpreter's own limit already rejects long literals when it is at or below
    # ours; this scan covers a program that raised or disabled it.
    if check_digits and _LONG_DIGIT_RUN.search(code):
        raise ProtocolError(
            f"serpent body contains an integer literal of more than {MAX_INT_DIGITS} "
            f"decimal digits; send larger integers in hexadecimal",
            code="bad-body",
        )


def _check_item_count(text: str, max_items: int) -> None:
    """Reject text that would parse to more than ``max_items`` values, before parsing.

    ast.parse builds a syntax tree of about 1 KB per list element before the reader can
    count anything, so the count comes from the text. The scan replaces each string
    literal with ``'``, each number and each of the names True, False and None with
    ``0``, removes comments, and then rejects anything a literal cannot contain: other names,
    operators, backslashes, a sign after a value and two adjacent strings (which
    serpent never writes, and which is how a triple-quoted or continued string would
    hide text from the scan). What remains has one value per separator: the count is
    1 + opening brackets + commas + colons, less one for each empty container and each
    trailing comma. That count is exact for text that serpent writes, and larger than
    the real one for text with redundant brackets or a comment. Values inside a tagged
    tuple (bytes, datetime...) count as the tuple's three items.
    """
    code = _STRING_LITERAL.sub("'", text)
    code = _COMMENT.sub("", code)
    code = _CONSTANT_NAME.sub("0", code)
    # Replacing every number costs more than the rest of the scan, and only numbers
    # with letters need it.
    if _LETTER.search(code):
        code = _NUMBER.sub("0", code)
    if _NOT_LITERAL.search(code):
        raise _invalid("it contains a name, operator or backslash outside a literal")

    compact = _WHITESPACE.sub("", code)
    if "''" in compact:
        raise _invalid("two string literals follow each other without a separator")
    if _BINARY_SIGN.search(compact):
        raise _invalid("a sign follows a value instead of preceding a number")

    opening = compact.count("[") + compact.count("(") + compact.count("{")
    separators = compact.count(",") + compact.count(":")
    empty = compact.count("[]") + compact.count("()") + compact.count("{}")
    trailing = compact.count(",]") + compact.count(",)") + compact.count(",}")
    count = 1 + opening + separators - empty - trailing
    if count > max_items:
        raise ProtocolError(
            f"serpent body contains {count} values, more than max_items={max_items} "
            f"(each container, dict key, dict value and scalar is one); send less data "
            f"per call, or raise the max_items setting on the receiving side",
            code="bad-body",
        )


class _Reader:
    """Converts a parsed literal to values, checking depth and duplicate keys."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth

    def read(self, node: ast.AST, depth: int) -> Any:
        kind = type(node)
        if kind is ast.Constant:
            return self._constant(node)  # type: ignore[arg-type]
        if kind is ast.UnaryOp:
            return self._signed(node)  # type: ignore[arg-type]

        depth += 1
        if depth > self.max_depth:
            raise ProtocolError(
                f"serpent value nests deeper than max_depth={self.max_depth}",
                code="bad-body",
            )
        if kind is ast.List:
            return [self.read(item, depth) for item in node.elts]  # type: ignore[attr-defined]
        if kind is ast.Tuple:
            return self._tuple(node, depth)  # type: ignore[arg-type]
        if kind is ast.Dict:
            return self._dict(node, depth)  # type: ignore[arg-type]
        if kind is ast.Set:
            return self._set(node, depth)  # type: ignore[arg-type]
        raise _invalid(f"{kind.__name__} is not a literal")

    def _constant(self, node: ast.Constant) -> Any:
        value = node.value
        if type(value) in (str, int, float, bytes, bool) or value is None:
            return value
        raise _invalid(f"{type(value).__name__} constants are not accepted")

    def _signed(self, node: ast.UnaryOp) -> Any:
        operand = node.operand
        if (
            type(node.op) in (ast.USub, ast.UAdd)
            and isinstance(operand, ast.Constant)
            and isinstance(operand.value, (int, float))
            and type(operand.value) is not bool
        ):
            number = operand.value
            return -number if type(node.op) is ast.USub else number
        raise _invalid("only a sign before a number is accepted")

    def _tuple(self, node: ast.Tuple, depth: int) -> Any:
        elements = node.elts
        first = elements[0] if len(elements) == 3 else None
        if isinstance(first, ast.Constant) and first.value == MARKER:
            name = self.read(elements[1], depth)
            data = self.read(elements[2], depth)
            return _restore(name, data)
        return tuple([self.read(item, depth) for item in elements])

    def _dict(self, node: ast.Dict, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise _invalid("'**' unpacking is not a literal")
            key = self.read(key_node, depth)
            try:
                result[key] = self.read(value_node, depth)
            except TypeError:
                raise _invalid("a dict key is unhashable") from None
        if len(result) != len(node.keys):
            raise ProtocolError("serpent dict contains the same key twice", code="bad-body")
        return result

    def _set(self, node: ast.Set, depth: int) -> set[Any]:
        try:
            result = {self.read(item, depth) for item in node.elts}
        except TypeError:
            raise _invalid("a set item is unhashable") from None
        if len(result) != len(node.elts):
            raise ProtocolError("serpent set contains the same item twice", code="bad-body")
        return result


def _invalid(detail: str) -> ProtocolError:
    return ProtocolError(f"invalid serpent body: {detail}", code="bad-body")


def _restore(name: object, data: object) -> object:
    """Rebuild a tagged value; every failure is the peer's."""
    builtin = _RESTORERS.get(name) if isinstance(name, str) else None
    if builtin is None:
        return converters.from_wire(name, data)
    try:
        return builtin(data)
    except (ValueError, TypeError, OverflowError, decimal.InvalidOperation) as error:
        raise ProtocolError(
            f"invalid serpent body: bad data for {name}: {type(error).__name__}",
            code="bad-body",
        ) from None


def _require(data: object, kind: type) -> Any:
    if type(data) is not kind:
        raise TypeError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data


def _restore_float(data: object) -> float:
    if data != "nan":
        raise ValueError("only 'nan' is tagged")
    return math.nan


def _local_and_offset(data: object) -> tuple[str, timezone | None]:
    pair = _require(data, list)
    if len(pair) != 2:
        raise ValueError("expected [text, offset]")
    text, offset = pair
    _require(text, str)
    if offset is None:
        return text, None
    _require(offset, int)
    if not -_MAX_OFFSET_MICROSECONDS < offset < _MAX_OFFSET_MICROSECONDS:
        raise ValueError("offset out of range")
    return text, timezone(timedelta(microseconds=offset))


def _restore_datetime(data: object) -> datetime:
    text, offset = _local_and_offset(data)
    local = datetime.fromisoformat(text)
    if local.tzinfo is not None:
        raise ValueError("offset inside the text")
    return local if offset is None else local.replace(tzinfo=offset)


def _restore_time(data: object) -> time:
    text, offset = _local_and_offset(data)
    local = time.fromisoformat(text)
    if local.tzinfo is not None:
        raise ValueError("offset inside the text")
    return local if offset is None else local.replace(tzinfo=offset)


def _restore_decimal(data: object) -> decimal.Decimal:
    text = _require(data, str)
    # Bounded like the cbor serializer's MAX_DECIMAL_DIGITS; Decimal parses text in
    # linear time, but arithmetic on huge coefficients by the receiver would not be.
    if len(text) > 1100:
        raise ValueError("Decimal text too long")
    return decimal.Decimal(text)


def _restore_bytes(data: object) -> bytes:
    try:
        return base64.b64decode(_require(data, str), validate=True)
    except binascii.Error as error:
        raise ValueError("invalid base64") from error


_RESTORERS: dict[str, Callable[[object], object]] = {
    _BYTES: _restore_bytes,
    _BYTEARRAY: lambda data: bytearray(_restore_bytes(data)),
    _FROZENSET: lambda data: frozenset(_require(data, list)),
    _SET: lambda data: set(_require(data, list)),
    _FLOAT: _restore_float,
    _DATETIME: _restore_datetime,
    _DATE: lambda data: date.fromisoformat(_require(data, str)),
    _TIME: _restore_time,
    _DECIMAL: _restore_decimal,
    _UUID: lambda data: uuid.UUID(hex=_require(data, str)),
}


# --- The plugin -------------------------------------------------------------------------


class SerpentSerializer(Serializer):
    """Python literal text through serpent; slower than cbor, readable by any Python."""

    name = "serpent"
    wire_id = 2
    is_safe = True

    def dumps(self, value: object) -> bytes:
        try:
            result: bytes = _Writer().serialize(value)
        except SerializationError:
            raise
        except RecursionError as error:
            raise SerializationError("cannot encode value: it nests too deeply") from error
        except UnicodeEncodeError as error:
            raise SerializationError(
                "cannot encode a str that contains a lone surrogate: serpent text must be "
                "valid UTF-8. Encode such text to bytes with errors='surrogatepass' first."
            ) from error
        except (TypeError, ValueError) as error:
            # serpent raises these for circular references and unhashable set items.
            raise SerializationError(f"cannot encode value as serpent: {error}") from error
        return result

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        size = len(data)
        if size > limits.max_size:
            raise ProtocolError(
                f"serpent body of {size} bytes exceeds the limit of {limits.max_size} bytes",
                code="bad-body",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("serpent body is not valid UTF-8", code="bad-body") from None
        if "\x00" in text:
            raise ProtocolError("serpent body contains a NUL character", code="bad-body")

        # A value takes at least one character, so shorter text cannot exceed max_items
        # and skips the scan.
        if len(text) > limits.max_items:
            _check_item_count(text, limits.max_items)
        _check_text(text, limits.max_depth)
        try:
            tree = ast.parse(text, mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError) as error:
            # The parser's messages quote the peer's text, so only the kind is repeated.
            raise ProtocolError(
                f"serpent body is not a Python literal ({type(error).__name__})",
                code="bad-body",
            ) from None

        try:
            return _Reader(limits.max_depth).read(tree.body, 0)
        except RecursionError:
            raise ProtocolError("serpent body nests too deeply", code="bad-body") from None


@hookimpl
def ember_serializers() -> list[Serializer]:
    return [SerpentSerializer()]
