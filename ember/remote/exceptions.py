"""Carrying exceptions across the wire.

A daemon turns an exception raised by a remote method into a plain dictionary that any
serializer can encode, and the proxy rebuilds it. Builtin exception types come back as
themselves with their arguments. Classes registered with :func:`register_exception` on
the proxy's side also come back as themselves, with their arguments and public
attributes. Anything else becomes a :class:`~ember.kernel.errors.RemoteError` that names
the remote type and carries its message. A class name from the wire is only ever looked up among the
builtin exception classes and the registered ones, never imported.
"""

from __future__ import annotations

import builtins
import threading
import traceback
from typing import Any

from ember.kernel.converters import CONVERTER_NAME_PATTERN
from ember.kernel.errors import ProtocolError, RemoteError, UsageError

__all__ = ["describe_exception", "rebuild_exception", "register_exception"]

# Builtin exceptions that may be raised again on the client. BaseException subclasses
# that are not Exceptions (SystemExit, KeyboardInterrupt, GeneratorExit) would stop the
# client program, so they come back as RemoteError instead.
_BUILTIN_EXCEPTIONS: dict[str, type[Exception]] = {
    name: value
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception)
    and not issubclass(value, BaseExceptionGroup)
}

_MAX_TEXT = 10_000

# Registered exception classes by wire name, and wire names by class. Replaced whole on
# every change, so readers need no lock.
_registered_by_name: dict[str, type[Exception]] = {}
_registered_names: dict[type, str] = {}
_registry_lock = threading.Lock()


def register_exception(cls: type[Exception], *, name: str | None = None) -> type[Exception]:
    """Let ``cls`` travel from a daemon to a proxy with its type, arguments and attributes.

    Register it under the same ``name`` (default ``"module.QualifiedName"``) on both
    sides. The proxy rebuilds an instance without calling ``__init__``: it sets ``args``
    and each public instance attribute the daemon sent, so the values must be ones the
    serializer can carry. Returns ``cls``, so it also works as a class decorator.
    """
    if not isinstance(cls, type) or not issubclass(cls, Exception):
        raise UsageError(f"register_exception() expects an Exception subclass, got {cls!r}")
    if name is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
    if not CONVERTER_NAME_PATTERN.fullmatch(name) or name in _BUILTIN_EXCEPTIONS:
        raise UsageError(
            f"invalid exception name {name!r}: expected a dotted Python identifier that is "
            f"not the name of a builtin exception, such as 'myapp.QuotaExceeded'"
        )

    global _registered_by_name, _registered_names
    with _registry_lock:
        holder = _registered_by_name.get(name)
        if holder is not None and holder is not cls:
            raise UsageError(
                f"exception name {name!r} is already registered for "
                f"{holder.__module__}.{holder.__qualname__}; choose another name"
            )
        by_name = dict(_registered_by_name)
        names = dict(_registered_names)
        by_name[name] = cls
        names[cls] = name
        _registered_by_name, _registered_names = by_name, names
    return cls


def describe_exception(error: BaseException, *, include_traceback: bool) -> dict[str, Any]:
    """Return a serializer-neutral description of ``error``."""
    cls = type(error)
    module = cls.__module__
    registered_name = _registered_names.get(cls)
    message = _truncate(str(error))
    if registered_name is not None:
        # Registered classes send every argument and public attribute; if the
        # serializer cannot carry them, the daemon resends the message alone.
        attributes = {key: value for key, value in vars(error).items()
                      if key.isidentifier() and not key.startswith("_")}
        return _with_traceback({
            "type": registered_name, "message": message, "args": list(error.args),
            "attributes": attributes,
        }, error, include_traceback)

    qualified = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    # Arguments travel only when every one is a plain value, so the client rebuilds the
    # exception exactly or falls back to its message, never to a partial argument list.
    args = list(error.args) if all(_is_plain(arg) for arg in error.args) else [message]
    description: dict[str, Any] = {"type": qualified, "message": message, "args": args}
    return _with_traceback(description, error, include_traceback)


def _with_traceback(description: dict[str, Any], error: BaseException,
                    include_traceback: bool) -> dict[str, Any]:
    if include_traceback:
        description["traceback"] = _truncate(
            "".join(traceback.format_exception(error)), limit=100_000
        )
    return description


def rebuild_exception(description: object) -> Exception:
    """Turn a description from the wire back into an exception to raise."""
    if not isinstance(description, dict):
        raise ProtocolError(
            f"exception description must be a map, got {type(description).__name__}",
            code="bad-exception",
        )
    remote_type = description.get("type")
    message = description.get("message", "")
    args = description.get("args", [])
    remote_traceback = description.get("traceback")
    if not isinstance(remote_type, str) or not isinstance(message, str):
        raise ProtocolError("exception description lacks a type or message",
                            code="bad-exception")
    if not isinstance(args, (list, tuple)):
        args = [message]
    if remote_traceback is not None and not isinstance(remote_traceback, str):
        remote_traceback = None

    registered = _registered_by_name.get(remote_type)
    if registered is not None:
        return _rebuild_registered(registered, args, description.get("attributes"),
                                   remote_traceback)

    builtin = _BUILTIN_EXCEPTIONS.get(remote_type)
    if builtin is not None:
        try:
            error = builtin(*args)
        except Exception:  # noqa: BLE001 - a constructor that rejects the args
            error = builtin(message)
        if remote_traceback:
            error.add_note("remote traceback:\n" + remote_traceback)
        error.remote_traceback = remote_traceback  # type: ignore[attr-defined]
        return error
    return RemoteError(message, remote_type=remote_type, remote_traceback=remote_traceback)


def _rebuild_registered(cls: type[Exception], args: list[Any] | tuple[Any, ...],
                        attributes: object, remote_traceback: str | None) -> Exception:
    # No constructor runs: a custom __init__ may need arguments the wire does not carry.
    error = cls.__new__(cls)
    error.args = tuple(args)
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            if isinstance(key, str) and key.isidentifier() and not key.startswith("_"):
                try:
                    setattr(error, key, value)
                except (AttributeError, TypeError):
                    pass  # a read-only property of the class; the remote value is dropped
    if remote_traceback:
        error.add_note("remote traceback:\n" + remote_traceback)
    error.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    return error


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, bytes))


def _truncate(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "... (truncated)"
