"""The hello exchange that opens every connection, for both roles.

The client sends HELLO naming the protocol version, its serializer and its
authenticator; the server checks the offer against its own stack before anything else
happens and replies with WELCOME, or with ERROR followed by a close. Both sides then run the
authenticator's handshake, if any, and protect every later frame with its session.
Any mismatch fails fast on both sides with a message that names both settings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import ember
from ember.kernel.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    ProtocolError,
    SecurityError,
    TransportError,
)
from ember.kernel.protocol import VERSION, MessageType, decode_control
from ember.kernel.registry import Stack
from ember.remote.connection import FramedConnection

__all__ = ["client_handshake", "server_handshake", "raise_for_error", "NOT_PROCESSED_CODES"]

#: ERROR codes a daemon sends when it closes a connection without reading any further
#: request, so a client may safely send its request again on a new connection.
NOT_PROCESSED_CODES = frozenset({"idle-timeout", "shutting-down"})


def client_handshake(connection: FramedConnection, stack: Stack, timeout: float,
                     options: Mapping[str, object]) -> dict[str, Any]:
    """Run the client side; return the server's WELCOME fields."""
    deadline = time.monotonic() + timeout
    authenticator = stack.authenticator
    connection.send_control(MessageType.HELLO, {
        "protocol": VERSION,
        "serializer": stack.serializer.name,
        "serializer_id": stack.serializer.wire_id,
        "authenticator": authenticator.name if authenticator is not None else None,
        "client": f"ember/{ember.__version__}",
    })

    frame = connection.receive(max(0.0, deadline - time.monotonic()), operation="handshake")
    fields = decode_control(frame.body)
    if frame.type is MessageType.ERROR:
        raise_for_error(fields)

    connection.state.hello_done(authenticating=authenticator is not None)
    if authenticator is not None:
        channel = connection.handshake_channel(max(0.001, deadline - time.monotonic()))
        session = authenticator.client_handshake(channel, options)
        connection.start_session(session)
        connection.state.authenticated()
    return fields


def server_handshake(connection: FramedConnection, stack: Stack, timeout: float,
                     options: Mapping[str, object]) -> str | None:
    """Run the server side; return the identity the authenticator proved, if any.

    Raises SecurityError or ProtocolError after telling the client why, so the client
    fails with the same reason instead of waiting.
    """
    deadline = time.monotonic() + timeout
    frame = connection.receive(timeout, operation="handshake")
    fields = decode_control(frame.body)

    protocol = fields.get("protocol")
    if protocol != VERSION:
        _reject(connection, "bad-version", ProtocolError,
                f"the client speaks protocol version {protocol!r}; this daemon speaks "
                f"version {VERSION}")

    serializer_id = fields.get("serializer_id")
    if not isinstance(serializer_id, int) or isinstance(serializer_id, bool) or (
        serializer_id not in stack.accepted
    ):
        accepted = ", ".join(sorted(s.name for s in stack.accepted.values()))
        offered = _shown(fields.get("serializer"))
        _reject(connection, "serializer-rejected", SecurityError,
                f"this daemon does not accept serializer {offered} (id {serializer_id!r}); "
                f"it accepts: {accepted}. Configure the proxy with one of those.")

    authenticator = stack.authenticator
    expected = authenticator.name if authenticator is not None else None
    offered_authenticator = fields.get("authenticator")
    if offered_authenticator != expected:
        _reject(connection, "authenticator-mismatch", SecurityError,
                f"this daemon uses authenticator {_shown(expected)} but the client offered "
                f"{_shown(offered_authenticator)}; configure the same authenticator on both "
                "sides")

    # The idle timeout lets a client reconnect before reusing a connection that the
    # daemon is about to close.
    connection.send_control(MessageType.WELCOME, {
        "protocol": VERSION,
        "authenticator": expected,
        "server": f"ember/{ember.__version__}",
        "idle_timeout": options.get("idle_timeout"),
    })
    connection.state.hello_done(authenticating=authenticator is not None)
    if authenticator is None:
        return None

    channel = connection.handshake_channel(max(0.001, deadline - time.monotonic()))
    try:
        session = authenticator.server_handshake(channel, options)
    except AuthenticationFailed:
        raise
    except SecurityError as error:
        # For example a key file that became readable by others after the daemon
        # started: the client learns only that authentication failed, the daemon's log
        # gets the reason.
        failure = AuthenticationFailed()
        failure.add_note(str(error))
        raise failure from error
    connection.start_session(session)
    connection.state.authenticated()
    return session.peer_identity


def raise_for_error(fields: Mapping[str, Any]) -> None:
    """Raise the ember error that an ERROR frame from the daemon stands for."""
    code = str(fields.get("code", "error"))
    message = str(fields.get("message", "the daemon reported an error"))
    if code in ("serializer-rejected", "authenticator-mismatch", "forbidden",
                "authentication-failed"):
        raise SecurityError(message)
    if code == "busy":
        raise TransportError(message)
    if code in NOT_PROCESSED_CODES:
        error = ConnectionClosed(message)
        error.request_processed = False  # type: ignore[attr-defined]
        raise error
    raise ProtocolError(message, code=code)


def _reject(connection: FramedConnection, code: str,
            error: type[SecurityError] | type[ProtocolError], message: str) -> None:
    try:
        connection.send_error(code, message)
    except TransportError:
        pass  # the client is gone; the error below still ends this side
    if error is ProtocolError:
        raise ProtocolError(message, code=code)
    raise error(message)


def _shown(value: object) -> str:
    return "none" if value is None else repr(value)
