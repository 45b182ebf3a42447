"""A service started with settings it refuses says which, in one line, and exits 2: the
operator's to fix (compose runs `creatorflow serve`), not a traceback to read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CREATORFLOW_PROFILE": "production"}, "needs external servers"),
        ({"KAFKA_SASL_USERNAME": "someone"}, "KAFKA_SASL_USERNAME set"),
    ],
)
def test_refused_settings_stop_the_service_with_one_line(
    env: dict[str, str], expected: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CREATORFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-m", "services.tracking"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "invalid settings" in output and expected in output
    assert "Traceback" not in output
