"""Converters: how an application teaches ember to carry a type of its own.

A converter turns a value of one class into plain data (``to_data``) and rebuilds the
value from that data (``from_data``). On the wire a converted value is a pair of the
converter's name and the plain data, in a form each serializer chooses. A receiver
rebuilds it only when a converter of that name is registered in its own process: the name
is a key into this table, never a module path to import.

Invariants:

- A converter matches the exact class it was registered for. A subclass is not
  converted, because its ``from_data`` would rebuild the base class and lose the subclass.
- Names and classes are unique. Registering the same converter again is a no-op, so a
  plugin may be loaded by several registries. A different converter under a taken name
  or class raises :class:`~ember.kernel.errors.UsageError`.
- ``from_data`` receives data from an untrusted peer. It must validate that data and
  raise ``ValueError`` or ``TypeError`` for bad data; serializers turn those into
  :class:`~ember.kernel.errors.ProtocolError`.
"""

from __future__ import annotations

import decimal
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any

from ember.kernel.errors import ProtocolError, UsageError

__all__ = [
    "CONVERTER_NAME_PATTERN",
    "Converter",
    "ConverterTable",
    "converters",
    "register_type",
]

#: Converter names are dotted Python identifiers of at most 128 characters, such as
#: ``"myapp.Color"``. They are written into every converted value, so they stay short.
CONVERTER_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_NAME_LENGTH = 128

# Types every bundled serializer carries itself. Some serializers check their own table
# before converters, so a converter for one of these would apply only in some of them.
_NATIVE_TYPES = frozenset({
    type(None), bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset,
    datetime, date, time, decimal.Decimal, uuid.UUID,
})


@dataclass(frozen=True, slots=True)
class Converter:
    """A rule that carries instances of ``cls`` as plain data under ``name``.

    ``to_data`` must return a value the serializers support natively (None, bool, int,
    float, str, bytes, list, tuple, dict and so on). ``from_data`` must rebuild an
    instance of ``cls`` from such a value.
    """

    cls: type
    name: str
    to_data: Callable[[Any], object]
    from_data: Callable[[Any], object]

    def __post_init__(self) -> None:
        if not isinstance(self.cls, type):
            raise UsageError(f"converter cls must be a class, got {self.cls!r}")
        if self.cls in _NATIVE_TYPES:
            raise UsageError(
                f"cannot register a converter for {self.cls.__qualname__}: every bundled "
                f"serializer carries it natively. Register a subclass or a wrapper class"
            )
        if (
            not isinstance(self.name, str)
            or len(self.name) > _MAX_NAME_LENGTH
            or not CONVERTER_NAME_PATTERN.fullmatch(self.name)
        ):
            raise UsageError(
                f"invalid converter name {self.name!r}: expected a dotted Python "
                f"identifier of at most {_MAX_NAME_LENGTH} characters, such as 'myapp.Color'"
            )
        for attribute in ("to_data", "from_data"):
            if not callable(getattr(self, attribute)):
                raise UsageError(
                    f"converter {self.name!r}: {attribute} must be callable, got "
                    f"{getattr(self, attribute)!r}"
                )


class ConverterTable:
    """The converters known to this process, looked up by exact class or by name.

    Lookups take no lock: they read an immutable snapshot that :meth:`add` replaces
    whole, so serializers may call them from many threads while another thread adds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_type: Mapping[type, Converter] = MappingProxyType({})
        self._by_name: Mapping[str, Converter] = MappingProxyType({})
        #: Incremented by every change, so serializers can cache tables built from this.
        self.version = 0

    def find_conflict(self, converter: Converter) -> str | None:
        """Describe why :meth:`add` would reject ``converter``, or return ``None``."""
        same_name = self._by_name.get(converter.name)
        same_type = self._by_type.get(converter.cls)
        if same_name == converter and same_type == converter:
            return None
        if same_name is not None:
            return (
                f"converter name {converter.name!r} is already registered for "
                f"{_qualified_name(same_name.cls)}; choose another name"
            )
        if same_type is not None:
            return (
                f"{_qualified_name(converter.cls)} already has a converter named "
                f"{same_type.name!r}; a class can have only one converter"
            )
        return None

    def add(self, converter: Converter) -> None:
        """Register ``converter``; raise UsageError if its name or class is taken.

        Adding a converter equal to the registered one is a no-op.
        """
        with self._lock:
            conflict = self.find_conflict(converter)
            if conflict is not None:
                raise UsageError(conflict)
            if self._by_name.get(converter.name) == converter:
                return

            by_type = dict(self._by_type)
            by_name = dict(self._by_name)
            by_type[converter.cls] = converter
            by_name[converter.name] = converter
            self._by_type = MappingProxyType(by_type)
            self._by_name = MappingProxyType(by_name)
            self.version += 1

    def remove(self, name: str) -> None:
        """Unregister the converter named ``name``; raise UsageError if there is none."""
        with self._lock:
            converter = self._by_name.get(name)
            if converter is None:
                raise UsageError(f"no converter named {name!r} is registered")
            by_type = dict(self._by_type)
            by_name = dict(self._by_name)
            del by_type[converter.cls]
            del by_name[name]
            self._by_type = MappingProxyType(by_type)
            self._by_name = MappingProxyType(by_name)
            self.version += 1

    def for_type(self, cls: type) -> Converter | None:
        """Return the converter registered for exactly ``cls``, or ``None``."""
        return self._by_type.get(cls)

    def types(self) -> tuple[type, ...]:
        """Return every class that has a converter."""
        return tuple(self._by_type)

    def names(self) -> list[str]:
        """Return the sorted names of the registered converters."""
        return sorted(self._by_name)

    def to_wire(self, value: object) -> tuple[str, object] | None:
        """Return ``(name, data)`` for a value of a registered class, else ``None``."""
        converter = self._by_type.get(type(value))
        if converter is None:
            return None
        return converter.name, converter.to_data(value)

    def from_wire(self, name: object, data: object) -> object:
        """Rebuild a converted value that came from a peer.

        Raises :class:`~ember.kernel.errors.ProtocolError` with code ``"unknown-type"``
        for a name no local converter has, and ``"bad-body"`` when ``from_data``
        rejects the data.
        """
        converter = self._by_name.get(name) if isinstance(name, str) else None
        if converter is None:
            shown = repr(name)[:_MAX_NAME_LENGTH + 2]
            raise ProtocolError(
                f"the peer sent a value of type {shown}, but no converter of that name is "
                f"registered here; register the same type on both sides with "
                f"ember.register_type",
                code="unknown-type",
            )
        try:
            return converter.from_data(data)
        except (ValueError, TypeError, LookupError) as error:
            raise ProtocolError(
                f"the peer sent invalid data for type {converter.name!r}: "
                f"{type(error).__name__}: {str(error)[:200]}",
                code="bad-body",
            ) from error


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: The process-wide table that every bundled serializer consults.
converters = ConverterTable()


def register_type(
    cls: type,
    *,
    name: str | None = None,
    to_data: Callable[[Any], object] | None = None,
    from_data: Callable[[Any], object] | None = None,
) -> Converter:
    """Teach every serializer of this process to carry instances of ``cls``.

    ``name`` defaults to ``"module.QualifiedName"`` of the class. For an
    :class:`enum.Enum` subclass the converters default to the member's value and
    ``cls(value)``; for other classes both ``to_data`` and ``from_data`` are required.
    Register the same type under the same name on both sides of a connection.
    Returns the converter; raises :class:`~ember.kernel.errors.UsageError` for a taken
    name or class.
    """
    import enum

    if not isinstance(cls, type):
        raise UsageError(f"register_type() expects a class, got {cls!r}")
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    if issubclass(cls, enum.Enum):
        to_data = to_data if to_data is not None else _enum_value
        from_data = from_data if from_data is not None else cls
    if to_data is None or from_data is None:
        raise UsageError(
            f"register_type({cls.__qualname__}) needs to_data and from_data: functions "
            f"that turn an instance into plain data and plain data back into an instance"
        )

    converter = Converter(cls=cls, name=name, to_data=to_data, from_data=from_data)
    converters.add(converter)
    return converter


def _enum_value(member: Any) -> object:
    return member.value
