"""Reading settings at a command's start, with errors a user can act on."""

from __future__ import annotations

from pydantic import ValidationError

from shared.cli.console import fail
from shared.config import Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        fail(f"invalid settings: {problems}", hint="check the environment variables in README.md")
