"""What a plugin declares about itself, once, for the conformance suite.

Each plugin kind has one frozen dataclass. The suite runs a check that depends on a
capability only when the plugin declares it, and reports the check as skipped with the
reason otherwise, so an undeclared capability is visible in every report instead of
silently passing. Declaring a capability the plugin lacks makes its checks fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ember.kernel.transport import PEER_ADDRESS, PEER_PUBLIC_KEY, PEER_UID
from ember.testing.values import TYPE_NAMES

__all__ = [
    "AuthenticatorCapabilities",
    "ResolverCapabilities",
    "SerializerCapabilities",
    "TransportCapabilities",
]

_MIB = 1024 * 1024


def _frozen_names(values: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a collection of names, not the string {values!r}")
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class SerializerCapabilities:
    """Declaration of a serializer's abilities.

    ``types`` names the value types that round-trip to their own type (see
    :data:`ember.testing.values.TYPE_NAMES`). ``formats`` selects vector files shipped
    with ember, such as ``("cbor",)`` for the ``serializer-cbor.jsonl`` known answers
    and hostile inputs; ``vector_files`` adds the plugin's own files (paths). With
    ``rejects_unknown_types`` the serializer promises to raise SerializationError for
    any value outside ``types``; a serializer that encodes arbitrary objects sets it to
    ``False``. With ``limits_items`` it promises to enforce ``DecodeLimits.max_items``,
    counting one item per value of a plain list or dict.
    """

    types: frozenset[str] = frozenset()
    formats: tuple[str, ...] = ()
    vector_files: tuple[str, ...] = ()
    rejects_unknown_types: bool = True
    limits_items: bool = False
    #: Size in bytes of the largest value the limit checks encode (a bytes value, or a
    #: str when bytes is not declared).
    large_value_size: int = 4 * _MIB

    def __post_init__(self) -> None:
        types = _frozen_names(self.types, "types")
        unknown = sorted(types - set(TYPE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown type names {', '.join(map(repr, unknown))}; known type names: "
                f"{', '.join(TYPE_NAMES)}"
            )
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "vector_files", tuple(str(path) for path in self.vector_files))
        if self.large_value_size < 1:
            raise ValueError(f"large_value_size must be positive, got {self.large_value_size}")


@dataclass(frozen=True, slots=True)
class TransportCapabilities:
    """Declaration of a transport's abilities.

    ``encrypted`` must equal the transport's ``is_encrypted``. ``peer_details`` lists
    the :meth:`~ember.kernel.transport.Stream.get_peer_detail` keys that an accepted
    stream provides (``peer_uid`` or ``peer_public_key`` carry the peer's identity).
    ``max_message_size`` is the body size of the largest frame the suite sends through
    the transport, and one byte over it is the frame that must be rejected.
    ``half_close`` says that ``shutdown_write`` keeps the other direction open.
    """

    encrypted: bool = False
    peer_details: frozenset[str] = field(default_factory=lambda: frozenset({PEER_ADDRESS}))
    max_message_size: int = 16 * _MIB
    half_close: bool = True
    #: Parallel connections the concurrency check opens.
    concurrent_connections: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_details", _frozen_names(self.peer_details,
                                                               "peer_details"))
        if self.max_message_size < 1024:
            raise ValueError(
                f"max_message_size must be at least 1024 bytes, got {self.max_message_size}"
            )
        if self.concurrent_connections < 2:
            raise ValueError(
                f"concurrent_connections must be at least 2, got {self.concurrent_connections}"
            )

    @property
    def carries_peer_identity(self) -> bool:
        """``True`` when accepted streams name the peer by uid or public key."""
        return bool(self.peer_details & {PEER_UID, PEER_PUBLIC_KEY})


@dataclass(frozen=True, slots=True)
class AuthenticatorCapabilities:
    """Declaration of an authenticator's abilities.

    ``mutual``: the client also verifies the server, so a server holding the wrong key
    fails the client's handshake. ``carries_peer_identity``: the server's session names
    the client in ``peer_identity``. ``needs_key_material``: a handshake without key
    settings raises UsageError instead of running.
    """

    mutual: bool = False
    carries_peer_identity: bool = False
    needs_key_material: bool = True


@dataclass(frozen=True, slots=True)
class ResolverCapabilities:
    """Declaration of a resolver's abilities.

    ``uses_service``: resolving asks a lookup service over the network, which must
    raise TransportError when it cannot be reached (the harness names an unreachable
    one).
    """

    uses_service: bool = False
