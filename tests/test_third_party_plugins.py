"""The third-party plugin path, proven with real installs, processes and sockets.

The two example packages under examples/ are installed into this environment with pip
(once; again only when their sources changed), exactly as a user installs a plugin. They
are then composed by name in configuration, in URIs and in code, called across
processes, and run through the conformance suite. A deliberately broken distribution,
installed into a temporary folder only, shows the registry reporting each fault while
ember keeps working, and the suite failing with precise messages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember import Proxy, SecurityError
from ember.kernel.config import Config
from ember.kernel.registry import Registry, reset_registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "ember-msgpack": (ROOT / "examples" / "ember-msgpack", "ember_msgpack"),
    "ember-filenames": (ROOT / "examples" / "ember-filenames", "ember_filenames"),
}
BROKEN_PLUGIN = Path(__file__).resolve().parent / "broken_plugin"

STARTUP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 300

SERVER = '''
import sys

from ember import Daemon, expose


@expose
class Store:
    def __init__(self):
        self.data = {}

    def put(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data[key]


with Daemon() as daemon:
    uri = daemon.register(Store(), object_id="kvstore")
    daemon.start()
    with open(sys.argv[1], "w", encoding="utf-8") as names:
        names.write(f"kvstore {uri}\\n")
    print(uri, flush=True)
    sys.stdin.read()
'''

CLIENT = '''
from ember import Proxy

with Proxy("ember+file://localhost/kvstore") as store:
    store.put("from", "a client configured by its environment")
    print(store.get("from"))
'''


# -- installing ----------------------------------------------------------------------


def pip_install(source: Path, *options: str) -> None:
    """Install ``source`` with pip from a copy, so no build files land in the repository."""
    with tempfile.TemporaryDirectory(prefix="ember-install-") as folder:
        copy = Path(folder) / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", "tests"))
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *options]
        # Without the wheel package, setuptools before 70.1 cannot build in this
        # environment; pip then builds in an isolated one, which downloads setuptools.
        if importlib.util.find_spec("wheel") is not None:
            command.append("--no-build-isolation")
        completed = subprocess.run([*command, str(copy)], capture_output=True, text=True,
                                   timeout=COMMAND_TIMEOUT, check=False)
    assert completed.returncode == 0, f"pip failed:\n{completed.stdout}{completed.stderr}"


def is_current(distribution_name: str, source: Path, package: str) -> bool:
    """Return ``True`` if the installed distribution matches ``source``.

    Both the package files and the entry points must be the same, so an edit to either
    leads to a new install.
    """
    try:
        distribution = importlib.metadata.distribution(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        return False

    for path in sorted((source / package).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        installed = Path(str(distribution.locate_file(path.relative_to(source))))
        if not installed.is_file() or installed.read_bytes() != path.read_bytes():
            return False

    project = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {(group, name, value)
                for group, entries in project.get("entry-points", {}).items()
                for name, value in entries.items()}
    installed_points = {(point.group, point.name, point.value)
                        for point in distribution.entry_points}
    return declared == installed_points


@pytest.fixture(scope="session")
def installed_examples() -> None:
    """Install both example plugins into this environment unless they are current."""
    installed = False
    for distribution, (source, package) in EXAMPLES.items():
        if not is_current(distribution, source, package):
            pip_install(source, "--force-reinstall")
            installed = True
    importlib.invalidate_caches()
    if installed:
        # Earlier tests may have loaded the process-wide registry without the examples.
        reset_registry()


@pytest.fixture(scope="session")
def broken_plugin_path(tmp_path_factory) -> Path:
    """Install the broken distribution into a temporary folder, never into the venv."""
    target = tmp_path_factory.mktemp("broken-plugin")
    pip_install(BROKEN_PLUGIN, "--target", str(target))
    return target


def clean_environment(**variables: str) -> dict[str, str]:
    """Return this process's environment without EMBER_* variables, plus ``variables``."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("EMBER_")}
    environment.update(variables)
    return environment


def run_ember(*arguments: str, environment: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ember", *arguments], capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT, check=False,
                          env=environment or clean_environment())


# -- a daemon in another process -----------------------------------------------------


@pytest.fixture
def msgpack_daemon(installed_examples, tmp_path) -> Iterator[tuple[str, Path]]:
    """Start a daemon configured by name (EMBER_SERIALIZER=msgpack) in a child process.

    Yields its URI and the names file it wrote; closing its stdin stops it, and it is
    killed by PID if it does not stop.
    """
    script = tmp_path / "server.py"
    script.write_text(SERVER, encoding="utf-8")
    names = tmp_path / "names.txt"
    child = subprocess.Popen(
        [sys.executable, str(script), str(names)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=clean_environment(EMBER_SERIALIZER="msgpack", EMBER_ACCEPTED_SERIALIZERS="msgpack"),
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], STARTUP_TIMEOUT)
        line = child.stdout.readline().strip() if ready else ""
        assert line.startswith("ember+tcp://127.0.0.1:"), (
            f"the daemon did not start (exit code {child.poll()})")
        yield line, names
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


# -- the examples ----------------------------------------------------------------------


def test_examples_register_by_name(installed_examples):
    registry = Registry.load(Config.defaults())

    records = {(record.kind, record.name): record for record in registry.records}
    assert records[("serializer", "msgpack")].status == "loaded"
    assert records[("serializer", "msgpack")].distribution == "ember-msgpack"
    assert records[("resolver", "filenames")].status == "loaded"
    assert registry.resolver_for_scheme("ember+file").name == "filenames"


def test_stack_composed_from_names(installed_examples):
    registry = Registry.load(Config.defaults())

    stack = registry.compose(serializer="msgpack", transport="tcp",
                             accepted_serializers=("cbor",))

    assert stack.describe() == "msgpack over tcp, no authenticator, also accepting cbor"


def test_call_through_resolver_and_uri_option(msgpack_daemon):
    _, names = msgpack_daemon

    with Proxy(f"ember+file://localhost/kvstore?names={names}&serializer=msgpack",
               config=Config.defaults()) as store:
        store.put("numbers", [1, 2, {"three": 3.0}])
        assert store.get("numbers") == [1, 2, {"three": 3.0}]


def test_call_with_serializer_in_code(msgpack_daemon):
    uri, _ = msgpack_daemon

    with Proxy(uri, config=Config.defaults(), serializer="msgpack") as store:
        store.put("bytes", b"\x00\xff")
        assert store.get("bytes") == b"\x00\xff"


def test_call_configured_by_environment(msgpack_daemon, tmp_path):
    _, names = msgpack_daemon
    script = tmp_path / "client.py"
    script.write_text(CLIENT, encoding="utf-8")

    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False,
        timeout=COMMAND_TIMEOUT,
        env=clean_environment(EMBER_SERIALIZER="msgpack", EMBERFILE_NAMES=str(names)),
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "a client configured by its environment"


def test_daemon_rejects_other_serializer(msgpack_daemon):
    uri, _ = msgpack_daemon

    with Proxy(uri, config=Config.defaults(), serializer="cbor") as store, \
            pytest.raises(SecurityError, match="does not accept serializer 'cbor'"):
        store.get("anything")


@pytest.mark.parametrize("plugin", ["msgpack", "filenames"])
def test_conformance_command_passes_example(installed_examples, tmp_path, plugin):
    report_path = tmp_path / "report.json"

    completed = run_ember("conformance", "--plugin", plugin, "--json", str(report_path))

    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["summary"]["failed"] == 0
    assert report["summary"]["passed"] > 5
    assert report["distribution"] == f"ember-{plugin}"


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_own_tests_pass(installed_examples, example):
    source, _ = EXAMPLES[example]

    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False, cwd=source,
        env=clean_environment(),
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


# -- the broken plugin -----------------------------------------------------------------


def broken_environment(path: Path) -> dict[str, str]:
    return clean_environment(PYTHONPATH=str(path))


def test_registry_reports_each_fault(broken_plugin_path):
    completed = run_ember("plugins", "--json", environment=broken_environment(broken_plugin_path))

    assert completed.returncode == 0, completed.stderr
    records = {record["entry_point"].split(" = ")[0]: record
               for record in json.loads(completed.stdout)
               if record["distribution"] == "ember-broken-example"}
    assert records["broken-import"]["status"] == "failed"
    assert "ModuleNotFoundError" in records["broken-import"]["reason"]
    assert records["broken-wire-id"]["status"] == "rejected"
    assert "has wire_id 0" in records["broken-wire-id"]["reason"]
    assert records["cbor-clone"]["status"] == "rejected"
    assert ("already registered by entry point 'cbor = ember.plugins.serializers.cbor'"
            in records["cbor-clone"]["reason"])
    assert records["sloppy"]["status"] == "loaded"


def test_conformance_explains_broken_serializer(broken_plugin_path, tmp_path):
    report_path = tmp_path / "report.json"

    completed = run_ember("conformance", "--plugin", "sloppy", "--json", str(report_path),
                          environment=broken_environment(broken_plugin_path))

    assert completed.returncode == 1, completed.stdout + completed.stderr
    checks = {check["name"]: check
              for check in json.loads(report_path.read_text(encoding="utf-8"))["checks"]}
    assert checks["round-trip-int"]["outcome"] == "passed"
    assert checks["round-trip-tuple"]["outcome"] == "failed"
    assert "expected tuple (), got list []" in checks["round-trip-tuple"]["message"]
    assert checks["garbage-bytes"]["outcome"] == "failed"
    assert "loads raised JSONDecodeError" in checks["garbage-bytes"]["message"]
    assert "requires that loads raises only ProtocolError" in checks["garbage-bytes"]["message"]
    assert checks["nesting-limit"]["outcome"] == "failed"
    assert checks["size-limit"]["outcome"] == "failed"
    assert checks["round-trip-uuid"]["outcome"] == "skipped"
    assert "failed   round-trip-tuple" in completed.stdout


def test_conformance_names_failed_import(broken_plugin_path):
    completed = run_ember("conformance", "--plugin", "broken-import",
                          environment=broken_environment(broken_plugin_path))

    assert completed.returncode == 2
    assert "did not load (failed): import failed: ModuleNotFoundError" in completed.stderr


def test_demo_works_beside_broken_plugin(broken_plugin_path):
    completed = run_ember("demo", environment=broken_environment(broken_plugin_path))

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "put/get 'greeting'" in completed.stdout
    assert "daemon stopped cleanly" in completed.stdout
