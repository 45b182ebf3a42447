"""Work done in rounds: a round that handled a full batch is followed at once by the next
(more is likely waiting), a shorter one by a pause until the interval ends or something
wakes the loop. Payouts' dispatcher, schedules and e-mails and the outbox relay all work so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def run_in_rounds(
    one_round: Callable[[], Awaitable[int]],
    *,
    full: int,
    idle_seconds: float,
    wake: asyncio.Event | None = None,
) -> None:
    """Run `one_round` until cancelled: again at once while it returns `full` or more, else
    after `idle_seconds`, or sooner once `wake` is set (cleared before each round, so a wake-up
    during a round is not lost)."""
    while True:
        if wake is not None:
            wake.clear()
        if await one_round() >= full:
            continue
        if wake is None:
            await asyncio.sleep(idle_seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle_seconds)
