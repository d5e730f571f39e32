"""What a remote caller may reach: ``@expose``, ``@oneway`` and the one name check.

Deny by default: only members marked with :func:`expose` (directly, or through an exposed
class) are reachable. :func:`check_member` is the single choke point that every member
name arriving from the wire passes through, and :func:`find_member` calls it. It needs
only the class, so the daemon runs it before creating any instance. It rejects
any name that is not a plain identifier, that starts with an underscore (private and
dunder names), that contains a dot (attribute traversal), or that is not exposed. All
of these are reported with the same message as an unknown name, so a caller cannot probe
what exists.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ember.kernel.errors import UsageError

__all__ = ["expose", "oneway", "is_exposed", "ExposedMembers", "exposed_members",
           "bind_member", "check_member", "find_member"]

_EXPOSED = "_ember_exposed"
_ONEWAY = "_ember_oneway"

T = TypeVar("T")


def expose(target: T) -> T:
    """Mark a class, method or property as reachable by remote callers.

    On a class, every public method and property it defines or inherits is exposed,
    but not what a subclass adds or overrides unless the subclass is marked too.
    On a method or property, only that member is. Names starting with ``_`` are never
    exposed, whatever the marking.
    """
    if isinstance(target, property):
        if target.fget is None:
            raise UsageError("@expose on a property needs a getter")
        setattr(target.fget, _EXPOSED, True)
        return target
    if isinstance(target, (staticmethod, classmethod)):
        setattr(target.__func__, _EXPOSED, True)
        return target
    if inspect.isclass(target) or callable(target):
        name = getattr(target, "__name__", "")
        if name.startswith("_") and not inspect.isclass(target):
            raise UsageError(
                f"cannot expose {name!r}: names starting with '_' are never reachable "
                "remotely; rename it"
            )
        setattr(target, _EXPOSED, True)
        return target
    raise UsageError(
        f"@expose applies to classes, methods and properties, not {type(target).__name__}"
    )


def oneway(method: T) -> T:
    """Mark a method as one-way (and exposed): callers do not wait for it to finish,
    and its return value and exceptions are discarded (the daemon logs exceptions)."""
    function = method.__func__ if isinstance(method, (staticmethod, classmethod)) else method
    if not callable(function) or inspect.isclass(function):
        raise UsageError(f"@oneway applies to methods, not {type(method).__name__}")
    setattr(function, _ONEWAY, True)
    expose(function)
    return method


def is_exposed(target: object) -> bool:
    if inspect.isclass(target):
        # Only the class's own mark counts. Through getattr a subclass would inherit
        # its base's mark and expose the methods it adds without @expose.
        return bool(vars(target).get(_EXPOSED, False))
    return bool(getattr(target, _EXPOSED, False))


@dataclass(frozen=True, slots=True)
class ExposedMembers:
    """The members of one class that remote callers may reach."""

    methods: frozenset[str]
    oneway: frozenset[str]
    properties: frozenset[str]
    writable_properties: frozenset[str]

    def as_metadata(self) -> dict[str, list[str]]:
        return {
            "methods": sorted(self.methods),
            "oneway": sorted(self.oneway),
            "properties": sorted(self.properties),
            "writable_properties": sorted(self.writable_properties),
        }


_cache: dict[type, ExposedMembers] = {}
_cache_lock = threading.Lock()


def exposed_members(cls: type) -> ExposedMembers:
    """Return (and cache) the exposed members of ``cls``."""
    cached = _cache.get(cls)
    if cached is not None:
        return cached

    marked_classes = [klass for klass in cls.__mro__ if is_exposed(klass)]
    methods: set[str] = set()
    oneway_methods: set[str] = set()
    properties: set[str] = set()
    writable: set[str] = set()

    for name, member in inspect.getmembers_static(cls):
        if name.startswith("_"):
            continue
        class_exposed = _is_exposed_by_class(cls, name, marked_classes)
        if isinstance(member, property):
            if member.fget is not None and (class_exposed or is_exposed(member.fget)):
                properties.add(name)
                if member.fset is not None:
                    writable.add(name)
            continue
        function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if not inspect.isfunction(function) and not inspect.ismethoddescriptor(function):
            continue
        if class_exposed or is_exposed(function):
            methods.add(name)
            if getattr(function, _ONEWAY, False):
                oneway_methods.add(name)

    members = ExposedMembers(frozenset(methods), frozenset(oneway_methods),
                             frozenset(properties), frozenset(writable))
    with _cache_lock:
        _cache[cls] = members
    return members


def _is_exposed_by_class(cls: type, name: str, marked_classes: list[type]) -> bool:
    """Tell whether a class marked with @expose covers member ``name`` of ``cls``.

    A marked class covers what it defines and what it inherits, but not what its
    subclasses define or override: those need a mark of their own.
    """
    owner = next((klass for klass in cls.__mro__ if name in vars(klass)), None)
    if owner is None:
        return False
    return any(issubclass(klass, owner) for klass in marked_classes)


def find_member(obj: object, object_id: str, name: object, kind: str) -> Callable[..., Any]:
    """Return a callable that performs the request, after checking ``name``.

    ``kind`` is ``"call"``, ``"get"`` or ``"set"``. The returned callable takes the call
    arguments; for ``"get"`` it takes none, for ``"set"`` the new value. Raises a plain
    :class:`AttributeError` with one uniform message for anything not reachable, so the
    caller receives it as the builtin type.
    """
    check_member(type(obj), object_id, name, kind)
    assert isinstance(name, str)
    return bind_member(obj, name, kind)


def bind_member(obj: object, name: str, kind: str) -> Callable[..., Any]:
    """Return the callable for ``name`` of ``obj`` without checking it.

    Only for names that :func:`check_member` has accepted for ``type(obj)``.
    """
    if kind == "call":
        method: Callable[..., Any] = getattr(obj, name)
        return method
    if kind == "get":
        return lambda: getattr(obj, name)
    return lambda value: setattr(obj, name, value)


def check_member(cls: type, object_id: str, name: object, kind: str) -> None:
    """Raise the uniform AttributeError unless ``name`` is reachable as ``kind`` on
    instances of ``cls``.

    Needs only the class, so the daemon checks a name before it creates a per-session or
    per-call instance: a rejected request runs no code of the object, not even its
    constructor.
    """
    members = exposed_members(cls)
    if not isinstance(name, str) or not _is_public_identifier(name):
        raise _unknown(object_id, name)

    if kind == "call":
        allowed = members.methods
    elif kind == "get":
        allowed = members.properties
    elif kind == "set":
        allowed = members.writable_properties
    else:
        raise ValueError(f"unknown member kind {kind!r}; expected 'call', 'get' or 'set'")
    if name not in allowed:
        raise _unknown(object_id, name)


def _is_public_identifier(name: str) -> bool:
    return name.isidentifier() and not name.startswith("_") and len(name) <= 200


def _unknown(object_id: str, name: object) -> AttributeError:
    shown = repr(name) if isinstance(name, str) and len(name) <= 200 else "<invalid name>"
    return AttributeError(f"object {object_id!r} has no exposed member {shown}")
