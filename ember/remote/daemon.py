"""The Daemon: publishes Python objects to remote callers.

Threading model: one thread accepts connections; each connection gets its own thread
(at most ``max_connections``), which reads a request, executes it and writes the reply.
Decoding request bodies and executing calls are further bounded by ``max_workers``
across all connections. One-way calls run on a separate pool of ``max_workers`` threads
with a bounded queue, so their connection reads on while they run. Only a full queue
makes that connection wait. A connection that misbehaves is closed alone, and the others
keep being served.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ember.kernel.config import Config
from ember.kernel.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    EmberError,
    EmberTimeout,
    ProtocolError,
    SecurityError,
    SerializationError,
    TransportError,
    UsageError,
)
from ember.kernel.protocol import Flag, Frame, MessageType
from ember.kernel.registry import Registry, Stack, get_registry
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.kernel.state import Role
from ember.kernel.transport import (
    PEER_GID,
    PEER_PID,
    PEER_PUBLIC_KEY,
    PEER_UID,
    Listener,
    Stream,
)
from ember.remote.connection import FramedConnection
from ember.remote.context import CallContext, _current
from ember.remote.exceptions import describe_exception
from ember.remote.exposure import bind_member, check_member, exposed_members
from ember.remote.handshake import server_handshake
from ember.remote.uri import URI, check_object_id

__all__ = ["Daemon", "InstanceMode"]

log = logging.getLogger("ember.daemon")

InstanceMode = Literal["single", "session", "percall"]
_INSTANCE_MODES = ("single", "session", "percall")

_ONEWAY = int(Flag.ONEWAY)
_ONEWAY_QUEUE_FACTOR = 4
_GET_ATTRIBUTE = int(Flag.GET_ATTRIBUTE)
_SET_ATTRIBUTE = int(Flag.SET_ATTRIBUTE)

# Stream details copied into every call context of a connection.
_PEER_DETAIL_KEYS = (PEER_UID, PEER_GID, PEER_PID, PEER_PUBLIC_KEY)

_REFUSAL_WARNING_INTERVAL = 10.0  # seconds

# How long close() lets calls already executing finish before it closes their
# connections anyway.
_DEFAULT_SHUTDOWN_GRACE = 5.0


@dataclass
class _Registration:
    object_id: str
    target: Any  # an instance, or a class for the session/percall/single modes
    mode: InstanceMode | None  # None: target is the instance itself
    lock: threading.Lock = field(default_factory=threading.Lock)
    single: Any = None

    def instance(self, session_instances: dict[str, Any]) -> Any:
        if self.mode is None:
            return self.target
        if self.mode == "percall":
            return self.target()
        if self.mode == "session":
            instance = session_instances.get(self.object_id)
            if instance is None:
                instance = session_instances[self.object_id] = self.target()
            return instance
        with self.lock:
            if self.single is None:
                self.single = self.target()
            return self.single

    @property
    def cls(self) -> type:
        return self.target if self.mode is not None else type(self.target)


class Daemon:
    """Serves registered objects on one listening address.

    ``host`` and ``port`` default to the configuration (``127.0.0.1`` and a free port).
    Other keyword arguments override settings of ``config`` (see ``ember config``);
    ``registry`` selects plugins (default: the process-wide registry). The daemon binds
    in the constructor, so URIs returned by :meth:`register` carry the real port.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        address: str | None = None,
        config: Config | None = None,
        registry: Registry | None = None,
        **settings: object,
    ) -> None:
        if host is not None:
            settings["host"] = host
        if port is not None:
            settings["port"] = port
        base = config if config is not None else Config.from_environment()
        self.config = base.replace(**settings)
        self.registry = registry if registry is not None else get_registry(self.config)
        self.stack: Stack = self.registry.compose(
            serializer=self.config.serializer,
            transport=self.config.transport,
            authenticator=self.config.authenticator or None,
            accepted_serializers=self.config.accepted_serializers,
            allow_unsafe_serializers=self.config.allow_unsafe_serializers,
        )
        if self.stack.authenticator is not None:
            self.stack.authenticator.check_options(self.config, server=True)
        self._limits = DecodeLimits(max_depth=self.config.max_depth,
                                    max_size=self.config.max_message_size,
                                    max_items=self.config.max_items)
        # Plugins read their settings (key files, socket modes...) from the config.
        self._options: Mapping[str, object] = self.config

        transport = self.stack.transport
        address_text = address if address is not None else _host_port(self.config.host,
                                                                        self.config.port)
        bind_address = transport.parse_address(address_text, listening=True)
        self._check_exposure(transport.is_loopback(bind_address), address_text)
        self._listener: Listener = transport.listen(bind_address, self._options)
        self.address = self._listener.address
        self.location = transport.format_address(self.address)
        # A listener may list options for every URI, such as the public key that clients
        # of an encrypted transport pin. These options are public by contract.
        self._uri_params: tuple[tuple[str, str], ...] = tuple(
            self._listener.uri_params)

        self._objects: dict[str, _Registration] = {}
        self._objects_lock = threading.Lock()
        self._handlers: set[_ConnectionHandler] = set()
        self._handlers_lock = threading.Lock()
        self._workers = _Tokens(self.config.max_workers)
        self._oneway_pool = ThreadPoolExecutor(max_workers=self.config.max_workers,
                                               thread_name_prefix="ember-oneway")
        # The executor's queue is unbounded, so this caps one-way calls waiting or
        # running at once.
        self._oneway_slots = threading.BoundedSemaphore(
            self.config.max_workers * _ONEWAY_QUEUE_FACTOR)
        self._closing = threading.Event()
        self._last_refusal_warning = -_REFUSAL_WARNING_INTERVAL
        self._refused_since_warning = 0
        self._closed = threading.Event()
        self._serve_thread: threading.Thread | None = None
        self._serving = threading.Lock()
        log.info("daemon listening on %s (%s)", self.location, self.stack.describe())
        if self.stack.authenticator is None and not self._exposed:
            log.warning("the daemon on %s has no authenticator: any local process that can "
                        "connect to it can call its objects. Configure an authenticator "
                        "(hmac or ed25519) to restrict callers", self.location)

    def _check_exposure(self, is_loopback: bool, address_text: str) -> None:
        """Refuse a non-loopback bind without an authenticator unless allow_insecure."""
        self._exposed = not is_loopback
        if is_loopback or self.stack.authenticator is not None:
            return
        if not self.config.allow_insecure:
            raise SecurityError(
                f"refusing to listen on {address_text} without an authenticator: every "
                "host that can reach this address could call the published objects. "
                "Configure an authenticator (authenticator='hmac' or 'ed25519'), bind a "
                "loopback address, or set allow_insecure=true on a network you trust")
        log.warning("the daemon listens on %s without an authenticator because "
                    "allow_insecure is set: anyone who can reach this address can call "
                    "its objects", address_text)

    # -- registration --------------------------------------------------------------

    def register(self, target: object, object_id: str | None = None, *,
                 instance_mode: InstanceMode = "session") -> str:
        """Publish ``target`` and return its URI.

        ``target`` is an instance, or a class that the daemon instantiates without
        arguments: once per connection (``instance_mode="session"``, the default),
        once for all (``"single"``) or for every call (``"percall"``). Without
        ``object_id`` a random one is generated.
        """
        if object_id is None:
            object_id = f"obj_{uuid.uuid4().hex}"
        check_object_id(object_id)
        if instance_mode not in _INSTANCE_MODES:
            raise UsageError(f"invalid instance_mode {instance_mode!r}; use one of "
                             f"{', '.join(_INSTANCE_MODES)}")
        is_class = isinstance(target, type)
        registration = _Registration(object_id, target, instance_mode if is_class else None)
        if not (exposed_members(registration.cls).methods
                or exposed_members(registration.cls).properties):
            raise UsageError(
                f"{registration.cls.__qualname__} has no exposed members; mark the class or "
                "its methods with @ember.expose"
            )
        with self._objects_lock:
            if object_id in self._objects:
                raise UsageError(f"object id {object_id!r} is already registered; unregister "
                                 "it first or choose another id")
            self._objects[object_id] = registration
        return self.uri_for(object_id)

    def unregister(self, object_id: str) -> None:
        with self._objects_lock:
            if self._objects.pop(object_id, None) is None:
                raise UsageError(f"no object with id {object_id!r} is registered")

    def uri_for(self, object_id: str) -> str:
        return str(URI("ember+" + self.stack.transport.name, self.location,
                       check_object_id(object_id), self._uri_params))

    def _lookup(self, object_id: str) -> _Registration | None:
        return self._objects.get(object_id)

    # -- serving ---------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept and serve connections until :meth:`close` is called."""
        if not self._serving.acquire(blocking=False):
            raise UsageError("this daemon is already serving")
        try:
            while not self._closing.is_set():
                try:
                    stream = self._listener.accept(timeout=0.5)
                except ConnectionClosed:
                    break
                except TransportError as error:
                    log.warning("accepting a connection failed: %s", error)
                    continue
                except Exception:
                    # A transport that breaks its contract must not end serving silently;
                    # the pause keeps a persistent fault from spinning this loop.
                    log.exception("accepting a connection on %s failed unexpectedly",
                                  self.location)
                    self._closing.wait(0.1)
                    continue
                if stream is not None:
                    self._start_handler(stream)
        finally:
            self._serving.release()

    def start(self) -> Daemon:
        """Serve in a background thread; return the daemon for chaining."""
        if self._serve_thread is not None:
            raise UsageError("this daemon was already started")
        self._serve_thread = threading.Thread(target=self.serve_forever,
                                              name=f"ember-daemon {self.location}",
                                              daemon=True)
        self._serve_thread.start()
        return self

    def _start_handler(self, stream: Stream) -> None:
        with self._handlers_lock:
            full = len(self._handlers) >= self.config.max_connections
            handler = None if full else _ConnectionHandler(self, stream)
            if handler is not None:
                self._handlers.add(handler)
        if handler is None:
            self._refuse_busy(stream)
            return
        handler.thread.start()

    def _refuse_busy(self, stream: Stream) -> None:
        connection = FramedConnection(stream, Role.SERVER, self.config.max_message_size)
        message = (f"the daemon at {self.location} is serving its limit of "
                   f"{self.config.max_connections} connections; retry later or raise "
                   "max_connections")
        # A flood of refusals logs one warning per interval, with the count, instead of
        # one line per connection.
        now = time.monotonic()
        self._refused_since_warning += 1
        if now - self._last_refusal_warning >= _REFUSAL_WARNING_INTERVAL:
            log.warning("refused %d connection(s), the latest from %s: limit of %d "
                        "connections reached", self._refused_since_warning,
                        connection.peer_address, self.config.max_connections)
            self._last_refusal_warning = now
            self._refused_since_warning = 0
        try:
            stream.set_timeout(1.0)
            connection.send_error("busy", message)
        except EmberError:
            pass  # the refused client is gone; nothing else to tell it
        finally:
            connection.close()

    def _handler_done(self, handler: _ConnectionHandler) -> None:
        with self._handlers_lock:
            self._handlers.discard(handler)

    @property
    def connection_count(self) -> int:
        with self._handlers_lock:
            return len(self._handlers)

    # -- shutdown --------------------------------------------------------------------

    def close(self, grace: float = _DEFAULT_SHUTDOWN_GRACE) -> None:
        """Stop accepting, let executing calls finish for up to ``grace`` seconds, then
        close every connection. Idempotent."""
        if self._closing.is_set():
            self._closed.wait(grace + 1.0)
            return
        self._closing.set()
        self._listener.close()

        with self._handlers_lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.stop()
        for handler in handlers:
            handler.thread.join(grace)
        for handler in handlers:
            handler.connection.close()
            handler.thread.join(1.0)

        self._oneway_pool.shutdown(wait=False, cancel_futures=True)
        if self._serve_thread is not None and self._serve_thread is not threading.current_thread():
            self._serve_thread.join(grace)
        self._closed.set()
        log.info("daemon on %s closed", self.location)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Daemon {self.location} {self.stack.describe()}>"


class _ConnectionHandler:
    """Serves one connection in its own thread."""

    def __init__(self, daemon: Daemon, stream: Stream) -> None:
        self.daemon = daemon
        self.connection = FramedConnection(stream, Role.SERVER,
                                           daemon.config.max_message_size)
        self.identity: str | None = None
        self.peer_details: dict[str, Any] = {}
        # Every call's context shares this read-only view instead of copying the dict.
        self._peer_details_view: Mapping[str, Any] = MappingProxyType(self.peer_details)
        self.session_instances: dict[str, Any] = {}
        self._state_lock = threading.Lock()
        self._busy = False
        self._stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name=f"ember-connection-{self.connection.id}")

    def stop(self) -> None:
        """Close now if idle; otherwise close after the call being executed."""
        with self._state_lock:
            self._stopping = True
            busy = self._busy
        if not busy:
            self.connection.close()

    def run(self) -> None:
        connection = self.connection
        daemon = self.daemon
        peer = connection.peer_address
        log.debug("connection %d from %s opened", connection.id, peer)
        try:
            if not self._handshake():
                return
            self._serve_requests()
        except ConnectionClosed:
            log.debug("connection %d from %s closed", connection.id, peer)
        except EmberTimeout as error:
            log.info("closing connection %d from %s: %s", connection.id, peer, error)
        except ProtocolError as error:
            log.warning("closing connection %d from %s: protocol violation: %s",
                        connection.id, peer, error)
            self._tell_peer(error.code, str(error))
        except SecurityError as error:
            log.warning("closing connection %d from %s: security check failed: %s",
                        connection.id, peer, error)
        except TransportError as error:
            log.info("connection %d from %s failed: %s", connection.id, peer, error)
        except Exception:
            log.exception("unexpected error on connection %d from %s; closing it",
                          connection.id, peer)
        finally:
            connection.close()
            daemon._handler_done(self)

    def _handshake(self) -> bool:
        """Run the server handshake and record who the peer is; ``False`` if rejected.

        Authentication failures reach the peer as one opaque message; the reason goes
        only to this daemon's log.
        """
        connection = self.connection
        daemon = self.daemon
        try:
            identity = server_handshake(connection, daemon.stack,
                                        daemon.config.handshake_timeout, daemon._options)
        except AuthenticationFailed as error:
            reason = "; ".join(getattr(error, "__notes__", ())) or "no reason recorded"
            log.warning("connection %d from %s: authentication failed: %s", connection.id,
                        connection.peer_address, reason)
            self._tell_peer("authentication-failed", str(error))
            return False
        except UsageError as error:
            log.error("connection %d from %s: the authenticator is misconfigured, so every "
                      "client is rejected: %s", connection.id, connection.peer_address, error)
            self._tell_peer("authentication-failed", str(AuthenticationFailed()))
            return False

        stream = connection.stream
        for key in _PEER_DETAIL_KEYS:
            value = stream.get_peer_detail(key)
            if value is not None:
                self.peer_details[key] = value
        uid = self.peer_details.get(PEER_UID)
        self.identity = identity if identity is not None or uid is None else f"uid:{uid}"
        self._peer_details_view = MappingProxyType(self.peer_details)
        return True

    def _tell_peer(self, code: str, message: str) -> None:
        with contextlib.suppress(EmberError):
            self.connection.stream.set_timeout(1.0)
            self.connection.send_error(code, message)

    def _serve_requests(self) -> None:
        connection = self.connection
        idle_timeout = self.daemon.config.idle_timeout
        while not self._stopping:
            try:
                frame = connection.receive(idle_timeout, operation="waiting for a request")
            except EmberTimeout:
                if not connection.has_partial_frame:
                    # Tell the client no request was read, so it may retry elsewhere.
                    self._tell_peer("idle-timeout", f"the daemon closed the connection after "
                                    f"{idle_timeout:.3g} s without a request")
                raise
            if frame.type is MessageType.ERROR:
                raise ConnectionClosed("the client reported an error and closed")

            if not self._begin_request():
                self._tell_peer("shutting-down", "the daemon is shutting down")
                return
            try:
                self._handle(frame)
            finally:
                with self._state_lock:
                    self._busy = False

    def _begin_request(self) -> bool:
        """Mark the connection busy, unless the daemon has started to stop it."""
        with self._state_lock:
            if self._stopping:
                return False
            self._busy = True
            return True

    def _handle(self, frame: Frame) -> None:
        daemon = self.daemon
        serializer = daemon.stack.accepted.get(frame.serializer_id)
        flags = int(frame.flags)  # int operations: IntFlag arithmetic is slow per call
        is_oneway = bool(flags & _ONEWAY)
        if serializer is None:
            # The choke point: a serializer this daemon does not accept is never used
            # to decode, whatever the frame claims.
            accepted = ", ".join(sorted(s.name for s in daemon.stack.accepted.values()))
            message = (f"serializer id {frame.serializer_id} is not accepted by this daemon; "
                       f"accepted: {accepted}. The request body was not decoded.")
            log.warning("connection %d from %s: rejected a request: %s", self.connection.id,
                        self.connection.peer_address, message)
            if not is_oneway:
                self.connection.send_error("serializer-rejected", message, frame.request_id)
            return

        # Decoding takes a worker token too, so at most max_workers bodies are being
        # turned into objects at once, whatever the number of connections.
        with daemon._workers:
            payload = serializer.loads(frame.body, daemon._limits)
        if frame.type is MessageType.METADATA:
            self._reply_metadata(frame, serializer, payload)
            return

        object_id, member, args, kwargs = _parse_call(payload)
        kind = ("get" if flags & _GET_ATTRIBUTE
                else "set" if flags & _SET_ATTRIBUTE else "call")
        try:
            target = self._resolve(object_id, member, kind)
        except (LookupError, AttributeError) as error:
            if not is_oneway:
                self._reply_exception(frame, serializer, error)
            return

        context = CallContext(object_id, self.connection.peer_address, self.identity,
                              self.connection.id, self._peer_details_view)
        if is_oneway:
            # Waiting for a free slot stalls only this connection, which is the
            # back-pressure a client flooding one-way calls should feel.
            if not self._wait_for_oneway_slot():
                log.warning("connection %d from %s: dropped one-way call %s.%s because the "
                            "daemon is stopping", self.connection.id,
                            self.connection.peer_address, object_id, member)
                return
            daemon._oneway_pool.submit(self._run_oneway, target, args, kwargs, context,
                                       f"{object_id}.{member}")
            return

        with daemon._workers:
            token = _current.set(context)
            try:
                result = target(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - every error goes back to the caller
                self._reply_exception(frame, serializer, error)
                return
            finally:
                _current.reset(token)
        self._reply_result(frame, serializer, result, f"{object_id}.{member}")

    def _resolve(self, object_id: str, member: str, kind: str) -> Callable[..., Any]:
        registration = self.daemon._lookup(object_id)
        if registration is None:
            raise LookupError(f"no object with id {object_id!r} is registered on this daemon")
        check_member(registration.cls, object_id, member, kind)
        instance = registration.instance(self.session_instances)
        return bind_member(instance, member, kind)

    def _wait_for_oneway_slot(self) -> bool:
        """Wait for room in the one-way queue; return False if the daemon stops first."""
        while not self.daemon._oneway_slots.acquire(timeout=0.5):
            if self._stopping or self.daemon._closing.is_set():
                return False
        return True

    def _run_oneway(self, target: Callable[..., Any], args: list[Any],
                    kwargs: dict[str, Any], context: CallContext, name: str) -> None:
        # One-way calls are bounded by their own pool, not by max_workers, so a flood
        # of slow one-way calls cannot hold up the calls other clients wait for.
        token = _current.set(context)
        try:
            target(*args, **kwargs)
        except Exception:
            log.exception("one-way call %s from %s raised", name, context.peer_address)
        finally:
            _current.reset(token)
            self.daemon._oneway_slots.release()

    def _reply_result(self, frame: Frame, serializer: Serializer, result: object,
                      name: str) -> None:
        try:
            body = serializer.dumps(result)
            self.connection.send(MessageType.RESULT, body, serializer_id=serializer.wire_id,
                                 request_id=frame.request_id)
        except SerializationError as error:
            self._reply_exception(frame, serializer, TypeError(
                f"the result of {name} cannot be sent with serializer {serializer.name!r}: "
                f"{error}"))
        except ProtocolError as error:
            if error.code != "body-too-large":
                raise
            self._reply_exception(frame, serializer, ValueError(
                f"the result of {name} is too large to send: {error}"))

    def _reply_exception(self, frame: Frame, serializer: Serializer,
                         error: BaseException) -> None:
        description = describe_exception(
            error, include_traceback=self.daemon.config.send_tracebacks)
        try:
            body = serializer.dumps(description)
        except SerializationError:
            # The arguments or attributes hold values this serializer cannot carry.
            description["args"] = [description["message"]]
            description.pop("attributes", None)
            body = serializer.dumps(description)
        self.connection.send(MessageType.EXCEPTION, body, serializer_id=serializer.wire_id,
                             request_id=frame.request_id)

    def _reply_metadata(self, frame: Frame, serializer: Serializer, payload: object) -> None:
        registration = self.daemon._lookup(payload) if isinstance(payload, str) else None
        if registration is None:
            self._reply_exception(frame, serializer, LookupError(
                f"no object with id {payload!r} is registered on this daemon"))
            return
        metadata = exposed_members(registration.cls).as_metadata()
        self.connection.send(MessageType.RESULT, serializer.dumps(metadata),
                             serializer_id=serializer.wire_id, request_id=frame.request_id)


class _Tokens:
    """A counting limit for ``with`` blocks, cheaper per use than BoundedSemaphore,
    which is written in Python on top of a Condition."""

    __slots__ = ("_queue",)

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(count):
            self._queue.put(None)

    def __enter__(self) -> None:
        self._queue.get()

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)


def _parse_call(payload: object) -> tuple[str, str, list[Any], dict[str, Any]]:
    """Check the shape of a CALL body: [object_id, member, args, kwargs]."""
    if not isinstance(payload, (list, tuple)) or len(payload) != 4:
        raise ProtocolError("a CALL body must be a list of [object_id, member, args, kwargs]",
                            code="bad-call")
    object_id, member, args, kwargs = payload
    if not isinstance(object_id, str) or not isinstance(member, str):
        raise ProtocolError("CALL object id and member must be strings", code="bad-call")
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise ProtocolError("CALL args must be a list and kwargs a map", code="bad-call")
    if not all(isinstance(key, str) and key.isidentifier() for key in kwargs):
        raise ProtocolError("CALL keyword argument names must be identifiers", code="bad-call")
    return object_id, member, list(args), kwargs


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
