"""The serializer contract: how a plugin turns values into bytes and back.

A serializer is stateless and shared between threads. Its ``wire_id`` is a permanent
number written into every frame it encodes; once published, an id never changes meaning,
because peers decide what they may decode from that number alone.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["DecodeLimits", "Serializer", "PLUGIN_NAME_PATTERN", "MAX_WIRE_ID"]

# Plugin names appear in URIs, configuration and environment variables, so they are kept
# to lowercase ASCII letters, digits, '_' and '-', starting with a letter.
PLUGIN_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")

# Wire id 0 is reserved for the protocol's own control messages; serializer ids are
# 1..MAX_WIRE_ID and fit the two-byte frame field.
MAX_WIRE_ID = 0xFFFF


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds a serializer enforces while decoding untrusted bytes.

    ``max_depth`` is the deepest allowed container nesting; ``max_size`` the largest
    encoded body in bytes (the frame layer has already checked the body against it, and
    a serializer uses it to reject declared lengths inside the body before allocating).

    ``max_items`` is the most values one body may decode to. Every container, list
    item, dict key, dict value and scalar counts as one, so ``[1, {"a": 2}]`` is five
    items. A serializer may also count values of its own encoding (a CBOR tag, a pickle
    call's argument tuple), but never fewer than the values it builds. It bounds the
    memory of a body that is small on the wire but builds millions of objects, which
    ``max_size`` alone does not: four bytes of CBOR decode to four empty dicts.
    """

    max_depth: int = 64
    max_size: int = 64 * 1024 * 1024
    max_items: int = 250_000

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {self.max_depth}")
        if self.max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {self.max_size}")
        if self.max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {self.max_items}")


class Serializer(ABC):
    """Encodes call arguments and results to bytes and decodes them back.

    Subclasses set the class attributes and implement :meth:`dumps` and :meth:`loads`.
    Both methods must be safe to call from many threads at once.
    """

    #: Registry name, matching :data:`PLUGIN_NAME_PATTERN` (for example ``"cbor"``).
    name: ClassVar[str]
    #: Permanent wire id in ``1..MAX_WIRE_ID``, unique among installed serializers.
    wire_id: ClassVar[int]
    #: ``False`` for a serializer that can run code while decoding (pickle). The
    #: registry refuses to compose such a serializer unless its quarantine is lifted.
    is_safe: ClassVar[bool] = True

    @abstractmethod
    def dumps(self, value: object) -> bytes:
        """Encode ``value`` to bytes.

        Must raise :class:`~ember.kernel.errors.SerializationError` naming the type of
        any value it cannot encode, and must not return a partial encoding.
        """

    @abstractmethod
    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        """Decode one complete value from ``data``, which comes from an untrusted peer.

        Must raise :class:`~ember.kernel.errors.ProtocolError` for malformed input, for
        nesting deeper than ``limits.max_depth``, for more values than
        ``limits.max_items``, for declared lengths that exceed the data or
        ``limits.max_size``, and for trailing bytes. The item count must be checked
        before the values are built, or the build stopped as soon as the count is
        exceeded. Must never import modules, call constructors chosen by the data, or
        allocate memory in proportion to a length the data declares before checking it.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} wire_id={self.wire_id}>"
