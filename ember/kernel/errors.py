"""The ember exception hierarchy.

Every exception ember raises derives from :class:`EmberError`, split by who is at fault:

- :class:`UsageError`: the local program misused ember (bad argument, bad configuration,
  unknown plugin name). Also a :class:`ValueError`.
- :class:`ProtocolError`: the peer sent bytes that break the wire protocol.
- :class:`TransportError`: the connection failed or closed underneath us. Also a
  :class:`ConnectionError`, so ``except ConnectionError`` catches it.
- :class:`SecurityError`: a security check rejected the peer or the request.
- :class:`EmberTimeout`: an operation ran out of time. Also a :class:`TimeoutError`.
- :class:`RemoteError`: the remote method raised an exception that is not a builtin type.

Authentication failures carry one opaque message on purpose, so a peer learns nothing
about which check failed.
"""

from __future__ import annotations

__all__ = [
    "EmberError",
    "UsageError",
    "ConfigError",
    "SerializationError",
    "PluginError",
    "ProtocolError",
    "TransportError",
    "ConnectionClosed",
    "SecurityError",
    "AuthenticationFailed",
    "EmberTimeout",
    "RemoteError",
]


class EmberError(Exception):
    """Root of every exception raised by ember."""


class UsageError(EmberError, ValueError):
    """The local program used ember wrongly: a bad argument, name or setting."""


class ConfigError(UsageError):
    """A configuration value or ``EMBER_*`` environment variable is invalid.

    ``setting`` is the setting's name, or the environment variable that carried it.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class SerializationError(UsageError, TypeError):
    """A value cannot be encoded by the chosen serializer (for example an unsupported type)."""


class PluginError(UsageError):
    """A plugin is unknown, invalid, blocked, or failed to load.

    ``plugin`` names the plugin or entry point concerned.
    """

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class ProtocolError(EmberError):
    """The peer violated the wire protocol; the connection is no longer usable.

    ``code`` is a short stable identifier of the violation (for example
    ``"bad-magic"`` or ``"body-too-large"``) that programs and tests can match on.
    """

    def __init__(self, message: str, *, code: str = "protocol") -> None:
        super().__init__(message)
        self.code = code


class TransportError(EmberError, ConnectionError):
    """The underlying connection failed: refused, reset, unreachable, or closed."""


class ConnectionClosed(TransportError):
    """The connection was closed, by the peer or locally, before the operation ended."""


class SecurityError(EmberError):
    """A security policy rejected the peer, the request, or a frame.

    Raised for a serializer that local policy does not allow, a tampered or replayed
    frame, a peer not on an allow list, or an unsafe configuration.
    """


class AuthenticationFailed(SecurityError):
    """The peer did not prove its identity. The message is deliberately opaque."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


class EmberTimeout(EmberError, TimeoutError):
    """Connecting, the handshake or a call did not finish within its timeout.

    ``operation`` names what timed out and ``timeout`` is the limit in seconds.
    """

    def __init__(self, message: str, *, operation: str = "", timeout: float | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.timeout = timeout


class RemoteError(EmberError):
    """The remote method raised an exception that cannot be rebuilt locally.

    ``remote_type`` is the qualified name of the remote exception class and
    ``remote_traceback`` the formatted remote traceback, or ``None`` unless the
    daemon was configured to send tracebacks.
    """

    def __init__(
        self,
        message: str,
        *,
        remote_type: str,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(f"{remote_type}: {message}" if message else remote_type)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
