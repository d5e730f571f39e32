"""The Proxy: calls the methods of a remote object as if it were local.

A proxy connects lazily on first use and keeps one connection. It is safe to share
between threads: calls are serialized on that connection, each waits for the reply that
carries its own request id, and a reply with any other id ends the connection instead of
being handed to the wrong caller. After a failure the connection is dropped and the next
call reconnects.

Every attribute of the proxy's own starts with ``_ember_``, so it never shadows a remote
member; names starting with ``_`` are never sent to the daemon.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

from ember.kernel.config import SETTINGS_BY_NAME, Config
from ember.kernel.errors import (
    ConnectionClosed,
    EmberError,
    ProtocolError,
    SecurityError,
    UsageError,
)
from ember.kernel.protocol import MAX_REQUEST_ID, Flag, MessageType, decode_control
from ember.kernel.registry import Registry, Stack, get_registry
from ember.kernel.serializer import DecodeLimits
from ember.kernel.state import Role
from ember.kernel.transport import Address
from ember.remote.connection import FramedConnection
from ember.remote.exceptions import rebuild_exception
from ember.remote.handshake import client_handshake, raise_for_error
from ember.remote.uri import SCHEME_PREFIX, URI

__all__ = ["Proxy"]


class Proxy:
    """A client-side stand-in for one remote object.

    ``uri`` is a direct URI (``ember+tcp://127.0.0.1:5555/kvstore``) or one a resolver
    understands. Keyword arguments override settings of ``config``, for example
    ``call_timeout=2.0`` or ``serializer="cbor"``. Use it as a context manager, or call
    :meth:`_ember_close` to close its connection explicitly.
    """

    _ember_uri: URI
    _ember_config: Config
    _ember_stack: Stack
    _ember_address: Address
    _ember_limits: DecodeLimits
    _ember_lock: threading.Lock
    _ember_connection: FramedConnection | None
    _ember_metadata: dict[str, frozenset[str]] | None
    _ember_request_ids: itertools.count[int]
    _ember_peer_idle_timeout: float | None

    def __init__(
        self,
        uri: str,
        *,
        config: Config | None = None,
        registry: Registry | None = None,
        **settings: object,
    ) -> None:
        base = config if config is not None else Config.from_environment()
        config = base.replace(**settings)
        registry = registry if registry is not None else get_registry(config)

        parsed = URI.parse(_resolve(uri, registry, config))

        config = _apply_uri_options(config, parsed)
        stack = registry.compose(serializer=config.serializer, transport=parsed.transport,
                                 authenticator=config.authenticator or None,
                                 allow_unsafe_serializers=config.allow_unsafe_serializers)
        if stack.authenticator is not None:
            stack.authenticator.check_options(config, server=False)
        address = stack.transport.parse_address(parsed.address)

        _set = object.__setattr__
        _set(self, "_ember_uri", parsed)
        _set(self, "_ember_config", config)
        _set(self, "_ember_stack", stack)
        _set(self, "_ember_address", address)
        _set(self, "_ember_limits", DecodeLimits(max_depth=config.max_depth,
                                                 max_size=config.max_message_size,
                                                 max_items=config.max_items))
        _set(self, "_ember_lock", threading.Lock())
        _set(self, "_ember_connection", None)
        _set(self, "_ember_metadata", None)
        _set(self, "_ember_request_ids", itertools.count(1))
        _set(self, "_ember_peer_idle_timeout", None)

    # -- connection --------------------------------------------------------------------

    def _ember_connect(self) -> FramedConnection:
        """Return the open connection, connecting (and fetching metadata) if needed.

        Must be called with ``_ember_lock`` held.
        """
        connection = self._ember_connection
        if connection is not None and not connection.closed:
            idle_limit = self._ember_peer_idle_timeout
            if idle_limit is None or time.monotonic() - connection.last_activity < idle_limit:
                return connection
            # The daemon is about to close this idle connection; a fresh one avoids
            # losing a one-way call to that race.
            self._ember_drop(connection)

        config = self._ember_config
        stack = self._ember_stack
        options = self._ember_options()
        stream = stack.transport.connect(self._ember_address, config.connect_timeout, options)
        connection = FramedConnection(stream, Role.CLIENT, config.max_message_size)
        try:
            welcome = client_handshake(connection, stack, config.handshake_timeout, options)
            idle_timeout = welcome.get("idle_timeout")
            object.__setattr__(self, "_ember_peer_idle_timeout",
                               0.75 * idle_timeout
                               if isinstance(idle_timeout, (int, float)) and idle_timeout > 0
                               else None)
            object.__setattr__(self, "_ember_connection", connection)
            if self._ember_metadata is None:
                object.__setattr__(self, "_ember_metadata", self._ember_fetch_metadata(
                    connection))
        except BaseException:
            self._ember_drop(connection)
            raise
        return connection

    def _ember_options(self) -> Mapping[str, object]:
        # Plugins read their settings (key files, pinned keys...) from the config.
        return self._ember_config

    def _ember_drop(self, connection: FramedConnection) -> None:
        """Close ``connection`` and forget it if it is still the current one."""
        connection.close()
        if self._ember_connection is connection:
            object.__setattr__(self, "_ember_connection", None)

    def _ember_close(self) -> None:
        """Close the connection. Safe from any thread: calls in progress on it fail with
        :class:`~ember.kernel.errors.ConnectionClosed`; the next call reconnects."""
        connection = self._ember_connection
        if connection is not None:
            self._ember_drop(connection)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._ember_close()

    def __del__(self) -> None:
        connection = getattr(self, "_ember_connection", None)
        if connection is not None:
            connection.close()

    # -- calls -------------------------------------------------------------------------

    def _ember_invoke(self, member: str, args: tuple[Any, ...] | list[Any],
                      kwargs: Mapping[str, Any], flags: Flag = Flag.NONE) -> Any:
        """Send one request for ``member`` and return its result.

        This bypasses the member list fetched from the daemon (the daemon still checks
        every name), which is what tests and tools that probe a daemon need.
        """
        serializer = self._ember_stack.serializer
        request = [self._ember_uri.object_id, member, list(args), dict(kwargs)]
        body = serializer.dumps(request)
        with self._ember_lock:
            connection = self._ember_connect()
            try:
                return self._ember_exchange(connection, MessageType.CALL, body, flags)
            except ConnectionClosed as error:
                if getattr(error, "request_processed", True):
                    raise
            # The daemon closed the connection before reading this request (idle
            # timeout or shutdown), so sending it once more cannot run it twice.
            connection = self._ember_connect()
            return self._ember_exchange(connection, MessageType.CALL, body, flags)

    def _ember_fetch_metadata(self, connection: FramedConnection) -> dict[str, frozenset[str]]:
        body = self._ember_stack.serializer.dumps(self._ember_uri.object_id)
        metadata = self._ember_exchange(connection, MessageType.METADATA, body, Flag.NONE)
        if not isinstance(metadata, dict):
            raise ProtocolError("the daemon sent invalid metadata", code="bad-metadata")
        result: dict[str, frozenset[str]] = {}
        for key in ("methods", "oneway", "properties", "writable_properties"):
            names = metadata.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ProtocolError(f"the daemon sent invalid metadata for {key!r}",
                                    code="bad-metadata")
            result[key] = frozenset(names)
        return result

    def _ember_exchange(self, connection: FramedConnection, message_type: MessageType,
                        body: bytes, flags: Flag) -> Any:
        serializer = self._ember_stack.serializer
        request_id = next(self._ember_request_ids) & MAX_REQUEST_ID or 1
        try:
            connection.send(message_type, body, serializer_id=serializer.wire_id,
                            request_id=request_id, flags=flags)
            if flags & Flag.ONEWAY:
                return None
            reply = connection.receive(self._ember_config.call_timeout, operation="call")

            if reply.type is MessageType.ERROR and reply.request_id == 0:
                raise_for_error(decode_control(reply.body))
            if reply.request_id != request_id:
                raise ProtocolError(
                    f"the daemon sent a reply to request {reply.request_id} while request "
                    f"{request_id} was waiting", code="mismatched-reply")
            if reply.type is MessageType.ERROR:
                raise_for_error(decode_control(reply.body))
            if reply.serializer_id != serializer.wire_id:
                # The proxy decodes only with the serializer it asked for.
                raise SecurityError(
                    f"the daemon replied with serializer id {reply.serializer_id}, but this "
                    f"proxy uses {serializer.name!r} (id {serializer.wire_id}); the reply "
                    "was not decoded")
            value = serializer.loads(reply.body, self._ember_limits)
        except EmberError:
            self._ember_drop(connection)
            raise

        if reply.type is MessageType.EXCEPTION:
            raise rebuild_exception(value)
        return value

    # -- attribute access --------------------------------------------------------------

    def _ember_members(self) -> dict[str, frozenset[str]]:
        metadata = self._ember_metadata
        if metadata is None:
            with self._ember_lock:
                self._ember_connect()
            metadata = self._ember_metadata
            assert metadata is not None
        return metadata

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(
                f"{name!r}: names starting with '_' are never sent to the remote object")
        members = self._ember_members()
        if name in members["methods"]:
            return _RemoteMethod(self, name, name in members["oneway"])
        if name in members["properties"]:
            return self._ember_invoke(name, (), {}, Flag.GET_ATTRIBUTE)
        raise AttributeError(self._ember_unknown(name, members))

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"cannot set {name!r} on a proxy")
        members = self._ember_members()
        if name not in members["writable_properties"]:
            raise AttributeError(self._ember_unknown(name, members, writable=True))
        self._ember_invoke(name, (value,), {}, Flag.SET_ATTRIBUTE)

    def _ember_unknown(self, name: str, members: dict[str, frozenset[str]],
                       writable: bool = False) -> str:
        kind = "writable property" if writable else "member"
        exposed = sorted(members["writable_properties"] if writable
                         else members["methods"] | members["properties"])
        return (f"remote object {self._ember_uri.object_id!r} has no exposed {kind} "
                f"{name!r}; exposed: {', '.join(exposed) or 'none'}")

    def __dir__(self) -> list[str]:
        metadata = self._ember_metadata or {}
        names = set().union(*metadata.values()) if metadata else set()
        return sorted(names)

    def __repr__(self) -> str:
        return f"<Proxy {self._ember_uri} ({self._ember_stack.describe()})>"


class _RemoteMethod:
    """A bound remote method; calling it sends one request."""

    __slots__ = ("_name", "_oneway", "_proxy")

    def __init__(self, proxy: Proxy, name: str, oneway: bool) -> None:
        self._proxy = proxy
        self._name = name
        self._oneway = oneway

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flags = Flag.ONEWAY if self._oneway else Flag.NONE
        return self._proxy._ember_invoke(self._name, args, kwargs, flags)

    def __repr__(self) -> str:
        kind = "one-way remote method" if self._oneway else "remote method"
        return f"<{kind} {self._name!r} of {self._proxy!r}>"


def _apply_uri_options(config: Config, uri: URI) -> Config:
    """Apply the URI's query options, which name settings, on top of ``config``.

    Secret settings are rejected here, because a URI is shared, printed and logged.
    """
    if not uri.params:
        return config
    overrides: dict[str, object] = {}
    for name, value in uri.params:
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise UsageError(
                f"unknown URI option {name!r} in {uri}; options name settings, such as "
                "serializer=cbor (see 'ember config')")
        if setting.secret:
            raise UsageError(
                f"URI option {name!r} is a secret and must not appear in a URI; set it in "
                f"the environment ({setting.env_var}) or in a key file")
        overrides[name] = setting.coerce(value, f"URI option {name!r}")
    return config.replace(**overrides)


def _resolve(uri: str, registry: Registry, config: Config) -> str:
    """Return ``uri`` if it names a registered transport, else what its resolver makes
    of it. Resolvers see the URI as written, since their schemes need not follow the
    direct form (``ember+name://kvstore`` has no address part)."""
    if not isinstance(uri, str):
        raise UsageError(f"a URI must be a string, got {type(uri).__name__}")
    scheme = uri.partition("://")[0].lower()
    if scheme.startswith(SCHEME_PREFIX) and scheme[len(SCHEME_PREFIX):] in registry.names(
            "transport"):
        return uri
    resolver = registry.resolver_for_scheme(scheme)
    resolved = resolver.resolve(uri, config)
    if not isinstance(resolved, str):
        raise UsageError(f"resolver {resolver.name!r} returned {type(resolved).__name__} for "
                         f"{uri!r}; resolvers must return a direct URI string")
    return resolved
