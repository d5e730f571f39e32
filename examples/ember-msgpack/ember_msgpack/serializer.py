"""A MessagePack serializer for ember, through the msgpack package.

Types: None, bool, int from -2**63 to 2**64 - 1, float, str, bytes, list and dict (keys
of any of these hashable types). Everything else, tuples included, is rejected by
``dumps`` with SerializationError, because MessagePack would turn a tuple into a list
and the receiver would get another type than the sender sent.

Decoding untrusted bytes: msgpack has no nesting limit of its own, so :func:`scan`
walks the item headers first, in Python. It rejects nesting deeper than
``limits.max_depth``, lengths and counts that the remaining bytes cannot hold,
extension types, the reserved byte 0xc1, and bytes after the value, all before
msgpack allocates anything. The walk costs time in proportion to the number of items,
which is the price of the depth limit.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ember.kernel.errors import ProtocolError, SerializationError
from ember.kernel.serializer import DecodeLimits, Serializer

__all__ = ["MsgpackSerializer", "scan"]

# Sizes of the length or value field that follows a one-byte type code.
_FIXED_SIZES = {
    0xCA: 4, 0xCB: 8,  # float 32, float 64
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,  # uint 8..64
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,  # int 8..64
}
_LENGTH_SIZES = {
    0xC4: 1, 0xC5: 2, 0xC6: 4,  # bin 8, 16, 32
    0xD9: 1, 0xDA: 2, 0xDB: 4,  # str 8, 16, 32
}
_ARRAY_SIZES = {0xDC: 2, 0xDD: 4}
_MAP_SIZES = {0xDE: 2, 0xDF: 4}
_EXTENSION_CODES = frozenset({0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8})
_UNSIGNED = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}


def scan(data: bytes, max_depth: int) -> None:
    """Check the item structure of ``data``; raise ProtocolError for anything unsafe."""
    position = 0
    end = len(data)
    # Items still expected in each open container, innermost last.
    pending = [1]

    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if position >= end:
            raise ProtocolError("MessagePack body ends inside a value", code="bad-body")
        code = data[position]
        position += 1

        children = 0
        if code <= 0x7F or code >= 0xE0 or code in (0xC0, 0xC2, 0xC3):
            continue  # fixint, nil, false, true
        if 0x80 <= code <= 0x8F:
            children = 2 * (code & 0x0F)
        elif 0x90 <= code <= 0x9F:
            children = code & 0x0F
        elif 0xA0 <= code <= 0xBF:
            position += code & 0x1F
        elif code in _FIXED_SIZES:
            position += _FIXED_SIZES[code]
        elif code in _LENGTH_SIZES:
            length, position = _read_length(data, position, _LENGTH_SIZES[code])
            position += length
        elif code in _ARRAY_SIZES:
            children, position = _read_length(data, position, _ARRAY_SIZES[code])
        elif code in _MAP_SIZES:
            count, position = _read_length(data, position, _MAP_SIZES[code])
            children = 2 * count
        elif code in _EXTENSION_CODES:
            raise ProtocolError(f"MessagePack extension type 0x{code:02x} is not accepted",
                                code="bad-body")
        else:
            raise ProtocolError(f"invalid MessagePack type byte 0x{code:02x}", code="bad-body")

        if position > end:
            raise ProtocolError("MessagePack body ends inside a value, or a declared "
                                "length exceeds the body", code="bad-body")
        if children:
            # Every item takes at least one byte, so a count the rest cannot hold is a lie.
            if children > end - position:
                raise ProtocolError(f"MessagePack container declares {children} items but "
                                    f"only {end - position} bytes follow", code="bad-body")
            if len(pending) > max_depth:
                raise ProtocolError(f"MessagePack value nests deeper than "
                                    f"max_depth={max_depth}", code="bad-body")
            pending.append(children)

    if position != end:
        raise ProtocolError("MessagePack body continues after its value; a body contains "
                            "exactly one value", code="bad-body")


def _read_length(data: bytes, position: int, size: int) -> tuple[int, int]:
    if position + size > len(data):
        raise ProtocolError("MessagePack body ends inside a length field", code="bad-body")
    (value,) = _UNSIGNED[size].unpack_from(data, position)
    return int(value), position + size


def _reject_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ProtocolError("MessagePack map contains the same key twice", code="bad-body")
    return result


def _refuse(value: object) -> object:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}")
    raise SerializationError(
        f"cannot encode {name}: the msgpack serializer supports None, bool, int, float, "
        f"str, bytes, list and dict. Convert the value to one of these."
    )


class MsgpackSerializer(Serializer):
    """MessagePack through the msgpack package, with a depth and structure check."""

    name = "msgpack"
    # Chosen at random from the high range to make a clash with another plugin unlikely.
    wire_id = 0x6D73
    is_safe = True

    def dumps(self, value: object) -> bytes:
        try:
            data: bytes = msgpack.packb(value, use_bin_type=True, strict_types=True,
                                        default=_refuse)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as error:
            raise SerializationError(f"cannot encode value as MessagePack: {error}") from error
        return data

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        if len(data) > limits.max_size:
            raise ProtocolError(f"MessagePack body of {len(data)} bytes exceeds the limit of "
                                f"{limits.max_size} bytes", code="bad-body")
        scan(data, limits.max_depth)
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False,
                                   object_pairs_hook=_reject_duplicates)
        except ProtocolError:
            raise
        except UnicodeDecodeError:
            raise ProtocolError("MessagePack string is not valid UTF-8",
                                code="bad-body") from None
        except TypeError as error:
            raise ProtocolError(f"MessagePack map key is not hashable: {error}",
                                code="bad-body") from None
        except (ValueError, msgpack.UnpackException) as error:
            raise ProtocolError(f"invalid MessagePack body: {type(error).__name__}",
                                code="bad-body") from None
