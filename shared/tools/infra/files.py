"""Files that hold server credentials: private from the moment they exist."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (0600) from the first byte, also
    when the file existed with wider permissions."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


def shell_exports(variables: Mapping[str, str]) -> str:
    """`export NAME=value` lines that a POSIX shell reads back exactly, whatever the values."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
