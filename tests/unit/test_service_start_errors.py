"""A service or a command started with settings it refuses says which in one line and exits
non-zero (a service 2, a command 1): the operator's to fix (compose runs `creatorflow serve`),
not a traceback to read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.matching.settings import MatchingSettings
from services.payouts.settings import PayoutsSettings
from services.tracking.settings import TrackingSettings
from shared.runtime.config import Settings, settings_problems


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


def test_a_command_refusing_its_service_settings_says_which_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.tools.cli", "creators", "link", "cr-1"],
        env={**os.environ, "PAYOUTS_PAGE_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    # Named by its environment variable, as the operator set it.
    assert "invalid settings (PayoutsSettings): PAYOUTS_PAGE_PORT" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("settings", "variable", "value"),
    [
        (PayoutsSettings, "PAYOUTS_DISPATCH_BATCH", "5000"),
        (MatchingSettings, "MATCHING_DIVERSITY_TRADE_OFF", "abc"),
        (TrackingSettings, "TRACKING_LEAK_WINDOW_DAYS", "many"),
        (Settings, "HANDLER_MAX_ATTEMPTS", "abc"),
    ],
)
def test_a_refused_setting_is_named_by_its_environment_variable(
    settings: type[BaseSettings], variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        settings()
    assert settings_problems(refused.value).startswith(f"{variable}: ")
