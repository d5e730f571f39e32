"""The call context: who is calling, visible to the remote method being executed.

Inside a method called by the daemon, :func:`current_call` returns a
:class:`CallContext` with the peer's address, the identity its authenticator proved (or
``None``) and the transport's peer details (for a Unix socket: uid, gid, pid). A method
can use it to authorize per caller::

    @expose
    def delete(self, key):
        if current_call().identity != "admin":
            raise PermissionError("only admin may delete")
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ember.kernel.errors import UsageError

__all__ = ["CallContext", "current_call"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """Facts about the connection a call arrived on."""

    object_id: str
    peer_address: object
    identity: str | None
    connection_id: int
    #: Read-only transport details of the peer (for a Unix socket: peer_uid, peer_gid,
    #: peer_pid).
    peer_details: Mapping[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[CallContext] = contextvars.ContextVar("ember_call")


def current_call() -> CallContext:
    """Return the context of the remote call being executed by this thread.

    Raises :class:`~ember.kernel.errors.UsageError` outside a remote call.
    """
    try:
        return _current.get()
    except LookupError:
        raise UsageError(
            "current_call() is only available inside a method called through a Daemon"
        ) from None
