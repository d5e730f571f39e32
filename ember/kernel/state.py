"""The connection state machine, as one table.

Each side of a connection tracks which message types its peer may send next. The table
below is the whole rule set: a frame type not listed for the current (role, state) is a
protocol violation, and the side that detects it moves to ``FAILED`` and stays there.

Invariants:

- A client sends HELLO first; the server replies with WELCOME (or ERROR and closes).
- With an authenticator, both sides exchange AUTH frames until the authenticator's
  handshake returns; without one they go straight to READY.
- Calls (CALL, METADATA) and their replies (RESULT, EXCEPTION) flow only in READY.
- ERROR may arrive in any state except FAILED; with request id 0 it ends the connection.
"""

from __future__ import annotations

import enum
from typing import Final

from ember.kernel.errors import ProtocolError
from ember.kernel.protocol import MessageType

__all__ = ["Role", "State", "ConnectionState"]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    HELLO = "hello"  # waiting for HELLO (server) or WELCOME (client)
    AUTHENTICATING = "authenticating"
    READY = "ready"
    FAILED = "failed"


_M = MessageType

# (role of this side, state) -> {message type the peer may send: next state}
_TRANSITIONS: Final[dict[tuple[Role, State], dict[MessageType, State]]] = {
    (Role.SERVER, State.HELLO): {_M.HELLO: State.HELLO},  # becomes AUTHENTICATING/READY via accept
    (Role.SERVER, State.AUTHENTICATING): {_M.AUTH: State.AUTHENTICATING, _M.ERROR: State.FAILED},
    (Role.SERVER, State.READY): {_M.CALL: State.READY, _M.METADATA: State.READY,
                                 _M.ERROR: State.FAILED},
    (Role.CLIENT, State.HELLO): {_M.WELCOME: State.HELLO, _M.ERROR: State.FAILED},
    (Role.CLIENT, State.AUTHENTICATING): {_M.AUTH: State.AUTHENTICATING, _M.ERROR: State.FAILED},
    (Role.CLIENT, State.READY): {_M.RESULT: State.READY, _M.EXCEPTION: State.READY,
                                 _M.ERROR: State.READY},
}


class ConnectionState:
    """Tracks one side's view of a connection and rejects out-of-order frames."""

    __slots__ = ("role", "state")

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = State.HELLO

    def receive(self, message_type: MessageType) -> None:
        """Record that the peer sent ``message_type``, or raise ProtocolError."""
        allowed = _TRANSITIONS.get((self.role, self.state), {})
        next_state = allowed.get(message_type)
        if next_state is None:
            failed_in = self.state
            self.state = State.FAILED
            raise ProtocolError(
                f"unexpected {message_type.name} frame for the {self.role.value} in state "
                f"{failed_in.value}",
                code="unexpected-message",
            )
        self.state = next_state

    def hello_done(self, *, authenticating: bool) -> None:
        """Move on after HELLO/WELCOME: to AUTHENTICATING or straight to READY."""
        self._require(State.HELLO)
        self.state = State.AUTHENTICATING if authenticating else State.READY

    def authenticated(self) -> None:
        self._require(State.AUTHENTICATING)
        self.state = State.READY

    def fail(self) -> None:
        self.state = State.FAILED

    def _require(self, expected: State) -> None:
        if self.state is not expected:
            raise ProtocolError(
                f"the {self.role.value} is in state {self.state.value}, expected "
                f"{expected.value}",
                code="bad-state",
            )
