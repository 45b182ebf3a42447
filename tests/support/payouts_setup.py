"""The payouts service's setup, with its running parts kept for tests and benchmarks to
observe (`services.payouts.app.make_setup`, `on_started`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.payouts.app import PayoutsService, make_setup
from shared.runtime.service import Background, Resources


class ObservedPayouts:
    """`make_setup(*args, **overrides)` for `ServiceRuntime`; after setup, `service` holds the
    running parts."""

    def __init__(self, *args: Any, **overrides: Any) -> None:
        self.service: PayoutsService | None = None
        self._setup = make_setup(*args, **overrides, on_started=self._started)

    def _started(self, service: PayoutsService) -> None:
        self.service = service

    async def __call__(self, resources: Resources) -> Sequence[Background]:
        return await self._setup(resources)
