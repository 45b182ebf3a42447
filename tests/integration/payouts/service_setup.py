"""The payouts service as the tests on the real servers run it: settings that check settlement
and wake an idle dispatcher within a second (the hourly commission check out of the way), the
operator's command line, and what the sandbox rail was asked to pay."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner, Result

from services.payouts.cli import app
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.settings import PayoutsSettings
from tests.support.payouts_setup import ObservedPayouts


def fast_settings(**overrides: Any) -> PayoutsSettings:
    """The service's settings with quick settlement checks and dispatch, plus `overrides`."""
    return PayoutsSettings(
        **{
            "settle_check_seconds": 0.2,
            "dispatch_idle_seconds": 0.5,
            "commission_check_seconds": 3600,
            **overrides,
        }
    )


def invoke(*args: str) -> Result:
    """`creatorflow payouts ARGS...`: the command runs its own event loop (asyncio.run), so
    call it off the test's loop thread (`asyncio.to_thread`)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def sandbox_transfers(setup: ObservedPayouts) -> dict[str, Any]:
    """The transfers the running service's sandbox rail made, by payout id."""
    assert setup.service is not None and isinstance(setup.service.provider, SandboxProvider)
    return setup.service.provider.transfers
