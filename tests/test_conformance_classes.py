"""The pytest classes of ember.testing, used the way a plugin author uses them.

Each class below is what an author writes: a subclass, one capabilities declaration and
one fixture. The generated test methods then run against real plugins. A last test runs
pytest in a child process with the opt-in plugin and checks its JSON report.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping

import pytest

from ember.kernel.config import Config
from ember.kernel.errors import UsageError
from ember.kernel.resolver import Resolver
from ember.plugins.auth.hmac import HmacAuthenticator
from ember.plugins.serializers.cbor import CborSerializer
from ember.plugins.transports.tcp import TcpTransport
from ember.testing import (
    SERIALIZER_CHECKS,
    TYPE_NAMES,
    AuthenticatorCapabilities,
    AuthenticatorConformance,
    AuthenticatorHarness,
    ResolverCapabilities,
    ResolverConformance,
    ResolverHarness,
    SerializerCapabilities,
    SerializerConformance,
    TransportCapabilities,
    TransportConformance,
    TransportHarness,
)


class TestCborSerializer(SerializerConformance):
    capabilities = SerializerCapabilities(types=frozenset(TYPE_NAMES), formats=("cbor",))

    @pytest.fixture
    def serializer(self):
        return CborSerializer()


class TestTcpTransport(TransportConformance):
    capabilities = TransportCapabilities()

    @pytest.fixture
    def transport_harness(self):
        return TransportHarness(TcpTransport(), listen_address=lambda: "127.0.0.1:0")


class TestHmacAuthenticator(AuthenticatorConformance):
    capabilities = AuthenticatorCapabilities(mutual=True)

    @pytest.fixture
    def authenticator_harness(self):
        base = Config.defaults()
        shared = base.replace(hmac_key=secrets.token_hex(32))
        other = base.replace(hmac_key=secrets.token_hex(32))
        return AuthenticatorHarness(HmacAuthenticator(), client_options=shared,
                                    server_options=shared, wrong_client_options=other,
                                    wrong_server_options=other)


class TableResolver(Resolver):
    """A resolver over an in-memory table: a real, minimal implementation of the contract."""

    name = "table"
    schemes = ("ember+table",)

    def __init__(self) -> None:
        self.table: dict[str, str] = {}
        self.lock = threading.Lock()

    def resolve(self, uri: str, options: Mapping[str, object]) -> str:
        prefix = "ember+table://"
        name = uri[len(prefix):] if uri.startswith(prefix) else ""
        with self.lock:
            target = self.table.get(name)
        if target is None:
            raise UsageError(f"cannot resolve {uri!r}: no name {name!r} in the table")
        return target


class TestTableResolver(ResolverConformance):
    capabilities = ResolverCapabilities()

    @pytest.fixture
    def resolver_harness(self):
        resolver = TableResolver()

        def publish(name: str, target: str) -> str:
            resolver.table[name] = target
            return f"ember+table://{name}"

        return ResolverHarness(resolver, publish=publish,
                               unpublished_uri=lambda name: f"ember+table://{name}")


def test_class_has_one_method_per_check():
    generated = sorted(name for name in vars(SerializerConformance) if name.startswith("test_"))

    assert generated == sorted("test_" + name.replace("-", "_")
                               for name in SERIALIZER_CHECKS.names())


def test_missing_capabilities_named(tmp_path):
    class Undeclared(SerializerConformance):
        pass

    fixture = Undeclared.conformance_subject.__wrapped__  # the function under the marker
    with pytest.raises(TypeError, match="Undeclared must set the class attribute capabilities"):
        fixture(Undeclared(), CborSerializer())


AUTHOR_TESTS = '''
import pytest
from ember.kernel.errors import ProtocolError
from ember.plugins.serializers.cbor import CborSerializer
from ember.testing import TYPE_NAMES, SerializerCapabilities, SerializerConformance


class TrustingSerializer(CborSerializer):
    """Forgets to check the size limit, so one check must fail."""

    def loads(self, data, limits):
        return super().loads(data, type(limits)(max_depth=limits.max_depth))


class TestTrusting(SerializerConformance):
    capabilities = SerializerCapabilities(types=TYPE_NAMES)

    @pytest.fixture
    def serializer(self):
        return TrustingSerializer()


def test_plugin_fixtures(ember_registry, short_tmp_path):
    assert "cbor" in ember_registry.names("serializer")
    assert short_tmp_path.is_dir()
    assert len(str(short_tmp_path / "a-socket-name.sock")) < 100
'''


def test_pytest_plugin_writes_report(tmp_path):
    (tmp_path / "test_author.py").write_text(AUTHOR_TESTS, encoding="utf-8")
    report_path = tmp_path / "report.json"

    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "ember.testing.pytest_plugin", f"--ember-conformance-report={report_path}",
         str(tmp_path / "test_author.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "1 failed" in completed.stdout
    [report] = json.loads(report_path.read_text(encoding="utf-8"))
    outcomes = {check["name"]: check for check in report["checks"]}
    assert report["plugin"] == "TestTrusting"
    assert report["kind"] == "serializer"
    assert outcomes["size-limit"]["outcome"] == "failed"
    assert "max_size" in outcomes["size-limit"]["message"]
    assert outcomes["round-trip-int"]["outcome"] == "passed"
    assert outcomes["known-answers"]["outcome"] == "skipped"
    assert outcomes["known-answers"]["message"] == (
        "no vector file with known answers is declared (formats or vector_files)")
    assert len(outcomes) == len(SERIALIZER_CHECKS)
