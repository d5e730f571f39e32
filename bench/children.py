"""Parent-side handles on worker processes, and the register that ends them all.

Every process the benchmark starts is recorded in a :class:`ChildRegister` the moment it
exists, and :meth:`ChildRegister.stop_all` ends each one by its PID: first by closing
its stdin (the worker's signal to stop), then SIGTERM, then SIGKILL. ``run.py`` calls it
in a ``finally`` block, so it also runs on Ctrl-C, on SIGTERM and on failure.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ChildError", "ChildProcess", "ChildRegister", "WORKER_PATH"]

WORKER_PATH = Path(__file__).resolve().parent / "worker.py"

# Time a worker gets to exit after its stdin closes, then after SIGTERM.
STOP_GRACE_SECONDS = 5.0

# Characters of a failed worker's stderr quoted in the error message.
STDERR_TAIL_CHARS = 2000


class ChildError(RuntimeError):
    """A worker failed, timed out or sent something other than what was expected."""


class ChildProcess:
    """One worker process, with its stdout lines delivered through a queue."""

    def __init__(self, label: str, arguments: list[str]) -> None:
        self.label = label
        # stderr goes to a temporary file, quoted only if the worker fails, so that
        # servers reporting dropped connections do not interleave with the table.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_PATH), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read_stdout, name=f"{label}-stdout", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        """Return the user and system CPU time the worker has used, or None off Linux.

        The kernel counts it in clock ticks, typically 10 ms, which is small beside a
        window of a second or more.
        """
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat_file:
                stat = stat_file.read()
        except OSError:
            return None
        # The command name in parentheses may contain spaces, so the fields are counted
        # from the last ')'. utime and stime are fields 14 and 15 of proc(5).
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def read_line(self, timeout: float) -> str:
        """Return the worker's next stdout line, or raise ChildError after ``timeout`` s."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildError(
                f"{self.label} (pid {self.pid}) sent nothing within {timeout:g} s"
                f"{self._stderr_tail()}"
            ) from None
        if line is None:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
            raise ChildError(
                f"{self.label} (pid {self.pid}) exited with status {self.process.returncode}"
                f" before replying{self._stderr_tail()}"
            )
        return line

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise ChildError(
                f"{self.label} (pid {self.pid}) is gone; it exited with status"
                f" {self.process.poll()}{self._stderr_tail()}"
            ) from None

    def read_event(self, expected: str, timeout: float) -> dict[str, Any]:
        """Return the next JSON event, which must be of type ``expected``."""
        line = self.read_line(timeout)
        try:
            event: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            raise ChildError(f"{self.label} sent {line[:200]!r}, expected a JSON event") from None
        if event.get("event") == "error":
            raise ChildError(f"{self.label} failed: {event.get('message')}")
        if event.get("event") != expected:
            raise ChildError(
                f"{self.label} sent event {event.get('event')!r}, expected {expected!r}"
            )
        return event

    def request_exit(self) -> None:
        """Ask the worker to exit: send ``exit`` (clients) and close stdin (all)."""
        stdin = self.process.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(json.dumps({"cmd": "exit"}) + "\n")
            stdin.close()
        except (BrokenPipeError, ValueError):
            # The worker is already gone; wait_or_kill() collects it.
            pass

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the worker until ``deadline``, then SIGTERM, then SIGKILL, by PID."""
        escalations = (None, self.process.terminate, self.process.kill)
        for escalate in escalations:
            if escalate is not None:
                escalate()
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            try:
                self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                continue
        # The reader thread reaches end of file once the process is gone. Closing stdout
        # under a thread still reading it would raise in that thread.
        self._reader.join(timeout=STOP_GRACE_SECONDS)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()
        self._stderr.close()

    def _stderr_tail(self) -> str:
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            text = self._stderr.read().strip()
        except ValueError:
            return ""
        if not text:
            return ""
        return f"; its stderr ends with:\n{text[-STDERR_TAIL_CHARS:]}"


class ChildRegister:
    """The workers of one run that are not stopped yet, so that stop_all() ends them."""

    def __init__(self) -> None:
        self._children: list[ChildProcess] = []

    def start(self, label: str, arguments: list[str]) -> ChildProcess:
        child = ChildProcess(label, arguments)
        self._children.append(child)
        return child

    def stop(self, children: list[ChildProcess]) -> None:
        """Stop the given workers concurrently, which is quicker than one by one."""
        for child in children:
            child.request_exit()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            child.wait_or_kill(deadline)
            if child in self._children:
                self._children.remove(child)

    def stop_all(self) -> None:
        self.stop(list(self._children))
