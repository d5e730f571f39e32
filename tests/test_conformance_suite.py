"""The conformance suite fails plugins that break their contract, and reports how.

Each plugin here is a real, working implementation with one deliberate fault, mostly a
thin wrapper around a bundled plugin. Every test runs the plain-function form of the
suite and checks that the right check fails with a message naming the fault, and that
the checks the fault does not touch still pass.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import struct
import threading
from collections.abc import Mapping

import cbor2
import pytest

from ember.kernel.authenticator import Authenticator, HandshakeChannel, Session
from ember.kernel.config import Config
from ember.kernel.errors import ConnectionClosed, ProtocolError, SecurityError, UsageError
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.kernel.transport import Address, Listener, Stream, Transport
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.transports.tcp import TcpTransport
from ember.testing import (
    AuthenticatorCapabilities,
    AuthenticatorHarness,
    ResolverCapabilities,
    ResolverHarness,
    SerializerCapabilities,
    TransportCapabilities,
    TransportHarness,
    check_authenticator,
    check_resolver,
    check_serializer,
    check_transport,
)
from ember.testing.suite import ConformanceReport
from ember.testing.vectors import VectorError, read_serializer_vectors


def outcomes(report: ConformanceReport) -> dict[str, tuple[str, str]]:
    return {result.check: (result.outcome, result.message) for result in report.results}


# -- serializers -------------------------------------------------------------------


class UnhardenedCbor(CborSerializer):
    """Decodes with plain cbor2, without ember's tag allowlist or limits."""

    name = "unhardened"

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        try:
            return cbor2.loads(data)
        except cbor2.CBORDecodeError as error:
            raise ProtocolError(str(error)) from error


def test_undeclared_decoded_type_fails():
    capabilities = SerializerCapabilities(types={"none", "int", "list"}, formats=("cbor",))

    report = check_serializer(UnhardenedCbor, capabilities,
                              selected=["garbage-bytes", "hostile-vectors", "round-trip-int"])

    results = outcomes(report)
    assert results["round-trip-int"] == ("passed", "")
    outcome, message = results["garbage-bytes"]
    assert outcome == "failed"
    assert "returns only values of the declared types" in message
    outcome, message = results["hostile-vectors"]
    assert outcome == "failed"
    assert "trailing-byte: loads returned 0 (int)" in message


class LengthPrefixed(Serializer):
    """Bytes behind a 4-byte length; it trusts the length and allocates it up front."""

    name = "length-prefixed"
    wire_id = 0x7F01

    def dumps(self, value: object) -> bytes:
        if type(value) is not bytes:
            raise UsageError(f"cannot encode {type(value).__name__}")
        return struct.pack(">I", len(value)) + value

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        if len(data) < 4:
            raise ProtocolError("body shorter than its length field")
        (length,) = struct.unpack_from(">I", data)
        buffer = bytearray(length)
        body = data[4:]
        if len(body) != length:
            raise ProtocolError(f"body has {len(body)} bytes, its length says {length}")
        buffer[:] = body
        return bytes(buffer)


def test_allocation_from_declared_length_fails(tmp_path):
    vectors = tmp_path / "length-prefixed.jsonl"
    vectors.write_text(
        '{"id": "claims-64-mib", "expect": "reject", "hex": "04000000"}\n'
        '{"id": "short", "expect": "value", "hex": "0000000100", "value": {"$bytes": "00"}}\n',
        encoding="utf-8",
    )
    capabilities = SerializerCapabilities(types={"bytes"}, vector_files=(str(vectors),))

    report = check_serializer(LengthPrefixed, capabilities,
                              selected=["hostile-vectors", "known-answers"])

    results = outcomes(report)
    assert results["known-answers"] == ("passed", "")
    outcome, message = results["hostile-vectors"]
    assert outcome == "failed"
    assert "claims-64-mib: decoding it allocated" in message


def test_unknown_format_named():
    capabilities = SerializerCapabilities(types={"int"}, formats=("cbr",))

    [result] = check_serializer(CborSerializer, capabilities,
                                selected=["known-answers"]).results

    assert result.outcome == "failed"
    assert "format 'cbr'" in result.message


def test_vector_file_error_names_line(tmp_path):
    vectors = tmp_path / "bad.jsonl"
    vectors.write_text('# comment\n{"id": "a", "expect": "value", "hex": "00"}\n',
                       encoding="utf-8")

    with pytest.raises(VectorError, match=r"bad\.jsonl:2: a vector expecting a value"):
        read_serializer_vectors(vectors)


# -- transports ------------------------------------------------------------------------


class WrappedStream(Stream):
    def __init__(self, inner: Stream) -> None:
        self.inner = inner

    def read(self, max_bytes: int) -> bytes:
        return self.inner.read(max_bytes)

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def set_timeout(self, seconds: float | None) -> None:
        self.inner.set_timeout(seconds)

    def shutdown_write(self) -> None:
        self.inner.shutdown_write()

    def close(self) -> None:
        self.inner.close()

    def get_peer_detail(self, key: str, default: object = None) -> object:
        return self.inner.get_peer_detail(key, default)


class GreedyStream(WrappedStream):
    """Returns up to 16 bytes more than asked for."""

    def read(self, max_bytes: int) -> bytes:
        return self.inner.read(max_bytes + 16)


class ForgetfulStream(WrappedStream):
    """Pretends the peer closed when the stream itself was closed."""

    def read(self, max_bytes: int) -> bytes:
        try:
            return self.inner.read(max_bytes)
        except ConnectionClosed:
            return b""


class WrappedListener(Listener):
    def __init__(self, inner: Listener, wrap: type[WrappedStream]) -> None:
        self.inner = inner
        self.wrap = wrap
        self.address = inner.address

    def accept(self, timeout: float | None) -> Stream | None:
        stream = self.inner.accept(timeout)
        return None if stream is None else self.wrap(stream)

    def close(self) -> None:
        self.inner.close()


class WrappedTransport(Transport):
    name = "wrapped"

    def __init__(self, wrap: type[WrappedStream]) -> None:
        self.inner = TcpTransport()
        self.wrap = wrap

    def parse_address(self, text: str, *, listening: bool = False) -> Address:
        return self.inner.parse_address(text, listening=listening)

    def format_address(self, address: Address) -> str:
        return self.inner.format_address(address)

    def is_loopback(self, address: Address) -> bool:
        return self.inner.is_loopback(address)

    def listen(self, address: Address, options: Mapping[str, object]) -> Listener:
        return WrappedListener(self.inner.listen(address, options), self.wrap)

    def connect(self, address: Address, timeout: float, options: Mapping[str, object]) -> Stream:
        return self.wrap(self.inner.connect(address, timeout, options))


def transport_factory(wrap: type[WrappedStream]):
    return lambda: TransportHarness(WrappedTransport(wrap), listen_address=lambda: "127.0.0.1:0")


def test_read_over_max_bytes_fails():
    report = check_transport(transport_factory(GreedyStream), TransportCapabilities(),
                             selected=["frame-split-every-boundary", "declaration"])

    results = outcomes(report)
    assert results["declaration"] == ("passed", "")
    outcome, message = results["frame-split-every-boundary"]
    assert outcome == "failed"
    assert re.search(r"read\(\d+\) returned \d+ bytes", message) is not None
    assert "at most max_bytes" in message


def test_read_after_close_fails():
    report = check_transport(transport_factory(ForgetfulStream), TransportCapabilities(),
                             selected=["use-after-close", "bytes-both-directions"])

    results = outcomes(report)
    assert results["bytes-both-directions"] == ("passed", "")
    assert results["use-after-close"] == (
        "failed",
        "read after close() succeeded; the contract requires ConnectionClosed from read "
        "after close()",
    )


def test_capabilities_must_match_flag():
    [result] = check_transport(transport_factory(WrappedStream),
                               TransportCapabilities(encrypted=True),
                               selected=["declaration"]).results

    assert result.outcome == "failed"
    assert "is_encrypted is False but the capabilities declare encrypted=True" in result.message


# -- authenticators --------------------------------------------------------------------


class UncountedSession(Session):
    """Tags each frame with an HMAC of the frame alone: no direction, no sequence."""

    tag_size = 32

    def __init__(self, key: bytes) -> None:
        self.key = key

    def seal(self, frame: bytes) -> bytes:
        return hmac.new(self.key, frame, hashlib.sha256).digest()

    def verify(self, frame: bytes, tag: bytes) -> None:
        if not hmac.compare_digest(self.seal(frame), tag):
            raise SecurityError("frame tag mismatch")


class UncountedAuthenticator(Authenticator):
    """Exchanges fresh nonces and derives a key from them, but never counts frames."""

    name = "uncounted"

    def client_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        nonce = secrets.token_bytes(16)
        channel.send(nonce)
        reply = channel.receive()
        return UncountedSession(hashlib.sha256(nonce + reply).digest())

    def server_handshake(self, channel: HandshakeChannel,
                         options: Mapping[str, object]) -> Session:
        nonce = channel.receive()
        reply = secrets.token_bytes(16)
        channel.send(reply)
        return UncountedSession(hashlib.sha256(nonce + reply).digest())


def test_replay_and_reflection_detected():
    capabilities = AuthenticatorCapabilities(needs_key_material=False)
    options = Config.defaults()

    report = check_authenticator(
        lambda: AuthenticatorHarness(UncountedAuthenticator(), options, options),
        capabilities,
        selected=["frames-both-directions", "session-attacks", "tamper-each-byte",
                  "independent-sessions"],
    )

    results = outcomes(report)
    assert results["tamper-each-byte"] == ("passed", "")
    assert results["independent-sessions"] == ("passed", "")
    outcome, message = results["frames-both-directions"]
    assert outcome == "failed"
    assert "gave two identical frames the same tag" in message
    outcome, message = results["session-attacks"]
    assert outcome == "failed"
    assert "replay-client-frame: delivery 1 (client frame 0 to the server): verify accepted it" \
        in message


# -- resolvers ---------------------------------------------------------------------------


class CarelessResolver(Resolver):
    """Looks names up in a dict and lets KeyError escape for an unknown one."""

    name = "careless"
    schemes = ("ember+careless",)

    def __init__(self) -> None:
        self.table: dict[str, str] = {}
        self.lock = threading.Lock()

    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        with self.lock:
            return self.table[uri.removeprefix("ember+careless://")]


def careless_harness() -> ResolverHarness:
    resolver = CarelessResolver()

    def publish(name: str, target: str) -> str:
        resolver.table[name] = target
        return f"ember+careless://{name}"

    return ResolverHarness(resolver, publish=publish,
                           unpublished_uri=lambda name: f"ember+careless://{name}")


def test_resolver_errors_must_be_usage_errors():
    report = check_resolver(careless_harness, ResolverCapabilities(),
                            selected=["resolves-published", "unknown-name-rejected",
                                      "malformed-uris"])

    results = outcomes(report)
    assert results["resolves-published"] == ("passed", "")
    outcome, message = results["unknown-name-rejected"]
    assert outcome == "failed"
    assert "raised KeyError" in message
    assert "UsageError for a name that was never published" in message
    assert results["malformed-uris"][0] == "failed"


def test_report_serializes_to_json():
    report = check_resolver(careless_harness, ResolverCapabilities(),
                            selected=["declaration", "unreachable-service"])

    data = json.loads(json.dumps(report.to_dict()))

    assert data["plugin"] == "careless"
    assert data["kind"] == "resolver"
    assert data["summary"] == {"passed": 1, "failed": 0, "skipped": 1}
    assert data["checks"][1]["message"] == (
        "the resolver declares no lookup service (uses_service)")
