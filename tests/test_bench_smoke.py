"""Bounded smoke run of the benchmark: the floors in quick mode, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
RUN_SCRIPT = REPOSITORY_ROOT / "bench" / "run.py"

# Quick mode takes about 10 s for the floors on a 2-CPU machine; the bound only has to
# stop a hung run.
RUN_TIMEOUT_SECONDS = 180

FLOOR_WORKLOADS = {"ping", "ping-8", "echo-1MiB", "echo-16MiB"}


@pytest.mark.soak
def test_quick_floors_run(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"

    completed = subprocess.run(
        [
            sys.executable,
            str(RUN_SCRIPT),
            "--quick",
            "--only",
            "floors",
            "--json",
            str(results_path),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "workload" in completed.stdout
    document = json.loads(results_path.read_text(encoding="utf-8"))
    assert set(document["systems"]) == {"raw", "cbor-loop"}
    for system in ("raw", "cbor-loop"):
        results = [result for result in document["results"] if result["system"] == system]
        assert {result["workload"]["name"] for result in results} == FLOOR_WORKLOADS
        for result in results:
            assert result["error"] is None, result
            assert result["median"] > 0, result
    assert all(ratio["value"] is None for ratio in document["ratios"])
