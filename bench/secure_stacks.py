"""ember's secure stacks beside plain TCP, and Pyro5 over TLS beside plain Pyro5.

    python bench/secure_stacks.py            # about 7 minutes on 2 vCPUs
    python bench/secure_stacks.py --quick    # short windows: a smoke test, not a result

The run has three parts. First ``run.py`` measures the rows below together with plain
``ember`` and ``pyro5`` on its usual workloads (ping, ping-8, echo-1MiB, echo-16MiB).
Then the rows take turns in short windows and the best window of each is kept, which
holds up better on a busy machine. Last, this script measures new connections per
second, where each connection includes its handshake and one ``ping``. Each part
prints its ratios against the targets.

Keys are throwaway: the first process that needs them creates them in a private
temporary folder (mode 0700, key files 0600) and names the folder in
``BENCH_SECURE_KEY_FOLDER``. The benchmark's worker processes inherit that variable
and read the key files. The folder is removed when that first process exits. The TLS
certificate for Pyro5 is self-signed, made by the ``openssl`` command.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stacks
from contract import CALL_TIMEOUT_SECONDS, BenchClient, ServerHandle, System, SystemUnavailable

__all__ = ["SECURE_SYSTEMS", "main", "prepare_keys"]

KEY_FOLDER_VARIABLE = "BENCH_SECURE_KEY_FOLDER"
OBJECT_ID = stacks.OBJECT_ID
BENCH_DIRECTORY = Path(__file__).resolve().parent


# --- keys ---------------------------------------------------------------------------


def prepare_keys() -> Path:
    """Return the folder of throwaway keys, creating it in the first process that calls this."""
    existing = os.environ.get(KEY_FOLDER_VARIABLE)
    if existing and Path(existing).is_dir():
        return Path(existing)

    stacks._import_ember()  # puts the checkout on sys.path
    from ember.cli.keygen import create_keys

    folder = Path(tempfile.mkdtemp(prefix="ember-bench-keys-"))
    atexit.register(shutil.rmtree, folder, True)
    create_keys("hmac", folder / "shared.key")
    create_keys("ed25519", folder / "client.key", name="bench-client")
    create_keys("nacl", folder / "server.key")
    os.environ[KEY_FOLDER_VARIABLE] = str(folder)
    return folder


def _key_folder() -> Path:
    folder = os.environ.get(KEY_FOLDER_VARIABLE)
    if not folder:
        raise SystemUnavailable(f"{KEY_FOLDER_VARIABLE} is not set; the parent process "
                                "creates the keys before it starts workers")
    return Path(folder)


# --- ember stacks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecureStack:
    """One ember configuration: settings for the daemon and for the proxy."""

    name: str
    description: str
    transport: str
    daemon_settings: Callable[[Path], dict[str, object]]
    proxy_settings: Callable[[Path], dict[str, object]] = field(default=lambda folder: {})

    def daemon(self) -> Any:
        stacks._import_ember()
        from ember import Config, Daemon

        folder = _key_folder()
        settings = {"transport": self.transport, **self.daemon_settings(folder)}
        address = str(folder / f"{self.name}.sock") if "unix" in self.transport else None
        return Daemon(address=address, config=Config.defaults().replace(**settings))

    def proxy(self, uri: str) -> Any:
        stacks._import_ember()
        from ember import Config, Proxy

        settings = {"call_timeout": CALL_TIMEOUT_SECONDS, **self.proxy_settings(_key_folder())}
        return Proxy(uri, config=Config.defaults().replace(**settings))


def _hmac(folder: Path) -> dict[str, object]:
    return {"authenticator": "hmac", "hmac_key_file": str(folder / "shared.key")}


def _ed25519_daemon(folder: Path) -> dict[str, object]:
    return {"authenticator": "ed25519",
            "ed25519_authorized_keys": str(folder / "client.key.pub")}


def _ed25519_proxy(folder: Path) -> dict[str, object]:
    return {"authenticator": "ed25519", "ed25519_key_file": str(folder / "client.key")}


def _nacl_daemon(folder: Path) -> dict[str, object]:
    return {"nacl_server_key_file": str(folder / "server.key")}


def _no_settings(folder: Path) -> dict[str, object]:
    return {}


STACKS: tuple[SecureStack, ...] = (
    SecureStack("ember-hmac", "ember, CBOR over TCP, hmac authenticator", "tcp",
                _hmac, _hmac),
    SecureStack("ember-ed25519", "ember, CBOR over TCP, ed25519 authenticator", "tcp",
                _ed25519_daemon, _ed25519_proxy),
    SecureStack("ember-nacl", "ember, CBOR over the nacl transport (TCP)", "nacl",
                _nacl_daemon, _no_settings),
    SecureStack("ember-unix", "ember, CBOR over a Unix socket", "unix", _no_settings,
                _no_settings),
    SecureStack("ember-nacl-unix", "ember, CBOR over nacl on a Unix socket", "nacl-unix",
                _nacl_daemon, _no_settings),
)


# Plain ember, for connection rates: its proxy is closed through the proxy's own
# _ember_close, which every ember client here uses.
PLAIN_EMBER = SecureStack("ember", "ember defaults: CBOR over TCP", "tcp", _no_settings,
                          _no_settings)


def _server_starter(stack: SecureStack) -> Callable[[], ServerHandle]:
    def start_server() -> ServerHandle:
        ember = stacks._import_ember()

        @ember.expose
        class EmberService:
            def ping(self) -> None:
                return None

            def echo(self, value: Any) -> Any:
                return value

        daemon = stack.daemon()
        uri = daemon.register(EmberService(), object_id=OBJECT_ID)
        return ServerHandle(str(uri), daemon.serve_forever, daemon.close)

    return start_server


class SecureEmberClient:
    """An ember proxy for one secure stack; it connects on the first call."""

    echo_note: str | None = None

    def __init__(self, stack: SecureStack, uri: str) -> None:
        self._proxy = stack.proxy(uri)

    def ping(self) -> None:
        self._proxy.ping()

    def echo(self, payload: bytes) -> bytes | bytearray:
        data: bytes | bytearray = self._proxy.echo(payload)
        return data

    def close(self) -> None:
        self._proxy._ember_close()


def _client_maker(stack: SecureStack) -> Callable[[str], BenchClient]:
    return lambda uri: SecureEmberClient(stack, uri)


def _check_stack() -> None:
    stacks.check_ember()
    prepare_keys()


# --- Pyro5 over TLS -----------------------------------------------------------------


def check_pyro5_tls() -> None:
    stacks.check_pyro5()
    if shutil.which("openssl") is None:
        raise SystemUnavailable("the openssl command is not installed; it makes the "
                                "self-signed certificate for Pyro5 over TLS")
    folder = prepare_keys()
    certificate = folder / "tls-cert.pem"
    if certificate.exists():
        return
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "tls-key.pem"), "-out", str(certificate)],
        capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise SystemUnavailable(f"openssl could not make a certificate: {result.stderr}")


def _configure_pyro5_tls(role: str) -> None:
    import Pyro5

    stacks._reset_pyro5_config()
    folder = _key_folder()
    Pyro5.config.SSL = True
    if role == "server":
        Pyro5.config.SSL_SERVERCERT = str(folder / "tls-cert.pem")
        Pyro5.config.SSL_SERVERKEY = str(folder / "tls-key.pem")
    else:
        Pyro5.config.SSL_CACERTS = str(folder / "tls-cert.pem")


def start_pyro5_tls_server() -> ServerHandle:
    import Pyro5.api

    _configure_pyro5_tls("server")
    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Pyro5.api.expose(stacks.Pyro5Service), objectId=OBJECT_ID)
    return ServerHandle(str(uri), daemon.requestLoop, daemon.shutdown)


class Pyro5TlsClient(stacks.Pyro5Client):
    """A Pyro5 proxy over TLS that verifies the self-signed certificate."""

    def __init__(self, uri: str) -> None:
        import Pyro5.api

        _configure_pyro5_tls("client")
        self.echo_note = None
        self._proxy = Pyro5.api.Proxy(uri)
        self._proxy._pyroTimeout = CALL_TIMEOUT_SECONDS
        self._proxy._pyroBind()


# --- the rows -----------------------------------------------------------------------


SECURE_SYSTEMS: tuple[System, ...] = (
    *(System(name=stack.name, role="subject", description=stack.description,
             check_available=_check_stack, start_server=_server_starter(stack),
             make_client=_client_maker(stack))
      for stack in STACKS),
    System(name="pyro5-tls", role="peer",
           description="Pyro5 defaults over TLS with a self-signed RSA-2048 certificate",
           check_available=check_pyro5_tls, start_server=start_pyro5_tls_server,
           make_client=Pyro5TlsClient),
)

SECURE_GROUP = ("ember", *(stack.name for stack in STACKS), "pyro5", "pyro5-tls")


# --- targets and connection rates ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    system: str
    baseline: str
    workload: str
    minimum: float


TARGETS = (
    Target("ember-hmac", "ember", "ping", 0.85),
    Target("ember-ed25519", "ember", "ping", 0.85),
    Target("ember-nacl", "ember", "ping", 0.80),
    Target("ember-nacl", "ember", "echo-16MiB", 0.50),
    Target("ember-nacl-unix", "ember-unix", "ping", 0.80),
    Target("ember-nacl-unix", "ember-unix", "echo-16MiB", 0.50),
)


def print_targets(results: list[dict[str, Any]]) -> None:
    """Print each ratio of run.py's medians against its target."""
    medians = {(r["system"], r["workload"]["name"]): r["median"] for r in results}
    print("\nsecure stack targets (median of the windows):")
    for target in TARGETS:
        value = medians.get((target.system, target.workload))
        baseline = medians.get((target.baseline, target.workload))
        if not value or not baseline:
            print(f"  {target.system}/{target.baseline} {target.workload}: not measured")
            continue
        ratio = value / baseline
        verdict = "met" if ratio >= target.minimum else "MISSED"
        print(f"  {target.system}/{target.baseline} {target.workload}: {ratio:.2f} "
              f"(target >= {target.minimum:.2f}) {verdict}")


class ServerProcess:
    """A benchmark server in a worker process, ended through its stdin, then by PID."""

    def __init__(self, system: System, lifetime: float) -> None:
        self.system = system
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIRECTORY / "worker.py"), "server", system.name,
             "--lifetime", str(lifetime)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"{system.name} server did not start: {line!r}")
        self.address = line.split(" ", 1)[1]

    def make_client(self) -> BenchClient:
        if self.system.name == PLAIN_EMBER.name:
            return SecureEmberClient(PLAIN_EMBER, self.address)
        return self.system.make_client(self.address)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def measure_connection_rate(server: ServerProcess, seconds: float,
                            max_connections: int) -> float:
    """Return new connections per second, each with its handshake and one ping."""
    client = server.make_client()  # warm-up: imports and first connection
    client.ping()
    client.close()

    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while count < max_connections and time.perf_counter() < deadline:
        client = server.make_client()
        client.ping()
        client.close()
        count += 1
    return count / (time.perf_counter() - started)


def measure_best_rates(servers: list[ServerProcess], rounds: int,
                       window: float) -> dict[str, dict[str, float]]:
    """Return the best ping rate (calls/s) and 16 MiB echo rate (MiB/s) per system.

    The systems take turns in short windows, and the best window of each counts. Load
    from other processes only ever slows a window down, so the best window is the
    closest to the stack's own cost, and ratios of best windows hold up on a busy
    machine where medians do not.
    """
    clients = {server.system.name: server.make_client() for server in servers}
    payload = os.urandom(16 * 1024 * 1024)
    best: dict[str, dict[str, float]] = {name: {"ping": 0.0, "echo-16MiB": 0.0}
                                         for name in clients}
    for client in clients.values():
        client.ping()
        client.echo(payload)
    for _ in range(rounds):
        for name, client in clients.items():
            calls = 0
            started = time.perf_counter()
            while calls < 100_000 and time.perf_counter() - started < window:
                client.ping()
                calls += 1
            rate = calls / (time.perf_counter() - started)
            best[name]["ping"] = max(best[name]["ping"], rate)

            started = time.perf_counter()
            echoed = client.echo(payload)
            throughput = 16 / (time.perf_counter() - started)
            if len(echoed) != len(payload):
                raise RuntimeError(f"{name} echoed {len(echoed)} bytes of {len(payload)}")
            best[name]["echo-16MiB"] = max(best[name]["echo-16MiB"], throughput)
    for client in clients.values():
        client.close()
    return best


def print_best_targets(best: dict[str, dict[str, float]]) -> None:
    print("\nsecure stack targets (best of interleaved windows):")
    for target in TARGETS:
        value = best.get(target.system, {}).get(target.workload)
        baseline = best.get(target.baseline, {}).get(target.workload)
        if not value or not baseline:
            print(f"  {target.system}/{target.baseline} {target.workload}: not measured")
            continue
        ratio = value / baseline
        verdict = "met" if ratio >= target.minimum else "MISSED"
        print(f"  {target.system}/{target.baseline} {target.workload}: {ratio:.2f} "
              f"(target >= {target.minimum:.2f}) {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short windows: a smoke test, not a result")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write run.py's results and the connection rates to FILE")
    parser.add_argument("--no-table", action="store_true",
                        help="skip run.py's table and measure only the interleaved best "
                             "windows and the connection rates")
    arguments = parser.parse_args(argv)

    import run
    from systems import SYSTEMS

    prepare_keys()
    status = 0
    document: dict[str, Any] = {"results": []}
    if not arguments.no_table:
        with tempfile.TemporaryDirectory() as scratch:
            results_path = Path(scratch) / "results.json"
            run_arguments = ["--only", ",".join(SECURE_GROUP), "--json", str(results_path)]
            if arguments.quick:
                run_arguments.append("--quick")
            status = run.main(run_arguments)
            if results_path.exists():
                document = json.loads(results_path.read_text(encoding="utf-8"))
        print_targets(document["results"])

    seconds = 0.5 if arguments.quick else 3.0
    rounds = 2 if arguments.quick else 12
    servers: list[ServerProcess] = []
    rates: dict[str, float | str] = {}
    try:
        for name in SECURE_GROUP:
            system = SYSTEMS[name]
            try:
                system.check_available()
                servers.append(ServerProcess(system, lifetime=rounds * 20 + seconds * 10 + 120))
            except (SystemUnavailable, RuntimeError, OSError) as error:
                rates[name] = f"failed: {error}"
                print(f"{name}: not measured: {error}", file=sys.stderr)

        best = measure_best_rates(servers, rounds, window=0.25)
        print("\nbest of interleaved windows, one connection:")
        for name, values in best.items():
            print(f"  {name:16} ping {values['ping']:8.0f} calls/s   "
                  f"echo-16MiB {values['echo-16MiB']:6.1f} MiB/s")
        print_best_targets(best)
        document["best_rates"] = best

        print(f"\nnew connections per second (connect, handshake, one ping, close; "
              f"{seconds:g} s, one client):")
        for server in servers:
            rate = measure_connection_rate(server, seconds, max_connections=100_000)
            rates[server.system.name] = rate
            print(f"  {server.system.name:16} {rate:8.0f} /s")
    finally:
        for server in servers:
            server.stop()

    if arguments.json is not None:
        document["connection_rates"] = rates
        arguments.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    # As in run.py, a missed target is reported but does not change the exit status.
    return status


if __name__ == "__main__":
    sys.exit(main())
