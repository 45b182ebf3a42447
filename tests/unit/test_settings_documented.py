"""Every setting a process reads from its environment is named in the README."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.matching.settings import MatchingSettings
from services.payouts.settings import PayoutsSettings
from services.tracking.settings import TrackingSettings
from shared.runtime.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def variables(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    return [
        str(field.validation_alias) if field.validation_alias else f"{prefix}{name}".upper()
        for name, field in settings.model_fields.items()
    ]


@pytest.mark.parametrize(
    "settings", [Settings, MatchingSettings, PayoutsSettings, TrackingSettings]
)
def test_each_variable_is_in_the_readme(settings: type[BaseSettings]) -> None:
    missing = [name for name in variables(settings) if f"`{name}`" not in README]
    assert missing == [], f"add them to the README's settings tables: {missing}"
