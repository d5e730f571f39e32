"""Small but working implementations of the four contracts, shared by the fixtures."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping

from ember.kernel.authenticator import Authenticator, HandshakeChannel, Session
from ember.kernel.errors import ProtocolError, SerializationError, UsageError
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import DecodeLimits, Serializer
from ember.kernel.transport import Address, Listener, Stream, Transport


class JsonSerializer(Serializer):
    name = "json"
    wire_id = 0x7E01

    def dumps(self, value: object) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"json cannot encode a value of type {type(value).__name__}"
            ) from exc

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        if len(data) > limits.max_size:
            raise ProtocolError(f"body of {len(data)} bytes exceeds {limits.max_size}")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"invalid json body: {exc}") from exc


class UnsafePickleSerializer(Serializer):
    """A serializer whose decoding can run code, like the real pickle plugin."""

    name = "unsafe-pickle"
    wire_id = 0x7E02
    is_safe = False

    def dumps(self, value: object) -> bytes:
        return pickle.dumps(value)

    def loads(self, data: bytes, limits: DecodeLimits) -> object:
        return pickle.loads(data)


class InertTransport(Transport):
    """A transport that only parses addresses; registry tests never move bytes."""

    name = "plain"

    def parse_address(self, text: str, *, listening: bool = False) -> Address:
        return text

    def format_address(self, address: Address) -> str:
        return str(address)

    def is_loopback(self, address: Address) -> bool:
        return True

    def listen(self, address: Address, options: Mapping[str, object]) -> Listener:
        raise UsageError(f"transport {self.name!r} is a registry test fixture and cannot listen")

    def connect(self, address: Address, timeout: float, options: Mapping[str, object]) -> Stream:
        raise UsageError(f"transport {self.name!r} is a registry test fixture and cannot connect")


class SealedTransport(InertTransport):
    name = "sealed"
    is_encrypted = True


class FixtureAuthenticator(Authenticator):
    name = "fixture-auth"

    def client_handshake(self, channel: HandshakeChannel, options: Mapping[str, object]) -> Session:
        raise UsageError("fixture-auth is a registry test fixture and runs no handshake")

    def server_handshake(self, channel: HandshakeChannel, options: Mapping[str, object]) -> Session:
        raise UsageError("fixture-auth is a registry test fixture and runs no handshake")


class FixtureResolver(Resolver):
    name = "fixture-names"
    schemes = ("ember+fixture",)

    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        return uri.replace("ember+fixture://", "ember+plain://", 1)
