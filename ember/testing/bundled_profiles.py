"""Conformance profiles of the plugins shipped with ember.

They are published under the ``ember.conformance`` entry-point group in
``pyproject.toml``, exactly as a third-party distribution publishes its own, so
``ember conformance --plugin cbor`` and ember's own tests find them the same way.
Harnesses create key material with fresh random keys in the check's temporary folder;
nothing here reads the user's environment or key files.
"""

from __future__ import annotations

import os
import secrets
from itertools import count
from pathlib import Path
from typing import Any

from ember.kernel.config import Config
from ember.kernel.transport import PEER_ADDRESS, PEER_GID, PEER_PID, PEER_UID
from ember.testing.authenticator_checks import AuthenticatorHarness
from ember.testing.capabilities import (
    AuthenticatorCapabilities,
    ResolverCapabilities,
    SerializerCapabilities,
    TransportCapabilities,
)
from ember.testing.profiles import ConformanceProfile
from ember.testing.resolver_checks import ResolverHarness
from ember.testing.transport_checks import TransportHarness
from ember.testing.values import TYPE_NAMES

__all__ = [
    "cbor",
    "direct",
    "ed25519",
    "hmac",
    "nacl",
    "nacl_unix",
    "pickle",
    "serpent",
    "tcp",
    "unix",
]

# -- serializers ---------------------------------------------------------------------

#: CBOR carries every type of the catalogue to its own type.
cbor = ConformanceProfile(SerializerCapabilities(
    types=frozenset(TYPE_NAMES), formats=("cbor",), limits_items=True))
#: serpent restores every type of the catalogue (see docs/serializers.md).
serpent = ConformanceProfile(SerializerCapabilities(
    types=frozenset(TYPE_NAMES), formats=("serpent",), limits_items=True))
#: pickle carries every type of the catalogue; its allowlist rejects other classes.
pickle = ConformanceProfile(SerializerCapabilities(
    types=frozenset(TYPE_NAMES), formats=("pickle",), limits_items=True))


# -- transports ----------------------------------------------------------------------


def _tcp_harness(transport: Any, folder: Path) -> TransportHarness:
    return TransportHarness(transport, listen_address=lambda: "127.0.0.1:0")


tcp = ConformanceProfile(TransportCapabilities(peer_details=frozenset({PEER_ADDRESS})),
                         _tcp_harness)


def _socket_paths(folder: Path) -> Any:
    numbers = count()
    return lambda: str(folder / f"s{next(numbers)}.sock")


def _unix_harness(transport: Any, folder: Path) -> TransportHarness:
    return TransportHarness(transport, listen_address=_socket_paths(folder))


unix = ConformanceProfile(
    TransportCapabilities(peer_details=frozenset({PEER_ADDRESS, PEER_UID, PEER_GID, PEER_PID})),
    _unix_harness,
)


def _nacl_options() -> tuple[Config, Config]:
    """Return (server, client) options with a fresh server key the client pins."""
    # Imported here: PyNaCl is needed only when the nacl transports are tested.
    import nacl.public

    private_key = nacl.public.PrivateKey.generate()
    base = Config.defaults()
    server = base.replace(nacl_server_key=bytes(private_key).hex())
    client = base.replace(nacl_server_public_key=bytes(private_key.public_key).hex())
    return server, client


def _nacl_harness(transport: Any, folder: Path) -> TransportHarness:
    server, client = _nacl_options()
    return TransportHarness(transport, listen_address=lambda: "127.0.0.1:0",
                            server_options=server, client_options=client)


def _nacl_unix_harness(transport: Any, folder: Path) -> TransportHarness:
    server, client = _nacl_options()
    return TransportHarness(transport, listen_address=_socket_paths(folder),
                            server_options=server, client_options=client)


nacl = ConformanceProfile(TransportCapabilities(encrypted=True), _nacl_harness)
nacl_unix = ConformanceProfile(TransportCapabilities(encrypted=True), _nacl_unix_harness)


# -- authenticators ------------------------------------------------------------------


def _hmac_harness(authenticator: Any, folder: Path) -> AuthenticatorHarness:
    base = Config.defaults()
    shared = base.replace(hmac_key=secrets.token_hex(32))
    other = base.replace(hmac_key=secrets.token_hex(32))
    return AuthenticatorHarness(authenticator, client_options=shared, server_options=shared,
                                wrong_client_options=other, wrong_server_options=other)


hmac = ConformanceProfile(AuthenticatorCapabilities(mutual=True), _hmac_harness)


def _ed25519_harness(authenticator: Any, folder: Path) -> AuthenticatorHarness:
    import nacl.signing

    client_key = nacl.signing.SigningKey.generate()
    server_key = nacl.signing.SigningKey.generate()
    stranger_key = nacl.signing.SigningKey.generate()
    authorized = folder / "authorized_keys"
    authorized.write_text(f"conformance-client {client_key.verify_key.encode().hex()}\n",
                          encoding="utf-8")
    os.chmod(authorized, 0o600)

    base = Config.defaults()
    server_public = server_key.verify_key.encode().hex()
    return AuthenticatorHarness(
        authenticator,
        client_options=base.replace(ed25519_key=client_key.encode().hex(),
                                    ed25519_server_key=server_public),
        server_options=base.replace(ed25519_key=server_key.encode().hex(),
                                    ed25519_authorized_keys=str(authorized)),
        wrong_client_options=base.replace(ed25519_key=stranger_key.encode().hex(),
                                          ed25519_server_key=server_public),
        wrong_server_options=base.replace(ed25519_key=stranger_key.encode().hex(),
                                          ed25519_authorized_keys=str(authorized)),
        expected_identity="conformance-client",
    )


ed25519 = ConformanceProfile(
    AuthenticatorCapabilities(mutual=True, carries_peer_identity=True), _ed25519_harness
)


# -- resolvers -----------------------------------------------------------------------


def _direct_harness(resolver: Any, folder: Path) -> ResolverHarness:
    # A direct URI is its own name: publishing it changes nothing.
    return ResolverHarness(resolver, publish=lambda name, target: target)


direct = ConformanceProfile(ResolverCapabilities(), _direct_harness)
