"""Conformance profiles: how to test an installed plugin that the suite finds only by name.

A pytest subclass declares capabilities and builds its harness in fixtures. An
installed plugin run by ``ember conformance --plugin NAME`` has no test module, so its
distribution publishes a :class:`ConformanceProfile` under the ``ember.conformance``
entry-point group, with the plugin's name as the entry-point name::

    [project.entry-points."ember.conformance"]
    msgpack = "ember_msgpack.conformance:profile"

The entry point may also name a list of profiles when one name is used by plugins of
several kinds. ember's own plugins publish their profiles the same way.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.kernel.errors import PluginError
from ember.kernel.registry import Registry
from ember.testing.authenticator_checks import (
    AUTHENTICATOR_CHECKS,
    AuthenticatorHarness,
    AuthenticatorSubject,
    open_authenticator_subject,
)
from ember.testing.capabilities import (
    AuthenticatorCapabilities,
    ResolverCapabilities,
    SerializerCapabilities,
    TransportCapabilities,
)
from ember.testing.resolver_checks import (
    RESOLVER_CHECKS,
    ResolverHarness,
    ResolverSubject,
    open_resolver_subject,
)
from ember.testing.serializer_checks import SERIALIZER_CHECKS, SerializerSubject
from ember.testing.suite import (
    CheckCatalog,
    CheckResult,
    CheckSkipped,
    ConformanceReport,
    run_checks,
)
from ember.testing.transport_checks import (
    TRANSPORT_CHECKS,
    TransportHarness,
    TransportSubject,
    open_transport_subject,
)

__all__ = [
    "CATALOGS",
    "PROFILE_GROUP",
    "ConformanceProfile",
    "find_profile",
    "lookup_plugin",
    "run_profile",
]

#: The entry-point group that conformance profiles are published under.
PROFILE_GROUP = "ember.conformance"

#: The check catalog of each plugin kind.
CATALOGS: dict[str, CheckCatalog[Any]] = {
    "serializer": SERIALIZER_CHECKS,
    "transport": TRANSPORT_CHECKS,
    "authenticator": AUTHENTICATOR_CHECKS,
    "resolver": RESOLVER_CHECKS,
}

Capabilities = (
    SerializerCapabilities | TransportCapabilities | AuthenticatorCapabilities
    | ResolverCapabilities
)
Harness = TransportHarness | AuthenticatorHarness | ResolverHarness

_KIND_OF_CAPABILITIES: dict[type, str] = {
    SerializerCapabilities: "serializer",
    TransportCapabilities: "transport",
    AuthenticatorCapabilities: "authenticator",
    ResolverCapabilities: "resolver",
}


@dataclass(frozen=True, slots=True)
class ConformanceProfile:
    """The capabilities of one plugin and how to build its harness.

    ``harness(plugin, folder)`` receives the registered plugin object and a fresh
    temporary folder (for socket files and key files) and returns the harness of the
    plugin's kind. A serializer needs no harness, so its profile leaves it ``None``.
    """

    capabilities: Capabilities
    harness: Callable[[Any, Path], Harness] | None = None

    def __post_init__(self) -> None:
        if type(self.capabilities) not in _KIND_OF_CAPABILITIES:
            known = ", ".join(kind.__name__ for kind in _KIND_OF_CAPABILITIES)
            raise TypeError(f"capabilities must be one of {known}, got "
                            f"{type(self.capabilities).__name__}")
        if self.kind != "serializer" and self.harness is None:
            raise TypeError(f"a {self.kind} profile needs a harness function")

    @property
    def kind(self) -> str:
        return _KIND_OF_CAPABILITIES[type(self.capabilities)]


def lookup_plugin(registry: Registry, kind: str, name: str) -> Any:
    """Return the registered plugin object of ``kind`` named ``name``.

    Raises :class:`~ember.kernel.errors.PluginError` if none is registered.
    """
    if kind != "resolver":
        return getattr(registry, kind)(name)
    # The registry looks resolvers up by URI scheme; their records carry the schemes.
    for record in registry.records:
        if (record.kind == "resolver" and record.name == name and record.status == "loaded"
                and record.schemes):
            return registry.resolver_for_scheme(record.schemes[0])
    raise PluginError(f"resolver {name!r} is not registered", plugin=name)


def find_profile(
    name: str,
    kind: str,
    entry_points: Sequence[importlib.metadata.EntryPoint] | None = None,
) -> ConformanceProfile | None:
    """Return the published profile of the ``kind`` plugin ``name``, or ``None``.

    Raises :class:`~ember.kernel.errors.PluginError` naming the entry point when a
    profile entry point fails to load or names something that is not a profile.
    """
    if entry_points is None:
        entry_points = list(importlib.metadata.entry_points(group=PROFILE_GROUP))
    for entry_point in entry_points:
        if entry_point.name != name:
            continue
        where = f"entry point {entry_point.name} = {entry_point.value} of group {PROFILE_GROUP}"
        try:
            loaded = entry_point.load()
        except Exception as error:
            raise PluginError(f"loading the conformance profile failed: {where}: "
                              f"{type(error).__name__}: {error}", plugin=name) from error
        candidates = loaded if isinstance(loaded, list | tuple) else [loaded]
        for candidate in candidates:
            if not isinstance(candidate, ConformanceProfile):
                raise PluginError(
                    f"{where} names {type(candidate).__name__}; expected a "
                    f"ConformanceProfile or a list of them",
                    plugin=name,
                )
            if candidate.kind == kind:
                return candidate
    return None


def run_profile(
    plugin: Any,
    kind: str,
    profile: ConformanceProfile | None,
    *,
    name: str,
    distribution: str = "",
    selected: list[str] | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> ConformanceReport:
    """Run the checks of ``kind`` on the registered ``plugin`` object.

    Without a profile, only the ``declaration`` check runs; every other check is
    reported as skipped, with the reason, because the suite cannot guess capabilities
    or key material. ``progress`` receives each result as soon as it is known.
    """
    catalog = CATALOGS[kind]
    names = catalog.names() if selected is None else list(selected)
    if profile is None:
        report = run_checks(catalog, lambda: _declaration_subject(plugin, kind), plugin=name,
                            distribution=distribution, progress=progress,
                            selected=[check for check in names if check == "declaration"])
        reason = (f"no conformance profile is published for {kind} {name!r} (entry-point "
                  f"group {PROFILE_GROUP}), so its capabilities are unknown")
        for check in names:
            if check != "declaration":
                skipped = CheckResult(check, "skipped", reason)
                report.results.append(skipped)
                if progress is not None:
                    progress(skipped)
        return report

    if profile.kind != kind:
        raise PluginError(f"the conformance profile of {name!r} describes a {profile.kind}, "
                          f"not a {kind}", plugin=name)
    return run_checks(catalog, lambda: _open_subject(plugin, profile), plugin=name,
                      distribution=distribution, selected=names, progress=progress)


@contextlib.contextmanager
def _open_subject(plugin: Any, profile: ConformanceProfile) -> Iterator[Any]:
    capabilities = profile.capabilities
    if isinstance(capabilities, SerializerCapabilities):
        yield SerializerSubject(plugin, capabilities)
        return

    assert profile.harness is not None
    with tempfile.TemporaryDirectory(prefix="ember-conformance-") as folder:
        # Unix socket paths are limited to about 100 bytes, so the folder stays short.
        build = profile.harness

        def factory() -> Any:
            return build(plugin, Path(folder))

        if isinstance(capabilities, TransportCapabilities):
            with open_transport_subject(factory, capabilities) as transport_subject:
                yield transport_subject
        elif isinstance(capabilities, AuthenticatorCapabilities):
            with open_authenticator_subject(factory, capabilities) as authenticator_subject:
                yield authenticator_subject
        else:
            with open_resolver_subject(factory, capabilities) as resolver_subject:
                yield resolver_subject


@contextlib.contextmanager
def _declaration_subject(plugin: Any, kind: str) -> Iterator[Any]:
    """Yield a subject for the declaration check alone, when no profile describes the plugin."""
    if kind == "serializer":
        yield SerializerSubject(plugin, SerializerCapabilities())
    elif kind == "transport":
        # Nothing is declared, so the plugin's own flag replaces the declaration.
        capabilities = TransportCapabilities(encrypted=bool(getattr(plugin, "is_encrypted",
                                                                    False)))
        yield TransportSubject(TransportHarness(plugin, _no_address), capabilities)
    elif kind == "authenticator":
        yield AuthenticatorSubject(AuthenticatorHarness(plugin, {}, {}),
                                   AuthenticatorCapabilities())
    else:
        yield ResolverSubject(ResolverHarness(plugin, _no_publish), ResolverCapabilities())


def _no_address() -> str:
    raise CheckSkipped("no conformance profile names a listen address")


def _no_publish(name: str, target: str) -> str:
    raise CheckSkipped("no conformance profile describes how to publish a name")
