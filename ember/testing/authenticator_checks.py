"""Conformance checks for authenticators, callable without pytest.

Handshakes run over an in-memory :class:`~ember.kernel.authenticator.HandshakeChannel`
pair, so these checks need no transport and can alter, replay or drop any message.
Each check that attacks a session starts from a fresh handshake, because a session that
rejected one frame has ended and its state is no longer defined.

Attacks are data: each ``"session"`` line of ``authenticator-attacks.jsonl`` seals frames
on both sides, hands them to a receiver in a given order, possibly changed, and names the
delivery that must fail. Changes a line may apply: ``tag-truncated``, ``tag-extended``,
``tag-empty``, ``tag-zero`` (every tag byte zero), ``tag-of-next`` (the tag of the
sealer's next frame), ``frame-extended``, ``frame-truncated`` and ``frame-of-next``
(the next frame with this frame's tag). Each ``"handshake"`` line lists messages that a
fake peer sends instead of running the protocol.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ember.kernel.authenticator import Authenticator, HandshakeChannel, Session
from ember.kernel.config import Config
from ember.kernel.errors import (
    AuthenticationFailed,
    ConnectionClosed,
    EmberError,
    EmberTimeout,
    ProtocolError,
    SecurityError,
    UsageError,
)
from ember.kernel.protocol import MAX_CONTROL_BODY, MessageType, encode_frame
from ember.kernel.serializer import PLUGIN_NAME_PATTERN
from ember.kernel.transport import PEER_ADDRESS
from ember.testing.capabilities import AuthenticatorCapabilities
from ember.testing.suite import (
    DEFAULT_DEADLINE,
    CheckCatalog,
    CheckFailed,
    CheckSkipped,
    ConformanceReport,
    describe_call_error,
    run_checks,
)
from ember.testing.vectors import VectorError, read_records, shipped_vector_file

__all__ = [
    "AUTHENTICATOR_CHECKS",
    "AuthenticatorHarness",
    "AuthenticatorSubject",
    "MemoryChannel",
    "check_authenticator",
    "open_channel_pair",
]

AUTHENTICATOR_CHECKS: CheckCatalog[AuthenticatorSubject] = CheckCatalog("authenticator")

#: Shortest tag accepted: 16 bytes (128 bits) make guessing a valid tag infeasible.
MIN_TAG_SIZE = 16

# Seconds a MemoryChannel waits for a message before it raises EmberTimeout.
_CHANNEL_TIMEOUT = 5.0


@dataclass(slots=True)
class AuthenticatorHarness:
    """The authenticator and the key material the suite needs to exercise it.

    ``client_options`` and ``server_options`` hold matching key material (the options
    a Proxy and a Daemon would pass, usually a :class:`~ember.kernel.config.Config`).
    ``wrong_client_options`` contains a client key the server does not accept, and
    ``wrong_server_options`` a server key the client does not accept (for a mutual
    authenticator). ``missing_options`` lacks key material (default: built-in
    defaults). ``expected_identity`` is the ``peer_identity`` the server's session must
    report for ``client_options``.
    """

    authenticator: Authenticator
    client_options: Mapping[str, object]
    server_options: Mapping[str, object]
    wrong_client_options: Mapping[str, object] | None = None
    wrong_server_options: Mapping[str, object] | None = None
    missing_options: Mapping[str, object] = field(default_factory=Config.defaults)
    expected_identity: str | None = None
    close: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class AuthenticatorSubject:
    """An authenticator harness with the authenticator's declared capabilities."""

    harness: AuthenticatorHarness
    capabilities: AuthenticatorCapabilities

    @property
    def authenticator(self) -> Authenticator:
        return self.harness.authenticator


@contextlib.contextmanager
def open_authenticator_subject(
    factory: Callable[[], AuthenticatorHarness], capabilities: AuthenticatorCapabilities
) -> Iterator[AuthenticatorSubject]:
    """Create a harness with ``factory`` and close it when the check ends."""
    harness = factory()
    try:
        yield AuthenticatorSubject(harness, capabilities)
    finally:
        if harness.close is not None:
            harness.close()


def check_authenticator(
    factory: Callable[[], AuthenticatorHarness],
    capabilities: AuthenticatorCapabilities,
    *,
    selected: list[str] | None = None,
) -> ConformanceReport:
    """Run the authenticator checks without pytest and return the report.

    ``factory`` is called once per check and returns a fresh harness.
    """
    with open_authenticator_subject(factory, capabilities) as probe:
        plugin = str(getattr(probe.authenticator, "name", "authenticator"))
    return run_checks(
        AUTHENTICATOR_CHECKS,
        lambda: open_authenticator_subject(factory, capabilities),
        plugin=plugin,
        selected=selected,
    )


# -- the in-memory channel ---------------------------------------------------------

_CLOSED = object()


class MemoryChannel(HandshakeChannel):
    """One end of an in-memory handshake channel, with the limits of the real one.

    Every message sent is recorded in ``sent``. ``alter``, if set, may replace each
    outgoing message (by its index) before the peer receives it.
    """

    def __init__(self, inbox: queue.Queue[object], outbox: queue.Queue[object],
                 timeout: float, details: Mapping[str, object]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._timeout = timeout
        self._details = dict(details)
        self.sent: list[bytes] = []
        self.alter: Callable[[int, bytes], bytes] | None = None

    def send(self, message: bytes) -> None:
        if not isinstance(message, bytes):
            raise TypeError(f"handshake messages are bytes, got {type(message).__name__}")
        if len(message) > MAX_CONTROL_BODY:
            raise ProtocolError(
                f"handshake message of {len(message)} bytes exceeds {MAX_CONTROL_BODY} bytes",
                code="body-too-large",
            )
        index = len(self.sent)
        self.sent.append(message)
        if self.alter is not None:
            message = self.alter(index, message)
        self._outbox.put(message)

    def receive(self) -> bytes:
        try:
            message = self._inbox.get(timeout=self._timeout)
        except queue.Empty:
            raise EmberTimeout(f"handshake timed out after {self._timeout:g} s",
                               operation="handshake", timeout=self._timeout) from None
        if message is _CLOSED:
            self._inbox.put(_CLOSED)  # every later receive fails the same way
            raise ConnectionClosed("the peer closed the handshake channel")
        assert isinstance(message, bytes)
        return message

    def close(self) -> None:
        """Tell the peer that no further message will come."""
        self._outbox.put(_CLOSED)

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return self._details.get(key, default)


def open_channel_pair(timeout: float = _CHANNEL_TIMEOUT) -> tuple[MemoryChannel, MemoryChannel]:
    """Return ``(client_end, server_end)`` of a fresh in-memory channel."""
    to_server: queue.Queue[object] = queue.Queue()
    to_client: queue.Queue[object] = queue.Queue()
    client = MemoryChannel(to_client, to_server, timeout, {PEER_ADDRESS: "server (in memory)"})
    server = MemoryChannel(to_server, to_client, timeout, {PEER_ADDRESS: "client (in memory)"})
    return client, server


# -- running handshakes ------------------------------------------------------------


@dataclass(slots=True)
class _SideResult:
    session: Session | None = None
    error: BaseException | None = None
    finished: bool = False


def _run_side(function: Callable[[], Session], channel: MemoryChannel,
              result: _SideResult) -> None:
    try:
        result.session = function()
    except BaseException as error:  # noqa: BLE001 - reported by the caller
        result.error = error
        # The peer would otherwise wait for a message that never comes.
        channel.close()
    finally:
        result.finished = True


def _handshake(
    authenticator: Authenticator,
    client_options: Mapping[str, object],
    server_options: Mapping[str, object],
    alter_client: Callable[[int, bytes], bytes] | None = None,
    alter_server: Callable[[int, bytes], bytes] | None = None,
) -> tuple[_SideResult, _SideResult, MemoryChannel, MemoryChannel]:
    """Run both sides of a handshake in threads and return what each side ended with."""
    client_channel, server_channel = open_channel_pair()
    client_channel.alter = alter_client
    server_channel.alter = alter_server
    client, server = _SideResult(), _SideResult()
    threads = [
        threading.Thread(
            target=_run_side,
            args=(lambda: authenticator.client_handshake(client_channel, client_options),
                  client_channel, client),
            name="conformance handshake client", daemon=True,
        ),
        threading.Thread(
            target=_run_side,
            args=(lambda: authenticator.server_handshake(server_channel, server_options),
                  server_channel, server),
            name="conformance handshake server", daemon=True,
        ),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEFAULT_DEADLINE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if not (client.finished and server.finished):
        raise CheckFailed(
            f"the handshake did not finish within {DEFAULT_DEADLINE:g} s (client "
            f"{'finished' if client.finished else 'still running'}, server "
            f"{'finished' if server.finished else 'still running'})",
            "that a handshake ends in bounded time",
        )
    return client, server, client_channel, server_channel


def _sessions(subject: AuthenticatorSubject) -> tuple[Session, Session]:
    """Run a handshake with matching keys and return ``(client, server)`` sessions."""
    harness = subject.harness
    client, server, _, _ = _handshake(harness.authenticator, harness.client_options,
                                      harness.server_options)
    for side, result in (("client", client), ("server", server)):
        if result.error is not None:
            raise CheckFailed(
                f"the {side} handshake with matching keys raised "
                f"{describe_call_error(result.error)}",
                "a successful handshake for the harness's matching key material",
            )
        if not isinstance(result.session, Session):
            raise CheckFailed(
                f"the {side} handshake returned {type(result.session).__name__}",
                "a Session instance from client_handshake and server_handshake",
            )
    assert client.session is not None and server.session is not None
    return client.session, server.session


def _frame(sender: str, index: int) -> bytes:
    body = f"{sender} frame {index}: conformance payload".encode()
    return encode_frame(MessageType.CALL, body, serializer_id=1, request_id=index + 1)


def _accepts(session: Session, frame: bytes, tag: bytes) -> bool:
    """Return ``True`` if ``session`` verifies the frame, ``False`` if it raises anything."""
    try:
        session.verify(frame, tag)
    except Exception:  # noqa: BLE001 - any rejection counts
        return False
    return True


def _verify_fails(session: Session, frame: bytes, tag: bytes) -> str | None:
    """Return ``None`` if verify raises SecurityError, else what it did instead."""
    try:
        session.verify(frame, tag)
    except SecurityError:
        return None
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        return f"verify raised {describe_call_error(error)}"
    return "verify accepted it"


# -- checks --------------------------------------------------------------------------


@AUTHENTICATOR_CHECKS.add("declaration")
def check_declaration(subject: AuthenticatorSubject) -> None:
    """The authenticator is an Authenticator with a valid name."""
    authenticator = subject.authenticator
    if not isinstance(authenticator, Authenticator):
        raise CheckFailed(f"the plugin object is a {type(authenticator).__name__}",
                          "a subclass instance of ember.kernel.authenticator.Authenticator")
    name = getattr(authenticator, "name", None)
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.fullmatch(name):
        raise CheckFailed(f"name is {name!r}",
                          "a name of 1 to 32 lowercase letters, digits, '_' or '-'")


@AUTHENTICATOR_CHECKS.add("handshake-succeeds")
def check_handshake_succeeds(subject: AuthenticatorSubject) -> None:
    """Matching keys give two sessions with equal tag sizes of at least 16 bytes."""
    client, server = _sessions(subject)
    for side, session in (("client", client), ("server", server)):
        size = session.tag_size
        if type(size) is not int or size < MIN_TAG_SIZE:
            raise CheckFailed(f"the {side} session has tag_size {size!r}",
                              f"a tag of at least {MIN_TAG_SIZE} bytes on every frame")
    if client.tag_size != server.tag_size:
        raise CheckFailed(f"tag sizes differ: client {client.tag_size}, server "
                          f"{server.tag_size}", "the same tag size on both sides")


@AUTHENTICATOR_CHECKS.add("frames-both-directions")
def check_frames_both_directions(subject: AuthenticatorSubject) -> None:
    """Frames sealed on one side verify on the other, in both directions."""
    client, server = _sessions(subject)
    for sender, sealing, verifying in (("client", client, server), ("server", server, client)):
        tags = []
        for index in range(5):
            frame = _frame(sender, index)
            tag = sealing.seal(frame)
            if not isinstance(tag, bytes) or len(tag) != sealing.tag_size:
                raise CheckFailed(
                    f"the {sender}'s seal returned {type(tag).__name__} of "
                    f"{len(tag) if isinstance(tag, bytes) else '?'} bytes",
                    f"bytes of exactly tag_size ({sealing.tag_size})",
                )
            try:
                verifying.verify(frame, tag)
            except Exception as error:  # noqa: BLE001 - any exception is the finding
                raise CheckFailed(
                    f"frame {index} sealed by the {sender} failed verification: "
                    f"{describe_call_error(error)}",
                    "that every frame sealed by the peer verifies in order",
                ) from None
            tags.append(tag)
        same_frame = b"identical frame"
        first, second = sealing.seal(same_frame), sealing.seal(same_frame)
        verifying.verify(same_frame, first)
        verifying.verify(same_frame, second)
        if first == second:
            raise CheckFailed(f"the {sender} gave two identical frames the same tag",
                              "tags bound to a sequence number, so no frame can be replayed")


@AUTHENTICATOR_CHECKS.add("peer-identity")
def check_peer_identity(subject: AuthenticatorSubject) -> None:
    """The server's session names the client that proved itself."""
    if not subject.capabilities.carries_peer_identity:
        raise CheckSkipped("the authenticator does not declare carries_peer_identity")
    _, server = _sessions(subject)
    identity = server.peer_identity
    if not isinstance(identity, str) or not identity:
        raise CheckFailed(f"the server session's peer_identity is {identity!r}",
                          "a non-empty str naming the client")
    expected = subject.harness.expected_identity
    if expected is not None and identity != expected:
        raise CheckFailed(f"the server session's peer_identity is {identity!r}",
                          f"the identity of the client's key, {expected!r}")


@AUTHENTICATOR_CHECKS.add("session-attacks")
def check_session_attacks(subject: AuthenticatorSubject) -> None:
    """Each session attack of the shipped vectors is rejected at the right frame."""
    problems = []
    for where, record in _attack_records("session"):
        problem = _run_session_attack(subject, record)
        if problem:
            problems.append(f"{where} {record['id']}: {problem}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckFailed(
            "; ".join(problems[:5]) + more,
            "SecurityError for every replayed, reordered, reflected, dropped or altered "
            "frame, and acceptance of every genuine frame in order",
        )


@AUTHENTICATOR_CHECKS.add("tamper-each-byte")
def check_tamper_each_byte(subject: AuthenticatorSubject) -> None:
    """Flipping any single byte of header, body or tag makes verify raise SecurityError."""
    frame = _frame("client", 0)
    client, _ = _sessions(subject)
    length = len(frame) + client.tag_size
    problems = []
    for position in range(length):
        client, server = _sessions(subject)
        tag = client.seal(frame)
        altered_frame, altered_tag = bytearray(frame), bytearray(tag)
        if position < len(frame):
            altered_frame[position] ^= 0x01
            region = "header" if position < 16 else "body"
        else:
            altered_tag[position - len(frame)] ^= 0x01
            region = "tag"
        problem = _verify_fails(server, bytes(altered_frame), bytes(altered_tag))
        if problem:
            problems.append(f"byte {position} ({region}): {problem}")
    if problems:
        raise CheckFailed(
            f"{len(problems)} of {length} single-byte changes were not rejected: "
            + "; ".join(problems[:5]),
            "SecurityError for a change to any byte of header, body or tag",
        )


@AUTHENTICATOR_CHECKS.add("independent-sessions")
def check_independent_sessions(subject: AuthenticatorSubject) -> None:
    """A frame sealed in one session is rejected by another session with the same keys."""
    client_a, _ = _sessions(subject)
    _, server_b = _sessions(subject)
    frame = _frame("client", 0)
    problem = _verify_fails(server_b, frame, client_a.seal(frame))
    if problem:
        raise CheckFailed(
            f"a frame from one connection, replayed into another: {problem}",
            "fresh session keys per handshake, so frames cannot move between connections",
        )


@AUTHENTICATOR_CHECKS.add("concurrent-handshakes")
def check_concurrent_handshakes(subject: AuthenticatorSubject) -> None:
    """Eight handshakes at once on one authenticator object all succeed."""
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            client, server = _sessions(subject)
            frame = _frame("client", 0)
            server.verify(frame, client.seal(frame))
        except Exception as error:  # noqa: BLE001 - collected for the report
            with lock:
                results.append(str(error))

    threads = [threading.Thread(target=one, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEFAULT_DEADLINE * 2)
    if any(thread.is_alive() for thread in threads):
        raise CheckFailed("eight concurrent handshakes did not finish in time",
                          "that one authenticator serves many connections at once")
    if results:
        raise CheckFailed(f"{len(results)} of 8 concurrent handshakes failed: {results[0]}",
                          "that one authenticator serves many connections at once")


@AUTHENTICATOR_CHECKS.add("wrong-client-key")
def check_wrong_client_key(subject: AuthenticatorSubject) -> None:
    """A client with a key the server does not accept gets no session on the server."""
    harness = subject.harness
    if not subject.capabilities.needs_key_material:
        raise CheckSkipped("the authenticator declares that it needs no key material")
    if harness.wrong_client_options is None:
        raise CheckFailed("the harness provides no wrong_client_options",
                          "a harness that names a client key the server rejects")
    client, server, _, _ = _handshake(harness.authenticator, harness.wrong_client_options,
                                      harness.server_options)
    _require_rejected("server", client, server, "a client whose key the server does not accept")


@AUTHENTICATOR_CHECKS.add("wrong-server-key")
def check_wrong_server_key(subject: AuthenticatorSubject) -> None:
    """A server with a key the client does not accept gets no session on the client."""
    harness = subject.harness
    if not subject.capabilities.mutual:
        raise CheckSkipped("the authenticator does not declare mutual authentication")
    if harness.wrong_server_options is None:
        raise CheckFailed("the harness provides no wrong_server_options",
                          "a harness that names a server key the client rejects")
    client, server, _, _ = _handshake(harness.authenticator, harness.client_options,
                                      harness.wrong_server_options)
    _require_rejected("client", client, server, "a server whose key the client does not accept")


def _require_rejected(protected: str, client: _SideResult, server: _SideResult,
                      case: str) -> None:
    """Fail unless ``protected`` got no session and one side raised AuthenticationFailed.

    Either side may detect the mismatch first: the other then sees the channel close.
    """
    results = {"client": client, "server": server}
    if results[protected].session is not None:
        raise CheckFailed(f"the {protected} completed the handshake with {case}",
                          f"that the {protected} rejects {case}")
    for side, result in results.items():
        if result.error is not None and not isinstance(result.error, EmberError):
            raise CheckFailed(f"the {side} raised {describe_call_error(result.error)} for {case}",
                              "ember errors only, such as AuthenticationFailed")
    if not any(isinstance(result.error, AuthenticationFailed) for result in results.values()):
        raised = "; ".join(f"{side}: {describe_call_error(result.error)}"
                           for side, result in results.items() if result.error is not None)
        raise CheckFailed(f"neither side raised AuthenticationFailed for {case} ({raised})",
                          f"AuthenticationFailed, whose message tells the peer nothing, on the "
                          f"side that detects {case}")


@AUTHENTICATOR_CHECKS.add("missing-key-material")
def check_missing_key_material(subject: AuthenticatorSubject) -> None:
    """A handshake without key settings raises UsageError before waiting for the peer."""
    if not subject.capabilities.needs_key_material:
        raise CheckSkipped("the authenticator declares that it needs no key material")
    authenticator = subject.authenticator
    options = subject.harness.missing_options
    for side in ("client", "server"):
        client_end, server_end = open_channel_pair(timeout=2.0)
        channel = client_end if side == "client" else server_end
        handshake = (authenticator.client_handshake if side == "client"
                     else authenticator.server_handshake)
        result = _SideResult()
        worker = threading.Thread(
            target=_run_side,
            args=(functools.partial(handshake, channel, options), channel, result),
            daemon=True,
        )
        worker.start()
        worker.join(DEFAULT_DEADLINE)
        if not result.finished:
            raise CheckFailed(f"the {side} handshake without key material did not end",
                              "UsageError at once when key material is missing")
        if not isinstance(result.error, UsageError):
            what = ("returned a session" if result.session is not None
                    else f"raised {describe_call_error(result.error or Exception())}")
            raise CheckFailed(f"the {side} handshake without key material {what}",
                              "UsageError naming the missing setting")


@AUTHENTICATOR_CHECKS.add("handshake-replay")
def check_handshake_replay(subject: AuthenticatorSubject) -> None:
    """Messages recorded from one handshake, replayed to a new peer, do not authenticate."""
    harness = subject.harness
    client, server, client_channel, server_channel = _handshake(
        harness.authenticator, harness.client_options, harness.server_options)
    failure = client.error or server.error
    if failure is not None:
        raise CheckFailed(
            f"the recorded handshake failed: {describe_call_error(failure)}",
            "a successful handshake for the harness's matching key material",
        )
    # A new server gets the client's recorded messages; a new client the server's.
    sides = [("server", client_channel.sent)]
    if subject.capabilities.mutual:
        sides.append(("client", server_channel.sent))
    for side, recorded in sides:
        result = _against_fake_peer(subject, side, recorded)
        if result.session is not None:
            raise CheckFailed(
                f"the {side} accepted {len(recorded)} handshake messages replayed from an "
                f"earlier connection",
                "fresh challenges on every handshake, so recorded messages never "
                "authenticate again",
            )
        if not isinstance(result.error, EmberError):
            raise CheckFailed(
                f"the {side} raised {describe_call_error(result.error or Exception())} "
                f"for replayed handshake messages",
                "an ember error such as AuthenticationFailed for replayed messages",
            )


@AUTHENTICATOR_CHECKS.add("handshake-tampering")
def check_handshake_tampering(subject: AuthenticatorSubject) -> None:
    """Changing any handshake message in transit never yields sessions that work."""
    harness = subject.harness
    _, _, client_channel, server_channel = _handshake(
        harness.authenticator, harness.client_options, harness.server_options)
    transcripts = {"client": client_channel.sent, "server": server_channel.sent}
    problems = []
    for sender, messages in transcripts.items():
        for index, message in enumerate(messages):
            positions = sorted({0, len(message) // 2, len(message) - 1}) if message else []
            for position in positions:
                problem = _tampered_handshake_works(subject, sender, index, position)
                if problem:
                    problems.append(problem)
    if problems:
        raise CheckFailed(
            "; ".join(problems[:5]),
            "that a handshake whose messages were changed in transit fails, or at least "
            "yields sessions that reject each other's frames",
        )


def _tampered_handshake_works(subject: AuthenticatorSubject, sender: str, index: int,
                              position: int) -> str | None:
    def flip(message_index: int, message: bytes) -> bytes:
        if message_index != index or position >= len(message):
            return message
        changed = bytearray(message)
        changed[position] ^= 0x01
        return bytes(changed)

    harness = subject.harness
    client, server, _, _ = _handshake(
        harness.authenticator, harness.client_options, harness.server_options,
        alter_client=flip if sender == "client" else None,
        alter_server=flip if sender == "server" else None,
    )
    for side, result in (("client", client), ("server", server)):
        if result.error is not None and not isinstance(result.error, EmberError):
            return (f"with byte {position} of {sender} message {index} flipped, the {side} "
                    f"raised {describe_call_error(result.error)}")
    if client.session is None or server.session is None:
        return None
    frame, reply = _frame("client", 0), _frame("server", 0)
    if (_accepts(server.session, frame, client.session.seal(frame))
            and _accepts(client.session, reply, server.session.seal(reply))):
        return (f"with byte {position} of {sender} message {index} flipped, both sides "
                f"completed the handshake and accept each other's frames")
    return None


@AUTHENTICATOR_CHECKS.add("hostile-handshake-messages")
def check_hostile_handshake_messages(subject: AuthenticatorSubject) -> None:
    """Garbage from a fake peer makes each side raise an ember error, never crash."""
    problems = []
    for where, record in _attack_records("handshake"):
        messages = _handshake_messages(where, record)
        sides = ("client", "server") if record.get("side", "both") == "both" else (
            record["side"],)
        for side in sides:
            result = _against_fake_peer(subject, side, messages)
            if result.session is not None:
                problems.append(f"{where} {record['id']}: the {side} returned a session")
            elif not isinstance(result.error, EmberError):
                problems.append(
                    f"{where} {record['id']}: the {side} raised "
                    f"{describe_call_error(result.error or Exception())}"
                )
    if problems:
        raise CheckFailed(
            "; ".join(problems[:5]),
            "AuthenticationFailed, SecurityError, ProtocolError or ConnectionClosed for "
            "malformed handshake messages",
        )


@AUTHENTICATOR_CHECKS.add("silent-peer")
def check_silent_peer(subject: AuthenticatorSubject) -> None:
    """A peer that never replies ends the handshake with an ember error in bounded time."""
    for side in ("client", "server"):
        result = _against_fake_peer(subject, side, [], close=False, timeout=0.5)
        if result.session is not None:
            raise CheckFailed(f"the {side} returned a session although the peer sent nothing",
                              "a handshake that needs the peer's messages")
        if not isinstance(result.error, EmberError):
            raise CheckFailed(
                f"the {side} raised {describe_call_error(result.error or Exception())} when "
                f"the channel timed out",
                "that the channel's EmberTimeout (or another ember error) ends the handshake",
            )


def _against_fake_peer(subject: AuthenticatorSubject, side: str, messages: list[bytes],
                       *, close: bool = True, timeout: float = _CHANNEL_TIMEOUT) -> _SideResult:
    """Run ``side`` against a peer that sends ``messages`` at once, then closes."""
    harness = subject.harness
    client_end, server_end = open_channel_pair(timeout=timeout)
    own, fake = (client_end, server_end) if side == "client" else (server_end, client_end)
    for message in messages:
        fake.send(message)
    if close:
        fake.close()

    if side == "client":
        def handshake() -> Session:
            return harness.authenticator.client_handshake(own, harness.client_options)
    else:
        def handshake() -> Session:
            return harness.authenticator.server_handshake(own, harness.server_options)

    result = _SideResult()
    worker = threading.Thread(target=_run_side, args=(handshake, own, result), daemon=True)
    worker.start()
    worker.join(DEFAULT_DEADLINE)
    if not result.finished:
        raise CheckFailed(f"the {side} handshake against a fake peer did not end within "
                          f"{DEFAULT_DEADLINE:g} s", "that a handshake ends in bounded time")
    return result


# -- session attacks from data -----------------------------------------------------


def _attack_records(target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    path = shipped_vector_file("authenticator-attacks.jsonl")
    if path is None:
        raise CheckFailed("ember ships no authenticator-attacks.jsonl",
                          "the shipped vector file")
    for where, record in read_records(path):
        if record.get("target") == target:
            yield where, record


def _handshake_messages(where: str, record: dict[str, Any]) -> list[bytes]:
    messages = []
    for item in record.get("messages", []):
        if isinstance(item, str):
            messages.append(bytes.fromhex(item))
        elif isinstance(item, list) and len(item) == 2:
            messages.append(bytes.fromhex(item[0]) * int(item[1]))
        else:
            raise VectorError(f"{where}: each message is hex text or [hex, repeat]")
    return messages


_CHANGES: dict[str, Callable[[bytes, bytes, bytes, bytes], tuple[bytes, bytes]]] = {
    "tag-truncated": lambda frame, tag, next_frame, next_tag: (frame, tag[:-1]),
    "tag-extended": lambda frame, tag, next_frame, next_tag: (frame, tag + b"\x00"),
    "tag-empty": lambda frame, tag, next_frame, next_tag: (frame, b""),
    "tag-zero": lambda frame, tag, next_frame, next_tag: (frame, bytes(len(tag))),
    "tag-of-next": lambda frame, tag, next_frame, next_tag: (frame, next_tag),
    "frame-extended": lambda frame, tag, next_frame, next_tag: (frame + b"\x00", tag),
    "frame-truncated": lambda frame, tag, next_frame, next_tag: (frame[:-1], tag),
    "frame-of-next": lambda frame, tag, next_frame, next_tag: (next_frame, tag),
}


def _run_session_attack(subject: AuthenticatorSubject, record: dict[str, Any]) -> str | None:
    """Play one ``"session"`` attack; return a description of what went wrong, if anything."""
    deliveries = record.get("deliver")
    reject_at = record.get("reject_at")
    if not isinstance(deliveries, list) or not deliveries:
        raise VectorError(f"attack {record['id']!r} needs a non-empty \"deliver\" list")

    client, server = _sessions(subject)
    sessions = {"client": client, "server": server}
    # Seal one frame beyond the highest index used, for the "-of-next" changes.
    highest = {"client": -1, "server": -1}
    for delivery in deliveries:
        highest[delivery[0]] = max(highest[delivery[0]], int(delivery[1]))
    sealed: dict[str, list[tuple[bytes, bytes]]] = {}
    for sealer, session in sessions.items():
        frames = [_frame(sealer, index) for index in range(highest[sealer] + 2)]
        sealed[sealer] = [(frame, session.seal(frame)) for frame in frames]

    for position, delivery in enumerate(deliveries):
        sealer, index, receiver = delivery[0], int(delivery[1]), delivery[2]
        frame, tag = sealed[sealer][index]
        if len(delivery) > 3:
            change = _CHANGES.get(delivery[3])
            if change is None:
                raise VectorError(f"attack {record['id']!r}: unknown change {delivery[3]!r}; "
                                  f"known: {', '.join(_CHANGES)}")
            frame, tag = change(frame, tag, *sealed[sealer][index + 1])

        label = f"delivery {position} ({sealer} frame {index} to the {receiver})"
        if position == reject_at:
            problem = _verify_fails(sessions[receiver], frame, tag)
            return None if problem is None else f"{label}: {problem}"
        try:
            sessions[receiver].verify(frame, tag)
        except Exception as error:  # noqa: BLE001 - a genuine frame must verify
            return f"{label} is genuine but verify raised {describe_call_error(error)}"
    return None
