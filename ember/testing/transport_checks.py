"""Conformance checks for transports, callable without pytest.

Every check works on real listeners and streams that the transport creates on the
loopback address the :class:`TransportHarness` names. Any blocking call is bounded: a
stream gets a timeout before it reads, and calls without one run under
:func:`~ember.testing.suite.call_with_deadline`. The subject closes every listener and
stream it opened when the check ends, so one check cannot disturb the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ember.kernel.config import Config
from ember.kernel.errors import (
    ConnectionClosed,
    EmberTimeout,
    ProtocolError,
    TransportError,
    UsageError,
)
from ember.kernel.protocol import (
    HEADER,
    MAGIC,
    VERSION,
    Frame,
    FrameDecoder,
    MessageType,
    encode_frame,
)
from ember.kernel.serializer import PLUGIN_NAME_PATTERN
from ember.kernel.transport import Listener, Stream, Transport
from ember.testing.capabilities import TransportCapabilities
from ember.testing.suite import (
    DEFAULT_DEADLINE,
    CheckCatalog,
    CheckFailed,
    ConformanceReport,
    call_with_deadline,
    describe_call_error,
    run_checks,
)
from ember.testing.vectors import read_address_vectors, shipped_vector_file

__all__ = [
    "TRANSPORT_CHECKS",
    "TransportHarness",
    "TransportSubject",
    "check_transport",
    "open_transport_subject",
]

TRANSPORT_CHECKS: CheckCatalog[TransportSubject] = CheckCatalog("transport")

# Timeout, in seconds, set on every stream before a read that should succeed.
_READ_TIMEOUT = DEFAULT_DEADLINE


@dataclass(slots=True)
class TransportHarness:
    """The transport and the setup the suite needs to exercise it.

    ``listen_address`` returns the text of a fresh loopback address to listen on each
    time it is called (``"127.0.0.1:0"`` for TCP, a new socket path in a temporary
    folder for Unix sockets). ``server_options`` go to ``listen`` and
    ``client_options`` to ``connect`` (key material for an encrypted transport).
    ``close`` releases what the harness created.
    """

    transport: Transport
    listen_address: Callable[[], str]
    server_options: Mapping[str, object] = field(default_factory=Config.defaults)
    client_options: Mapping[str, object] = field(default_factory=Config.defaults)
    connect_timeout: float = 5.0
    close: Callable[[], None] | None = None


class TransportSubject:
    """A transport harness, its declared capabilities, and everything opened for a check."""

    def __init__(self, harness: TransportHarness, capabilities: TransportCapabilities) -> None:
        self.harness = harness
        self.capabilities = capabilities
        self._opened: list[Listener | Stream] = []
        self._lock = threading.Lock()

    @property
    def transport(self) -> Transport:
        return self.harness.transport

    def listen(self) -> Listener:
        """Parse a fresh listen address and listen on it."""
        text = self.harness.listen_address()
        address = self.transport.parse_address(text, listening=True)
        listener = self.transport.listen(address, self.harness.server_options)
        self._remember(listener)
        return listener

    def connect(self, listener: Listener) -> Stream:
        stream = self.transport.connect(listener.address, self.harness.connect_timeout,
                                        self.harness.client_options)
        self._remember(stream)
        return stream

    def accept(self, listener: Listener) -> Stream:
        stream = listener.accept(DEFAULT_DEADLINE)
        if stream is None:
            raise CheckFailed(
                f"accept returned None within {DEFAULT_DEADLINE:g} s although a client "
                f"connected",
                "that accept returns the stream of a connecting client",
            )
        self._remember(stream)
        return stream

    def pair(self, listener: Listener | None = None) -> tuple[Stream, Stream]:
        """Return ``(client, server)`` streams of one new connection.

        The server accepts in another thread while the client connects, because the
        connect of a transport with a handshake waits for the server's side of it.
        """
        listener = listener if listener is not None else self.listen()
        accepted: list[Stream] = []
        errors: list[BaseException] = []

        def accept() -> None:
            try:
                stream = self.accept(listener)
                # An empty write sends nothing, but lets a transport that runs its server
                # handshake on first use (as an encrypted one may) finish it now.
                stream.write(b"")
                accepted.append(stream)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                errors.append(error)

        acceptor = threading.Thread(target=accept, name="conformance accept", daemon=True)
        acceptor.start()
        client = call_with_deadline(lambda: self.connect(listener), "connect")
        acceptor.join(DEFAULT_DEADLINE)
        if errors:
            raise errors[0]
        if not accepted:
            raise CheckFailed(f"accept did not return within {DEFAULT_DEADLINE:g} s",
                              "that a listener accepts a connecting client")
        return client, accepted[0]

    def close_all(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for item in reversed(opened):
            with contextlib.suppress(Exception):
                item.close()

    def _remember(self, item: Listener | Stream) -> None:
        with self._lock:
            self._opened.append(item)


@contextlib.contextmanager
def open_transport_subject(
    factory: Callable[[], TransportHarness], capabilities: TransportCapabilities
) -> Iterator[TransportSubject]:
    """Create a harness with ``factory``; close what the check opened, then the harness."""
    harness = factory()
    subject = TransportSubject(harness, capabilities)
    try:
        yield subject
    finally:
        subject.close_all()
        if harness.close is not None:
            harness.close()


def check_transport(
    factory: Callable[[], TransportHarness],
    capabilities: TransportCapabilities,
    *,
    selected: list[str] | None = None,
) -> ConformanceReport:
    """Run the transport checks without pytest and return the report.

    ``factory`` is called once per check and returns a fresh harness.
    """
    with open_transport_subject(factory, capabilities) as probe:
        plugin = str(getattr(probe.transport, "name", "transport"))
    return run_checks(TRANSPORT_CHECKS, lambda: open_transport_subject(factory, capabilities),
                      plugin=plugin, selected=selected)


# -- helpers -------------------------------------------------------------------------


def _read_exactly(stream: Stream, size: int, chunk_sizes: tuple[int, ...] = (65536,),
                  what: str = "the data") -> bytes:
    """Read exactly ``size`` bytes, asking for the chunk sizes in turn."""
    stream.set_timeout(_READ_TIMEOUT)
    received = bytearray()
    turn = 0
    while len(received) < size:
        asked = min(chunk_sizes[turn % len(chunk_sizes)], size - len(received))
        turn += 1
        data = stream.read(asked)
        if not isinstance(data, bytes):
            raise CheckFailed(f"read returned {type(data).__name__}", "read to return bytes")
        if not data:
            raise CheckFailed(
                f"read returned b'' after {len(received)} of {size} bytes of {what}",
                "that a stream delivers every byte written before the end of stream",
            )
        if len(data) > asked:
            raise CheckFailed(f"read({asked}) returned {len(data)} bytes",
                              "read(max_bytes) to return at most max_bytes bytes")
        received += data
    return bytes(received)


def _expect_end_of_stream(stream: Stream, who: str) -> None:
    """Fail unless the next read reports the end of stream (b"") in bounded time."""
    stream.set_timeout(_READ_TIMEOUT)
    try:
        data = stream.read(1024)
    except EmberTimeout:
        raise CheckFailed(f"the {who} read timed out instead of seeing the end of stream",
                          "that read returns b'' once the peer has closed") from None
    if data != b"":
        raise CheckFailed(f"the {who} read returned {len(data)} unexpected bytes",
                          "that read returns b'' once the peer has closed")


def _short(data: bytes) -> str:
    return repr(data) if len(data) <= 40 else repr(data[:37]) + "..."


def _in_thread(function: Callable[[], Any], name: str) -> tuple[threading.Thread, list[Any]]:
    """Start ``function`` in a daemon thread; the list receives its result or error."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("value", function()))
        except BaseException as error:  # noqa: BLE001 - inspected by the caller
            outcome.append(("error", error))

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread, outcome


def _joined(thread: threading.Thread, outcome: list[Any], what: str) -> Any:
    thread.join(DEFAULT_DEADLINE * 3)
    if thread.is_alive() or not outcome:
        raise CheckFailed(f"{what} did not finish in bounded time",
                          "that every operation ends in bounded time")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


# -- checks --------------------------------------------------------------------------


@TRANSPORT_CHECKS.add("declaration")
def check_declaration(subject: TransportSubject) -> None:
    """The transport is a Transport whose name and is_encrypted match its declaration."""
    transport = subject.transport
    if not isinstance(transport, Transport):
        raise CheckFailed(f"the plugin object is a {type(transport).__name__}",
                          "a subclass instance of ember.kernel.transport.Transport")
    name = getattr(transport, "name", None)
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.fullmatch(name):
        raise CheckFailed(f"name is {name!r}",
                          "a name of 1 to 32 lowercase letters, digits, '_' or '-'")
    if transport.is_encrypted is not subject.capabilities.encrypted:
        raise CheckFailed(
            f"is_encrypted is {transport.is_encrypted!r} but the capabilities declare "
            f"encrypted={subject.capabilities.encrypted!r}",
            "is_encrypted to match the declared capabilities",
        )


@TRANSPORT_CHECKS.add("address-round-trip")
def check_address_round_trip(subject: TransportSubject) -> None:
    """The bound address formats to text that parses back to it, and is loopback."""
    transport = subject.transport
    listener = subject.listen()
    bound = listener.address
    text = transport.format_address(bound)
    if not isinstance(text, str) or not text:
        raise CheckFailed(f"format_address returned {text!r}", "a non-empty str")
    try:
        parsed = transport.parse_address(text)
    except UsageError as error:
        raise CheckFailed(f"parse_address({text!r}) of the bound address raised {error}",
                          "that parse_address accepts what format_address returns") from None
    if parsed != bound:
        raise CheckFailed(f"parse_address({text!r}) returned {parsed!r}, bound {bound!r}",
                          "that format_address and parse_address round-trip")
    try:
        hash(parsed)
    except TypeError:
        raise CheckFailed(f"the address {parsed!r} is not hashable",
                          "hashable, immutable addresses") from None
    if transport.is_loopback(bound) is not True:
        raise CheckFailed(f"is_loopback({text!r}) returned {transport.is_loopback(bound)!r} "
                          f"for the harness's loopback address",
                          "True for an address only this machine can reach")


@TRANSPORT_CHECKS.add("address-vectors")
def check_address_vectors(subject: TransportSubject) -> None:
    """Shipped address vectors for this transport parse or raise UsageError as listed."""
    path = shipped_vector_file("transport-addresses.jsonl")
    if path is None:
        raise CheckFailed("ember ships no transport-addresses.jsonl", "the shipped vector file")
    transport = subject.transport
    problems = []
    for vector in read_address_vectors(path):
        if vector.transport not in ("*", transport.name):
            continue
        try:
            address = transport.parse_address(vector.text, listening=vector.listening)
        except UsageError:
            if vector.expect == "valid":
                problems.append(f"{vector.where}: {vector.text!r} was rejected")
            continue
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            problems.append(f"{vector.where}: {vector.text!r} raised "
                            f"{describe_call_error(error)}")
            continue
        if vector.expect == "reject":
            problems.append(f"{vector.where}: {vector.text!r} parsed as {address!r}")
        elif vector.formatted is not None and transport.format_address(address) != vector.formatted:
            problems.append(f"{vector.where}: {vector.text!r} formats as "
                            f"{transport.format_address(address)!r}, not {vector.formatted!r}")
    if problems:
        raise CheckFailed("; ".join(problems[:5]),
                          "UsageError naming the invalid part for each rejected address, and "
                          "the listed result for each valid one")


@TRANSPORT_CHECKS.add("empty-write")
def check_empty_write(subject: TransportSubject) -> None:
    """write(b"") sends nothing and leaves the stream usable in both directions."""
    # The harness itself relies on this: pair() makes an empty write on the server side.
    client, server = subject.pair()
    for writer, reader, direction in ((client, server, "client to server"),
                                      (server, client, "server to client")):
        try:
            writer.write(b"")
            writer.write(b"after")
            received = _read_exactly(reader, 5, what="data after an empty write")
        except CheckFailed:
            raise
        except Exception as error:  # noqa: BLE001 - any exception is the finding
            raise CheckFailed(
                f"after an empty write {direction}, the next transfer raised "
                f"{describe_call_error(error)}",
                "that write(b'') sends nothing and leaves the stream usable",
            ) from None
        if received != b"after":
            raise CheckFailed(f"after an empty write {direction}, the peer read "
                              f"{_short(received)}", "that write(b'') sends nothing")


@TRANSPORT_CHECKS.add("bytes-both-directions")
def check_bytes_both_directions(subject: TransportSubject) -> None:
    """Bytes written on either side arrive unchanged on the other."""
    client, server = subject.pair()
    client.write(b"ping from the client")
    received = _read_exactly(server, 20)
    if received != b"ping from the client":
        raise CheckFailed(f"the server read {_short(received)}", "the bytes the client wrote")
    server.write(b"pong from the server")
    received = _read_exactly(client, 20)
    if received != b"pong from the server":
        raise CheckFailed(f"the client read {_short(received)}", "the bytes the server wrote")


@TRANSPORT_CHECKS.add("frame-split-every-boundary")
def check_frame_split(subject: TransportSubject) -> None:
    """A frame written in two parts, split at every byte, reads back whole in any chunking."""
    client, server = subject.pair()
    frame = encode_frame(MessageType.CALL, bytes(range(48)), serializer_id=1, request_id=9)
    chunkings = ((1,), (2,), (3,), (7,), (5, 1, 11), (64,))
    for writer, reader, direction in ((client, server, "client to server"),
                                      (server, client, "server to client")):
        for split in range(1, len(frame)):
            writer.write(frame[:split])
            writer.write(frame[split:])
            chunks = chunkings[split % len(chunkings)]
            received = _read_exactly(reader, len(frame), chunks,
                                     f"a frame split at byte {split}")
            if received != frame:
                raise CheckFailed(
                    f"a frame written {direction} in two parts split at byte {split} read "
                    f"back as {_short(received)}",
                    "that the stream delivers bytes unchanged and in order",
                )


@TRANSPORT_CHECKS.add("chunked-reads")
def check_chunked_reads(subject: TransportSubject) -> None:
    """One large write reads back in random chunk sizes; many small writes in one read."""
    client, server = subject.pair()
    generator = random.Random(0x454D)
    payload = generator.randbytes(1024 * 1024)
    writer, outcome = _in_thread(lambda: client.write(payload), "conformance writer")
    sizes = tuple(generator.choice((1, 2, 3, 100, 1000, 4096, 65536)) for _ in range(64))
    received = _read_exactly(server, len(payload), sizes, "a 1 MiB write")
    _joined(writer, outcome, "a 1 MiB write")
    if hashlib.sha256(received).digest() != hashlib.sha256(payload).digest():
        raise CheckFailed("a 1 MiB write read back in random chunks differs from what was "
                          "written", "that the stream delivers bytes unchanged and in order")

    # A socket buffer may hold only a few hundred tiny writes, so the client reads while
    # the server writes.
    pieces = [f"{index:05d}|".encode() for index in range(1000)]

    def write_pieces() -> None:
        for piece in pieces:
            server.write(piece)

    writer, outcome = _in_thread(write_pieces, "conformance small writes")
    received = _read_exactly(client, sum(map(len, pieces)), (65536,), "1000 small writes")
    _joined(writer, outcome, "1000 small writes")
    if received != b"".join(pieces):
        raise CheckFailed("1000 small writes read back out of order or changed",
                          "that the stream delivers bytes unchanged and in order")


@TRANSPORT_CHECKS.add("large-frame-at-limit")
def check_large_frame_at_limit(subject: TransportSubject) -> None:
    """A frame with a body of exactly max_message_size crosses the transport intact."""
    limit = subject.capabilities.max_message_size
    client, server = subject.pair()
    body = random.Random(limit).randbytes(limit)
    frame = encode_frame(MessageType.RESULT, body, serializer_id=1, request_id=1,
                         max_body=limit)
    writer, outcome = _in_thread(lambda: server.write(frame), "conformance large write")

    decoder = FrameDecoder(max_body=limit)
    client.set_timeout(_READ_TIMEOUT)
    result: Frame | str = FrameDecoder.NEED_DATA
    while result == FrameDecoder.NEED_DATA:
        data = client.read(min(decoder.bytes_needed, 4 * 1024 * 1024))
        decoder.feed(data)
        result = decoder.next_frame()
        if not data and result == FrameDecoder.NEED_DATA:
            break
    _joined(writer, outcome, f"a write of {len(frame)} bytes")
    if isinstance(result, str) or result.body != body:
        raise CheckFailed(
            f"a frame with a body of {limit} bytes (the limit) did not arrive intact",
            "that a transport carries a frame of the maximum message size unchanged",
        )


@TRANSPORT_CHECKS.add("large-frame-over-limit")
def check_large_frame_over_limit(subject: TransportSubject) -> None:
    """A frame one byte over the limit fails locally, and on receipt of its header."""
    limit = subject.capabilities.max_message_size
    try:
        encode_frame(MessageType.RESULT, bytes(limit + 1), serializer_id=1, max_body=limit)
    except ProtocolError:
        pass
    else:
        raise CheckFailed(f"encoding a body of {limit + 1} bytes with a limit of {limit} "
                          f"succeeded", "ProtocolError before an oversized frame is sent")

    client, server = subject.pair()
    header = HEADER.pack(MAGIC, VERSION, MessageType.RESULT, 0, 1, 1, limit + 1)
    server.write(header)
    decoder = FrameDecoder(max_body=limit)
    received = _read_exactly(client, len(header))
    decoder.feed(received)
    try:
        decoder.next_frame()
    except ProtocolError as error:
        if error.code != "body-too-large":
            raise CheckFailed(f"the header was rejected with code {error.code!r}",
                              "code 'body-too-large' for a body over the limit") from None
        return
    raise CheckFailed(f"a header declaring {limit + 1} bytes (limit {limit}) was accepted",
                      "ProtocolError from the header alone, before any body byte is kept")


@TRANSPORT_CHECKS.add("concurrent-connections")
def check_concurrent_connections(subject: TransportSubject) -> None:
    """Several clients at once each get back exactly their own bytes."""
    count = subject.capabilities.concurrent_connections
    listener = subject.listen()
    failures: list[str] = []
    lock = threading.Lock()

    def serve() -> None:
        for _ in range(count):
            stream = subject.accept(listener)
            threading.Thread(target=echo, args=(stream,), daemon=True).start()

    def echo(stream: Stream) -> None:
        try:
            stream.set_timeout(_READ_TIMEOUT)
            while True:
                data = stream.read(65536)
                if not data:
                    return
                stream.write(data)
        except Exception as error:  # noqa: BLE001 - collected for the report
            with lock:
                failures.append(f"server echo raised {describe_call_error(error)}")

    def client(index: int) -> None:
        try:
            stream = subject.connect(listener)
            payload = bytes([index]) * 65536 + f"client {index}".encode()
            stream.write(payload)
            echoed = _read_exactly(stream, len(payload))
            if echoed != payload:
                with lock:
                    failures.append(f"client {index} got bytes that are not its own")
            stream.close()
        except Exception as error:  # noqa: BLE001 - collected for the report
            with lock:
                failures.append(f"client {index} raised {describe_call_error(error)}")

    server_thread, server_outcome = _in_thread(serve, "conformance server")
    clients = [threading.Thread(target=client, args=(index,), daemon=True)
               for index in range(count)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(DEFAULT_DEADLINE * 3)
    _joined(server_thread, server_outcome, f"accepting {count} connections")
    if any(thread.is_alive() for thread in clients):
        raise CheckFailed(f"{count} concurrent clients did not finish in bounded time",
                          "that connections proceed independently")
    if failures:
        raise CheckFailed("; ".join(failures[:3]),
                          "that concurrent connections never mix or lose bytes")


def _check_orderly_close(subject: TransportSubject, closing_side: str) -> None:
    client, server = subject.pair()
    closer, peer = (client, server) if closing_side == "client" else (server, client)
    other_side = "server" if closing_side == "client" else "client"

    closer.write(b"last words")
    if subject.capabilities.half_close:
        closer.shutdown_write()
    else:
        closer.close()
    received = _read_exactly(peer, 10, what="data written before the close")
    if received != b"last words":
        raise CheckFailed(f"the {other_side} read {_short(received)}",
                          "the bytes written before the close")
    _expect_end_of_stream(peer, other_side)

    if subject.capabilities.half_close:
        peer.write(b"reply after half-close")
        reply = _read_exactly(closer, 22, what="a reply after shutdown_write")
        if reply != b"reply after half-close":
            raise CheckFailed(f"the {closing_side} read {_short(reply)} after shutdown_write",
                              "that shutdown_write leaves the other direction open")
        peer.close()
        _expect_end_of_stream(closer, closing_side)


@TRANSPORT_CHECKS.add("orderly-close-client")
def check_orderly_close_client(subject: TransportSubject) -> None:
    """After the client's shutdown_write the server reads the data, then b''."""
    _check_orderly_close(subject, "client")


@TRANSPORT_CHECKS.add("orderly-close-server")
def check_orderly_close_server(subject: TransportSubject) -> None:
    """After the server's shutdown_write the client reads the data, then b''."""
    _check_orderly_close(subject, "server")


def _check_abrupt_close(subject: TransportSubject, closing_side: str) -> None:
    client, server = subject.pair()
    closer, peer = (client, server) if closing_side == "client" else (server, client)
    other_side = "server" if closing_side == "client" else "client"

    peer.set_timeout(_READ_TIMEOUT)
    reader, outcome = _in_thread(lambda: peer.read(1024), f"conformance {other_side} read")
    time.sleep(0.05)  # let the read block before the close; the result is the same either way
    closer.close()
    try:
        data = _joined(reader, outcome, f"the {other_side}'s blocked read")
    except EmberTimeout:
        raise CheckFailed(f"the {other_side}'s read timed out after the {closing_side} closed",
                          "that read returns b'' or raises TransportError when the peer "
                          "closes") from None
    except TransportError:
        data = b""
    if data != b"":
        raise CheckFailed(f"the {other_side} read {_short(data)} after the {closing_side} "
                          f"closed", "b'' or TransportError after the peer closed")

    # Writes may be buffered for a while; the failure must come within a bounded number.
    peer.set_timeout(_READ_TIMEOUT)
    deadline = time.monotonic() + DEFAULT_DEADLINE
    while time.monotonic() < deadline:
        try:
            peer.write(b"x" * 65536)
        except TransportError:
            return
        except EmberTimeout:
            return
        time.sleep(0.01)
    raise CheckFailed(f"the {other_side} kept writing for {DEFAULT_DEADLINE:g} s after the "
                      f"{closing_side} closed", "TransportError when writing to a closed peer")


@TRANSPORT_CHECKS.add("abrupt-close-client")
def check_abrupt_close_client(subject: TransportSubject) -> None:
    """When the client closes, the server's blocked read ends and its writes fail."""
    _check_abrupt_close(subject, "client")


@TRANSPORT_CHECKS.add("abrupt-close-server")
def check_abrupt_close_server(subject: TransportSubject) -> None:
    """When the server closes, the client's blocked read ends and its writes fail."""
    _check_abrupt_close(subject, "server")


@TRANSPORT_CHECKS.add("close-aborts-blocked-read")
def check_close_aborts_blocked_read(subject: TransportSubject) -> None:
    """close() from another thread ends a read blocked on the same stream."""
    client, _server = subject.pair()
    client.set_timeout(None)
    reader, outcome = _in_thread(lambda: client.read(1024), "conformance blocked read")
    time.sleep(0.05)
    client.close()
    reader.join(DEFAULT_DEADLINE)
    if reader.is_alive() or not outcome:
        raise CheckFailed("a read blocked without a timeout did not end after close()",
                          "that close() from another thread aborts a blocked read")
    kind, value = outcome[0]
    if kind == "value" and value != b"":
        raise CheckFailed(f"the aborted read returned {_short(value)}",
                          "ConnectionClosed (or b'') from a read aborted by close()")
    if kind == "error" and not isinstance(value, ConnectionClosed):
        raise CheckFailed(f"the aborted read raised {describe_call_error(value)}",
                          "ConnectionClosed from a read aborted by close()")


@TRANSPORT_CHECKS.add("use-after-close")
def check_use_after_close(subject: TransportSubject) -> None:
    """close() is idempotent, and read and write after it raise ConnectionClosed."""
    client, _server = subject.pair()
    client.close()
    try:
        client.close()
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(f"a second close() raised {describe_call_error(error)}",
                          "that close() is idempotent") from None
    for operation, call in (("read", lambda: client.read(1)),
                            ("write", lambda: client.write(b"x"))):
        try:
            call()
        except ConnectionClosed:
            continue
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            raise CheckFailed(f"{operation} after close() raised {describe_call_error(error)}",
                              f"ConnectionClosed from {operation} after close()") from None
        raise CheckFailed(f"{operation} after close() succeeded",
                          f"ConnectionClosed from {operation} after close()")


@TRANSPORT_CHECKS.add("read-timeout")
def check_read_timeout(subject: TransportSubject) -> None:
    """A read with no data raises EmberTimeout once the stream's timeout passes."""
    client, _server = subject.pair()
    client.set_timeout(0.2)
    try:
        data = call_with_deadline(lambda: client.read(1024), "a read with a 0.2 s timeout")
    except EmberTimeout:
        return
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"the read raised {describe_call_error(error)}",
                          "EmberTimeout when the timeout passes") from None
    raise CheckFailed(f"the read returned {_short(data)} although nothing was sent",
                      "EmberTimeout when the timeout passes")


@TRANSPORT_CHECKS.add("write-timeout")
def check_write_timeout(subject: TransportSubject) -> None:
    """A write to a peer that never reads raises EmberTimeout once the timeout passes."""
    client, _server = subject.pair()
    client.set_timeout(0.5)
    block = bytes(4 * 1024 * 1024)

    def fill() -> None:
        for _ in range(64):
            client.write(block)

    try:
        call_with_deadline(fill, "writes of 256 MiB to a peer that does not read",
                           DEFAULT_DEADLINE * 3)
    except EmberTimeout:
        return
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"the write raised {describe_call_error(error)}",
                          "EmberTimeout when a write cannot finish in time") from None
    raise CheckFailed("256 MiB were written to a peer that never read",
                      "EmberTimeout when a write cannot finish within the timeout")


@TRANSPORT_CHECKS.add("accept-timeout")
def check_accept_timeout(subject: TransportSubject) -> None:
    """accept returns None when no client connects within its timeout."""
    listener = subject.listen()
    result = call_with_deadline(lambda: listener.accept(0.2), "accept(0.2)")
    if result is not None:
        raise CheckFailed(f"accept(0.2) returned {result!r} although nobody connected",
                          "None when the timeout passes without a connection")


@TRANSPORT_CHECKS.add("listener-close")
def check_listener_close(subject: TransportSubject) -> None:
    """Closing a listener ends a blocked accept, and later connects fail."""
    listener = subject.listen()
    acceptor, outcome = _in_thread(lambda: listener.accept(None), "conformance blocked accept")
    time.sleep(0.05)
    listener.close()
    acceptor.join(DEFAULT_DEADLINE)
    if acceptor.is_alive() or not outcome:
        raise CheckFailed("accept(None) did not end after the listener was closed",
                          "that close() from another thread ends a blocked accept")
    kind, value = outcome[0]
    if kind == "value" or not isinstance(value, ConnectionClosed):
        shown = repr(value) if kind == "value" else describe_call_error(value)
        raise CheckFailed(f"the blocked accept ended with {shown}",
                          "ConnectionClosed once the listener is closed")
    try:
        listener.close()
    except Exception as error:  # noqa: BLE001 - any exception is the finding
        raise CheckFailed(f"a second close() raised {describe_call_error(error)}",
                          "that closing a listener is idempotent") from None

    try:
        stream = call_with_deadline(
            lambda: subject.transport.connect(listener.address, subject.harness.connect_timeout,
                                              subject.harness.client_options),
            "connect to a closed listener",
        )
    except (TransportError, EmberTimeout):
        return
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"connect to a closed listener raised {describe_call_error(error)}",
                          "TransportError naming the address") from None
    stream.close()
    raise CheckFailed("connect to the address of a closed listener succeeded",
                      "TransportError when nothing listens at the address")


@TRANSPORT_CHECKS.add("peer-details")
def check_peer_details(subject: TransportSubject) -> None:
    """Accepted streams provide every declared peer detail, and the default otherwise."""
    _client, server = subject.pair()
    missing = sorted(key for key in subject.capabilities.peer_details
                     if server.get_peer_detail(key) is None)
    if missing:
        raise CheckFailed(f"the accepted stream has no value for {', '.join(missing)}",
                          "every peer detail the capabilities declare")
    marker = object()
    if server.get_peer_detail("conformance-no-such-detail", marker) is not marker:
        raise CheckFailed("get_peer_detail of an unknown key did not return the default",
                          "the default for a key the transport does not provide")
