"""Credential files of the embedded infrastructure: private, and read back exactly."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from shared.tools.infra import redact
from shared.tools.infra.files import shell_exports, write_private


def test_a_private_file_is_0600_from_its_creation_and_after_a_rewrite(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "infra.env"
        write_private(path, "first")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)
        write_private(path, "second")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "second"


def test_exports_survive_quotes_and_shell_characters(tmp_path: Path) -> None:
    value = "postgresql://u:p'a$s`w;d@127.0.0.1:5432/db"
    script = tmp_path / "env.sh"
    script.write_text(shell_exports({"DATABASE_URL": value}))
    shown = subprocess.run(
        ["sh", "-c", f'. "{script}"; printf %s "$DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == value


def test_redis_urls_are_redacted_like_database_urls() -> None:
    assert redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
