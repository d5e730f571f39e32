"""Tests for the direct resolver: well-formed direct URIs come back unchanged."""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import re

import pytest

from ember.kernel.errors import UsageError
from ember.plugins.naming import direct as direct_module
from ember.plugins.naming.direct import MAX_URI_LENGTH, DirectResolver

RESOLVER = DirectResolver()
NO_OPTIONS: dict[str, object] = {}

VALID_URIS = [
    "ember+tcp://127.0.0.1:5555/kvstore",
    "ember+tcp://[::1]:5555/kvstore",
    "ember+tcp://example.org:80/a.b_c~d-e",
    "ember+tcp://127.0.0.1:5555/kvstore?serializer=cbor&timeout=2.5",
    "ember+tcp://127.0.0.1:5555/kvstore?",
    "ember+unix://%2Ftmp%2Fember%20socket/kvstore",
    "ember+nacl://127.0.0.1:5555/kvstore?server_key=00ff",
    "EMBER+TCP://127.0.0.1:5555/kvstore",
    "ember+tcp://127.0.0.1:5555/" + "x" * 128,
]


@pytest.mark.parametrize("uri", VALID_URIS)
def test_direct_uri_is_returned_unchanged(uri: str) -> None:
    assert RESOLVER.resolve(uri, NO_OPTIONS) is uri


INVALID_URIS: list[tuple[str, str]] = [
    ("ember+tcp:/127.0.0.1:5555/kvstore", "'://' is missing"),
    ("ember+tcp", "'://' is missing"),
    ("ember+tcp://", "the object id is missing"),
    ("ember+tcp:///", "the object id is missing"),
    ("ember+tcp://127.0.0.1:5555", "the object id is missing"),
    ("ember+tcp://127.0.0.1:5555/", "the object id is missing"),
    ("ember+tcp://127.0.0.1:5555/?serializer=cbor", "the object id is missing"),
    ("ember+tcp:///kvstore", "the address is missing"),
    ("ember+tcp://127.0.0.1:5555/kv%20store", "the object id 'kv%20store'"),
    ("ember+tcp://127.0.0.1:5555/kv:store", "the object id 'kv:store'"),
    ("ember+tcp://127.0.0.1:5555/" + "x" * 129, "1 to 128 characters"),
    ("ember+tcp://127.0.0.1:5555/kv store", "contains ' ' at position 29"),
    ("ember+tcp://127.0.0.1:5555/kv\x00store", "contains '\\x00'"),
    ("ember+tcp://127.0.0.1:5555/kvstore\n", "contains '\\n'"),
    ("ember+name://kvstore/x", "the scheme 'ember+name' is not a direct scheme"),
    ("http://127.0.0.1:5555/kvstore", "the scheme 'http' is not a direct scheme"),
    ("", "'://' is missing"),
]


@pytest.mark.parametrize(
    ("uri", "problem"), INVALID_URIS, ids=[repr(case[0])[:40] for case in INVALID_URIS]
)
def test_malformed_uri_names_the_part(uri: str, problem: str) -> None:
    with pytest.raises(UsageError, match=re.escape(problem)) as caught:
        RESOLVER.resolve(uri, NO_OPTIONS)
    assert repr(uri)[:40] in str(caught.value)


def test_overlong_uri_is_rejected_with_short_message() -> None:
    uri = "ember+tcp://127.0.0.1:5555/" + "x" * (MAX_URI_LENGTH)

    with pytest.raises(UsageError, match=f"more than the limit of {MAX_URI_LENGTH}") as caught:
        RESOLVER.resolve(uri, NO_OPTIONS)
    assert len(str(caught.value)) < 300


def test_megabyte_uri_message_stays_short() -> None:
    uri = "ember+tcp://" + "x" * 1_000_000

    with pytest.raises(UsageError) as caught:
        RESOLVER.resolve(uri, NO_OPTIONS)
    assert len(str(caught.value)) < 300


def test_non_str_uri_is_rejected() -> None:
    with pytest.raises(UsageError, match="expected a str"):
        RESOLVER.resolve(b"ember+tcp://127.0.0.1:5555/kvstore", NO_OPTIONS)  # type: ignore[arg-type]


def test_resolving_from_threads() -> None:
    uris = [f"ember+tcp://127.0.0.1:{5600 + index}/object-{index}" for index in range(8)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda uri: RESOLVER.resolve(uri, NO_OPTIONS), uris * 50))

    assert results == uris * 50


def test_resolver_declares_name_and_schemes() -> None:
    assert RESOLVER.name == "direct"
    assert RESOLVER.schemes == ("ember+tcp", "ember+unix", "ember+nacl")


def test_hook_returns_one_direct_resolver() -> None:
    resolvers = direct_module.ember_resolvers()

    assert [type(resolver) for resolver in resolvers] == [DirectResolver]


def test_entry_point_loads_this_module() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="ember", name="direct")

    assert entry_point.load() is direct_module
