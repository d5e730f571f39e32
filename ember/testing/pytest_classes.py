"""The conformance suite as pytest test classes: subclass one per plugin.

Each class contains one test method per check of its kind, generated from the check
catalog, so a new check reaches every subclass without an edit. A subclass named
``Test...`` sets ``capabilities`` and provides one fixture::

    class TestMsgpack(SerializerConformance):
        capabilities = SerializerCapabilities(types={"none", "int", "str", "list"})

        @pytest.fixture
        def serializer(self):
            return MsgpackSerializer()

The fixture is ``serializer`` for serializers, and ``transport_harness``,
``authenticator_harness`` or ``resolver_harness`` (returning or yielding the harness of
that kind) for the others. A check that needs an undeclared capability is skipped with
the reason; a broken contract fails with what the plugin did and what is required.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from ember.kernel.serializer import Serializer
from ember.testing.authenticator_checks import (
    AUTHENTICATOR_CHECKS,
    AuthenticatorHarness,
    AuthenticatorSubject,
)
from ember.testing.capabilities import (
    AuthenticatorCapabilities,
    ResolverCapabilities,
    SerializerCapabilities,
    TransportCapabilities,
)
from ember.testing.resolver_checks import RESOLVER_CHECKS, ResolverHarness, ResolverSubject
from ember.testing.serializer_checks import SERIALIZER_CHECKS, SerializerSubject
from ember.testing.suite import Check, CheckCatalog, CheckSkipped
from ember.testing.transport_checks import TRANSPORT_CHECKS, TransportHarness, TransportSubject

__all__ = [
    "AuthenticatorConformance",
    "ResolverConformance",
    "SerializerConformance",
    "TransportConformance",
]


def _run(check: Check[Any], subject: object) -> None:
    try:
        check(subject)
    except CheckSkipped as skip:
        pytest.skip(skip.reason)


def _declared(cls: type, expected: type) -> Any:
    capabilities = getattr(cls, "capabilities", None)
    if not isinstance(capabilities, expected):
        raise TypeError(
            f"{cls.__qualname__} must set the class attribute capabilities to a "
            f"{expected.__name__}, got {type(capabilities).__name__}"
        )
    return capabilities


def _install_checks(cls: type, catalog: CheckCatalog[Any]) -> None:
    """Add one ``test_<check>`` method per check of ``catalog`` to ``cls``."""
    for check in catalog:
        def method(self: object, conformance_subject: object,
                   check: Check[Any] = check) -> None:
            _run(check, conformance_subject)

        name = "test_" + check.name.replace("-", "_")
        method.__name__ = name
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        method.__doc__ = check.summary
        method._ember_check = check  # type: ignore[attr-defined]
        setattr(cls, name, method)


class SerializerConformance:
    """Conformance tests of a serializer; provide the ``serializer`` fixture."""

    capabilities: ClassVar[SerializerCapabilities]

    @pytest.fixture
    def conformance_subject(self, serializer: Serializer) -> SerializerSubject:
        return SerializerSubject(serializer, _declared(type(self), SerializerCapabilities))


class TransportConformance:
    """Conformance tests of a transport; provide the ``transport_harness`` fixture."""

    capabilities: ClassVar[TransportCapabilities]

    @pytest.fixture
    def conformance_subject(self, transport_harness: TransportHarness
                            ) -> Iterator[TransportSubject]:
        subject = TransportSubject(transport_harness,
                                   _declared(type(self), TransportCapabilities))
        yield subject
        subject.close_all()
        _close(transport_harness.close)


class AuthenticatorConformance:
    """Conformance tests of an authenticator; provide the ``authenticator_harness`` fixture."""

    capabilities: ClassVar[AuthenticatorCapabilities]

    @pytest.fixture
    def conformance_subject(self, authenticator_harness: AuthenticatorHarness
                            ) -> Iterator[AuthenticatorSubject]:
        yield AuthenticatorSubject(authenticator_harness,
                                   _declared(type(self), AuthenticatorCapabilities))
        _close(authenticator_harness.close)


class ResolverConformance:
    """Conformance tests of a name resolver; provide the ``resolver_harness`` fixture."""

    capabilities: ClassVar[ResolverCapabilities]

    @pytest.fixture
    def conformance_subject(self, resolver_harness: ResolverHarness
                            ) -> Iterator[ResolverSubject]:
        yield ResolverSubject(resolver_harness, _declared(type(self), ResolverCapabilities))
        _close(resolver_harness.close)


def _close(close: Callable[[], None] | None) -> None:
    if close is not None:
        close()


_install_checks(SerializerConformance, SERIALIZER_CHECKS)
_install_checks(TransportConformance, TRANSPORT_CHECKS)
_install_checks(AuthenticatorConformance, AUTHENTICATOR_CHECKS)
_install_checks(ResolverConformance, RESOLVER_CHECKS)
