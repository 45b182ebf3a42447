"""`creatorflow demo` as a user runs it: a fresh data directory, one command, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_demo_runs_the_smoke_flow_and_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "CREATORFLOW_DATA_DIR": str(tmp_path), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "infrastructure smoke flow" in out, "the demo must say what it is"
    assert "17 events stored and counted" in out
    assert "2 broken messages in the DLQ" in out
    assert "InvalidJSON" in out and "SchemaViolation" in out
    assert "data.followers" in out, "the DLQ reason names the field"
    assert ":***@" in out and "creatorflow@" not in out, "the database password stays hidden"
    assert str(tmp_path / "demo") in out, "the demo says where the data is"
    assert _processes_mentioning(str(tmp_path)) == []
