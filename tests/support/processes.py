"""Processes for tests: this interpreter run on a module, and what is still running."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path


async def python_process(
    *argv: str, env: Mapping[str, str], stdin: int | None = None
) -> asyncio.subprocess.Process:
    """Start `python *argv` with its standard output and error in one pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env=env,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def processes_mentioning(text: str) -> list[str]:
    """`pid: command line` of every process whose command line contains `text`."""
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
