"""ember's conformance suite for plugin authors.

A plugin proves it honours its contract by passing the checks of its kind. Run them in
either of two ways:

- with pytest: subclass :class:`SerializerConformance`, :class:`TransportConformance`,
  :class:`AuthenticatorConformance` or :class:`ResolverConformance`, set
  ``capabilities`` and provide the plugin fixture (see ``docs/plugins.md``);
- without pytest: call :func:`check_serializer`, :func:`check_transport`,
  :func:`check_authenticator` or :func:`check_resolver` with a factory and the
  capabilities, and read the returned :class:`ConformanceReport`.

``ember conformance --plugin NAME`` runs the same checks on an installed plugin. This
package imports pytest only when one of the pytest classes is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.testing.authenticator_checks import (
    AUTHENTICATOR_CHECKS,
    AuthenticatorHarness,
    check_authenticator,
)
from ember.testing.capabilities import (
    AuthenticatorCapabilities,
    ResolverCapabilities,
    SerializerCapabilities,
    TransportCapabilities,
)
from ember.testing.profiles import ConformanceProfile
from ember.testing.resolver_checks import RESOLVER_CHECKS, ResolverHarness, check_resolver
from ember.testing.serializer_checks import SERIALIZER_CHECKS, check_serializer
from ember.testing.suite import (
    CheckFailed,
    CheckResult,
    CheckSkipped,
    ConformanceReport,
)
from ember.testing.transport_checks import TRANSPORT_CHECKS, TransportHarness, check_transport
from ember.testing.values import TYPE_NAMES

if TYPE_CHECKING:
    from ember.testing.pytest_classes import (
        AuthenticatorConformance,
        ResolverConformance,
        SerializerConformance,
        TransportConformance,
    )

__all__ = [
    "AUTHENTICATOR_CHECKS",
    "AuthenticatorCapabilities",
    "AuthenticatorConformance",
    "AuthenticatorHarness",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "ConformanceProfile",
    "ConformanceReport",
    "RESOLVER_CHECKS",
    "ResolverCapabilities",
    "ResolverConformance",
    "ResolverHarness",
    "SERIALIZER_CHECKS",
    "SerializerCapabilities",
    "SerializerConformance",
    "TRANSPORT_CHECKS",
    "TYPE_NAMES",
    "TransportCapabilities",
    "TransportConformance",
    "TransportHarness",
    "check_authenticator",
    "check_resolver",
    "check_serializer",
    "check_transport",
]

_PYTEST_CLASSES = frozenset({
    "AuthenticatorConformance",
    "ResolverConformance",
    "SerializerConformance",
    "TransportConformance",
})


def __getattr__(name: str) -> Any:
    # The pytest classes import pytest, which a plain-function user may not have.
    if name in _PYTEST_CLASSES:
        from ember.testing import pytest_classes

        return getattr(pytest_classes, name)
    raise AttributeError(f"module 'ember.testing' has no attribute {name!r}")
