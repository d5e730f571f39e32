"""Shared fixtures: daemons in another process and in this one, and raw client sockets.

``spawn_daemon`` starts ``tests/servers/probe.py`` in a child process with the given
settings as ``EMBER_*`` variables, reads the URIs it prints and ends it by PID at
teardown. ``make_daemon`` builds a started in-process :class:`~ember.Daemon` from the
built-in defaults, for tests that need ``caplog`` or direct access to the daemon.
Every daemon binds a loopback address.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ember import Config, Daemon
from ember.kernel.protocol import (
    CONTROL_SERIALIZER_ID,
    HEADER,
    MAGIC,
    VERSION,
    MessageType,
    encode_control,
)
from ember.plugins.serializers.cbor import CborSerializer

SERVERS = Path(__file__).parent / "servers"
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class DaemonProcess:
    """A daemon running ``tests/servers/probe.py`` in a child process."""

    process: subprocess.Popen[str]
    uris: dict[str, str]
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def uri(self) -> str:
        return self.uris["probe"]

    @property
    def port(self) -> int:
        address = self.uri.split("://", 1)[1].rsplit("/", 1)[0]
        return int(address.rsplit(":", 1)[1])

    def log_text(self) -> str:
        """Return what the daemon logged to standard error so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time the daemon process has used."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name in parentheses may contain spaces; fields follow its ")".
        fields = stat.rsplit(")", 1)[1].split()
        user_ticks, system_ticks = int(fields[11]), int(fields[12])
        return (user_ticks + system_ticks) / CLOCK_TICKS

    def peak_memory_kib(self) -> int:
        """Return the peak resident set size (VmHWM) of the daemon process in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmHWM line in /proc/{self.pid}/status")

    def stop(self) -> int:
        """Close the daemon's standard input, wait for it, and kill it by PID if needed."""
        if self.stopped:
            return self.process.returncode
        self.stopped = True
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(
                f"daemon process {self.pid} did not stop within {STOP_TIMEOUT} s after its "
                f"standard input closed; it was killed. Its log:\n{self.log_text()}"
            ) from None


def _clean_environment(settings: dict[str, object]) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("EMBER_")}
    for name, value in settings.items():
        environment[f"EMBER_{name.upper()}"] = str(value)
    return environment


def start_daemon_process(log_path: Path, *, foreground: bool = False,
                         **settings: object) -> DaemonProcess:
    """Start the probe server with ``settings`` as ``EMBER_*`` variables."""
    command = [sys.executable, str(SERVERS / "probe.py")]
    if foreground:
        command.append("--foreground")
    log_file = log_path.open("w", encoding="utf-8")
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log_file, text=True,
                                   env=_clean_environment(settings))
    finally:
        log_file.close()

    line = _read_line(process, STARTUP_TIMEOUT)
    if not line:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        raise AssertionError(f"the probe daemon printed no URIs within {STARTUP_TIMEOUT} s "
                             f"(exit code {process.returncode}); its log:\n"
                             f"{log_path.read_text(errors='replace')}")
    announcement = json.loads(line)
    assert announcement["pid"] == process.pid
    return DaemonProcess(process, announcement["uris"], log_path)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().strip()


@pytest.fixture
def spawn_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Return a function that starts a probe daemon process; all are stopped at teardown."""
    started: list[DaemonProcess] = []

    def spawn(*, foreground: bool = False, **settings: object) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        daemon = start_daemon_process(log_path, foreground=foreground, **settings)
        started.append(daemon)
        return daemon

    yield spawn
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One probe daemon process for a whole test module, with default settings."""
    log_path = tmp_path_factory.mktemp("shared-daemon") / "daemon.log"
    daemon = start_daemon_process(log_path)
    yield daemon
    daemon.stop()


@pytest.fixture
def make_daemon() -> Iterator[Callable[..., Daemon]]:
    """Return a function that builds and starts an in-process daemon from the built-in
    defaults (ignoring ``EMBER_*`` variables); every one is closed at teardown."""
    daemons: list[Daemon] = []

    def make(*, start: bool = True, **settings: Any) -> Daemon:
        daemon = Daemon(config=Config.defaults(), **settings)
        daemons.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in daemons:
        daemon.close(grace=2.0)


# -- raw clients ---------------------------------------------------------------------


def frame_header(message_type: int, body_length: int, *, flags: int = 0,
                 serializer_id: int = CONTROL_SERIALIZER_ID, request_id: int = 0) -> bytes:
    """Pack a frame header that declares ``body_length`` bytes of body, whatever the
    caller sends after it."""
    return HEADER.pack(MAGIC, VERSION, message_type, flags, serializer_id, request_id,
                       body_length)


def hello_frame(serializer: str = "cbor",
                serializer_id: int = CborSerializer.wire_id) -> bytes:
    """Encode the HELLO frame a proxy without an authenticator sends."""
    body = encode_control({"protocol": VERSION, "serializer": serializer,
                           "serializer_id": serializer_id, "authenticator": None,
                           "client": "raw-test-client"})
    return frame_header(MessageType.HELLO, len(body)) + body


def connect_raw(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    """Open a plain TCP socket to a daemon on loopback."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Read until the peer closes; fail if it is still open after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    received = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the daemon kept the connection open for more than "
                                 f"{timeout} s; received {len(received)} bytes")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return bytes(received)
        if not chunk:
            return bytes(received)
        received += chunk
