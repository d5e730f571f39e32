"""Conformance checks for name resolvers, callable without pytest.

A :class:`ResolverHarness` describes to the suite how to make a name resolvable (publish it)
and how to spell a name that was never published. The checks then verify the contract
of :class:`~ember.kernel.resolver.Resolver`: a published name resolves to exactly its
direct URI, an unknown or malformed URI raises UsageError naming it, a result that
falls back into the resolver's own schemes is a fixed point, and resolving is safe from
several threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ember.kernel.errors import TransportError, UsageError
from ember.kernel.resolver import Resolver
from ember.kernel.serializer import PLUGIN_NAME_PATTERN
from ember.remote.uri import URI
from ember.testing.capabilities import ResolverCapabilities
from ember.testing.suite import (
    CheckCatalog,
    CheckFailed,
    CheckSkipped,
    ConformanceReport,
    call_with_deadline,
    describe_call_error,
    run_checks,
)
from ember.testing.vectors import read_resolver_vectors, shipped_vector_file

__all__ = ["RESOLVER_CHECKS", "ResolverHarness", "ResolverSubject", "check_resolver"]

RESOLVER_CHECKS: CheckCatalog[ResolverSubject] = CheckCatalog("resolver")

# Direct URIs the checks publish; nothing listens there, because resolving never connects.
_TARGETS = (
    "ember+tcp://127.0.0.1:5555/conformance-a",
    "ember+tcp://[::1]:6000/conformance_b?serializer=cbor",
    "ember+unix://%2Ftmp%2Fconformance%20socket/conformance.c",
)


@dataclass(slots=True)
class ResolverHarness:
    """The resolver and the callbacks the suite needs to exercise it.

    ``publish(name, direct_uri)`` makes ``name`` resolvable and returns the URI that
    must now resolve to ``direct_uri``; a resolver without names of its own (one that
    accepts direct URIs) returns ``direct_uri`` itself. ``unpublished_uri(name)`` spells
    a URI for a name that was never published, or is ``None`` for such a resolver.
    ``unreachable_uri`` is a URI whose lookup service cannot be reached, for a resolver
    that declares ``uses_service``. ``close`` releases what the harness created.
    """

    resolver: Resolver
    publish: Callable[[str, str], str]
    unpublished_uri: Callable[[str], str] | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    unreachable_uri: str | None = None
    close: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class ResolverSubject:
    """A resolver harness with the resolver's declared capabilities."""

    harness: ResolverHarness
    capabilities: ResolverCapabilities

    @property
    def resolver(self) -> Resolver:
        return self.harness.resolver


@contextlib.contextmanager
def open_resolver_subject(
    factory: Callable[[], ResolverHarness], capabilities: ResolverCapabilities
) -> Iterator[ResolverSubject]:
    """Create a harness with ``factory`` and close it when the check ends."""
    harness = factory()
    try:
        yield ResolverSubject(harness, capabilities)
    finally:
        if harness.close is not None:
            harness.close()


def check_resolver(
    factory: Callable[[], ResolverHarness],
    capabilities: ResolverCapabilities,
    *,
    selected: list[str] | None = None,
) -> ConformanceReport:
    """Run the resolver checks without pytest and return the report.

    ``factory`` is called once per check and returns a fresh harness.
    """
    with open_resolver_subject(factory, capabilities) as probe:
        plugin = str(getattr(probe.resolver, "name", "resolver"))
    return run_checks(RESOLVER_CHECKS, lambda: open_resolver_subject(factory, capabilities),
                      plugin=plugin, selected=selected)


def _resolve(subject: ResolverSubject, uri: str) -> str:
    resolver = subject.resolver
    return call_with_deadline(lambda: resolver.resolve(uri, subject.harness.options),
                              f"resolve({_short(uri)})")


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


def _expect_usage_error(subject: ResolverSubject, uri: str, why: str) -> UsageError:
    try:
        result = _resolve(subject, uri)
    except UsageError as error:
        return error
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"resolve({_short(uri)}) raised {describe_call_error(error)}",
                          f"UsageError for {why}") from None
    raise CheckFailed(f"resolve({_short(uri)}) returned {_short(str(result))}",
                      f"UsageError for {why}")



# -- checks --------------------------------------------------------------------------


@RESOLVER_CHECKS.add("declaration")
def check_declaration(subject: ResolverSubject) -> None:
    """The resolver is a Resolver with a valid name and lowercase URI schemes."""
    resolver = subject.resolver
    if not isinstance(resolver, Resolver):
        raise CheckFailed(f"the plugin object is a {type(resolver).__name__}",
                          "a subclass instance of ember.kernel.resolver.Resolver")
    name = getattr(resolver, "name", None)
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.fullmatch(name):
        raise CheckFailed(f"name is {name!r}",
                          "a name of 1 to 32 lowercase letters, digits, '_' or '-'")
    schemes = getattr(resolver, "schemes", None)
    if not isinstance(schemes, tuple) or not schemes:
        raise CheckFailed(f"schemes is {schemes!r}", "a non-empty tuple of URI schemes")
    for scheme in schemes:
        if not isinstance(scheme, str) or scheme != scheme.lower() or "://" in scheme:
            raise CheckFailed(f"schemes contains {scheme!r}",
                              "lowercase schemes without '://', such as 'ember+name'")


@RESOLVER_CHECKS.add("resolves-published")
def check_resolves_published(subject: ResolverSubject) -> None:
    """Each published name resolves to exactly the direct URI it was published with."""
    for index, target in enumerate(_TARGETS):
        name = f"conformance-name-{index}"
        uri = subject.harness.publish(name, target)
        result = _resolve(subject, uri)
        if result != target:
            raise CheckFailed(f"resolve({_short(uri)}) returned {_short(str(result))}, "
                              f"published as {_short(target)}",
                              "the direct URI the name was published with")


@RESOLVER_CHECKS.add("result-is-direct")
def check_result_is_direct(subject: ResolverSubject) -> None:
    """Every result is a direct URI, and resolving it again (in own schemes) changes nothing."""
    resolver = subject.resolver
    for index, target in enumerate(_TARGETS):
        uri = subject.harness.publish(f"conformance-direct-{index}", target)
        result = _resolve(subject, uri)
        if not isinstance(result, str):
            raise CheckFailed(f"resolve returned {type(result).__name__}", "a str")
        try:
            parsed = URI.parse(result)
        except UsageError as error:
            raise CheckFailed(f"resolve({_short(uri)}) returned {_short(result)}, which "
                              f"does not parse: {error}",
                              "a direct URI ember+TRANSPORT://ADDRESS/OBJECT_ID") from None
        if parsed.scheme in resolver.schemes:
            again = _resolve(subject, result)
            if again != result:
                raise CheckFailed(
                    f"resolving the result {_short(result)} again returned {_short(again)}",
                    "that a direct URI passed in is returned unchanged",
                )


@RESOLVER_CHECKS.add("unknown-name-rejected")
def check_unknown_name(subject: ResolverSubject) -> None:
    """An unpublished name raises UsageError whose message names the URI or the name."""
    unpublished = subject.harness.unpublished_uri
    if unpublished is None:
        raise CheckSkipped("the resolver has no names of its own: it resolves every "
                           "well-formed direct URI")
    name = "conformance-never-published"
    uri = unpublished(name)
    error = _expect_usage_error(subject, uri, "a name that was never published")
    if name not in str(error):
        raise CheckFailed(f"the UsageError for {_short(uri)} reads {str(error)!r}",
                          "the message to name the URI that cannot be resolved")


@RESOLVER_CHECKS.add("malformed-uris")
def check_malformed_uris(subject: ResolverSubject) -> None:
    """Each malformed URI of the shipped vectors raises UsageError in bounded time."""
    path = shipped_vector_file("resolver-uris.jsonl")
    if path is None:
        raise CheckFailed("ember ships no resolver-uris.jsonl", "the shipped vector file")
    problems = []
    for vector in read_resolver_vectors(path):
        for scheme in subject.resolver.schemes:
            uri = vector.uri.replace("{scheme}", scheme)
            try:
                _expect_usage_error(subject, uri, "a malformed URI")
            except CheckFailed as failure:
                problems.append(f"{vector.where} {vector.id}: {failure.observed}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckFailed("; ".join(problems[:5]) + more,
                          "UsageError naming the URI for every malformed URI")


@RESOLVER_CHECKS.add("thread-safety")
def check_thread_safety(subject: ResolverSubject) -> None:
    """Eight threads resolving different names at once each get their own target."""
    uris = {}
    for index in range(8):
        target = f"ember+tcp://127.0.0.1:{5600 + index}/threaded-{index}"
        uris[subject.harness.publish(f"conformance-thread-{index}", target)] = target
    failures: list[str] = []
    start = threading.Barrier(len(uris))

    def work(uri: str, target: str) -> None:
        start.wait()
        for _ in range(50):
            try:
                result = subject.resolver.resolve(uri, subject.harness.options)
            except Exception as error:  # noqa: BLE001 - collected for the report
                failures.append(f"resolve({_short(uri)}) raised {describe_call_error(error)}")
                return
            if result != target:
                failures.append(f"resolve({_short(uri)}) returned {_short(result)}")
                return

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in uris.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if any(thread.is_alive() for thread in threads):
        raise CheckFailed("resolving from 8 threads did not finish within 30 s",
                          "that resolve is safe to call from several threads")
    if failures:
        raise CheckFailed("; ".join(failures[:3]),
                          "that resolve is safe to call from several threads at once")


@RESOLVER_CHECKS.add("unreachable-service")
def check_unreachable_service(subject: ResolverSubject) -> None:
    """A lookup service that cannot be reached raises TransportError in bounded time."""
    if not subject.capabilities.uses_service:
        raise CheckSkipped("the resolver declares no lookup service (uses_service)")
    uri = subject.harness.unreachable_uri
    if uri is None:
        raise CheckFailed("the harness names no unreachable_uri",
                          "a harness for a resolver with uses_service to name one")
    try:
        result = _resolve(subject, uri)
    except TransportError:
        return
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the finding
        raise CheckFailed(f"resolve({_short(uri)}) raised {describe_call_error(error)}",
                          "TransportError when the lookup service cannot be reached") from None
    raise CheckFailed(f"resolve({_short(uri)}) returned {_short(result)}",
                      "TransportError when the lookup service cannot be reached")
