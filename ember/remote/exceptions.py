"""Carrying exceptions across the wire.

A daemon turns an exception raised by a remote method into a plain dictionary that any
serializer can encode. The proxy rebuilds it: builtin exception types come back as
themselves with their arguments; anything else becomes a
:class:`~ember.kernel.errors.RemoteError` naming the remote type. A class name from the
wire is only ever looked up among the builtin exception classes, never imported.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

from ember.kernel.errors import ProtocolError, RemoteError

__all__ = ["describe_exception", "rebuild_exception"]

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


def describe_exception(error: BaseException, *, include_traceback: bool) -> dict[str, Any]:
    """Return a serializer-neutral description of ``error``."""
    cls = type(error)
    module = cls.__module__
    qualified = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    message = _truncate(str(error))
    # Arguments travel only when every one is a plain value, so the client rebuilds the
    # exception exactly or falls back to its message, never to a partial argument list.
    args = list(error.args) if all(_is_plain(arg) for arg in error.args) else [message]
    description: dict[str, Any] = {"type": qualified, "message": message, "args": args}
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


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, bytes))


def _truncate(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "... (truncated)"
