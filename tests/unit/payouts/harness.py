"""The payouts service over the in-memory store and the sandbox provider (no broker)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.payouts.app import units_of_work
from services.payouts.dispatcher import Dispatcher
from services.payouts.domain.ledger_check import ledger_problems
from services.payouts.domain.lifecycle import Payout, RetrySchedule
from services.payouts.handlers import PayoutPolicy
from services.payouts.providers import PayoutProvider
from services.payouts.providers.rails import Rails
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.schedules import CommissionSchedule, CoolOffReleases, SettlementPoller
from services.payouts.store.memory import MemoryPayoutsStore
from shared.contract.events import CloudEvent, EventType, spec_for_type
from shared.contract.money import Money
from shared.runtime.kafka import Delivery
from tests.unit.payouts.builders import DESTINATIONS, PLENTY, T0, funded

_offsets = itertools.count()


def delivery(event: CloudEvent[Any]) -> Delivery:
    return Delivery(spec_for_type(event.type).topic, 0, next(_offsets), None, b"", ())


class Harness:
    def __init__(
        self,
        *,
        platform_fee_bps: int = 0,
        failure_rate: float = 0.0,
        seed: int = 0,
        max_attempts: int = 3,
        fee_schedule: str = "on_completion",
        fund_brands: bool = True,
    ) -> None:
        """`fund_brands`: each brand's escrow gets `PLENTY` in a deal's currency before the
        brand's first deal in it, so payouts never wait for funds (tests of the escrow say
        False and fund it themselves)."""
        self.now = T0 + timedelta(days=1)
        self._fund_brands = fund_brands
        self._funded: set[tuple[str, str]] = set()
        self.db = MemoryPayoutsStore()
        self.provider = SandboxProvider(failure_rate=failure_rate, seed=seed)
        self.policy = PayoutPolicy(
            platform_fee_bps=platform_fee_bps,
            fee_schedule=fee_schedule,  # type: ignore[arg-type]
            retry=RetrySchedule(1.0, 8.0, max_attempts),
            lease=timedelta(seconds=30),
            commission_grace=timedelta(0),
        )
        self.wakes = 0
        self._consume = units_of_work(
            self.db, self.policy, self._woken, destinations=DESTINATIONS, clock=self.clock
        )
        self.dispatcher = Dispatcher(
            self.db, self.provider, self.policy, destinations=DESTINATIONS, clock=self.clock
        )
        self.commissions = CommissionSchedule(
            self.db, self.policy, interval_seconds=1, clock=self.clock
        )
        self.settlement = SettlementPoller(
            self.db, self.provider, self.policy, interval_seconds=1, clock=self.clock
        )
        self.cool_offs = CoolOffReleases(self.db, self.policy, interval_seconds=1, clock=self.clock)

    def use(self, rails: Rails | PayoutProvider) -> None:
        """Send and settle through `rails` (or one provider for every method) instead."""
        self.dispatcher._rails = rails if isinstance(rails, Rails) else Rails.single(rails)
        self.settlement._rails = self.dispatcher._rails

    def reconfigure(self, **changes: Any) -> None:
        """Restart the consumer with other settings (as a redeploy would), same store."""
        self.policy = replace(self.policy, **changes)
        self._consume = units_of_work(
            self.db, self.policy, self._woken, destinations=DESTINATIONS, clock=self.clock
        )

    def clock(self) -> datetime:
        return self.now

    def _woken(self) -> None:
        self.wakes += 1

    async def consume(self, *events: CloudEvent[Any]) -> None:
        unfunded = {
            (e.data.brand_id, e.data.fee.currency)
            for e in events
            if self._fund_brands and e.type == EventType.DEAL_SIGNED
        } - self._funded
        fundings = [funded(brand, Money.of(PLENTY, currency)) for brand, currency in unfunded]
        if fundings:
            await self._consume([(e, delivery(e)) for e in fundings])
            self._funded |= unfunded
        await self._consume([(e, delivery(e)) for e in events])

    async def consume_arrived(self, event: CloudEvent[Any], not_before: datetime) -> None:
        """Consume one event whose record reached the broker at `not_before` plus the clock
        skew (Delivery.not_before)."""
        await self._consume([(event, replace(delivery(event), not_before=not_before))])

    async def dispatch_all(self) -> None:
        """Dispatch rounds until nothing is due now."""
        while await self.dispatcher.dispatch_once():
            pass

    def payouts(self, deal_id: str | None = None) -> list[Payout]:
        return [
            p for p in self.db.state.payouts.values() if deal_id is None or p.deal_id == deal_id
        ]

    def statuses(self, deal_id: str) -> list[str]:
        return [e.type for e in self.db.state.outbox if e.data.deal_id == deal_id]

    def problems(self) -> list[str]:
        return ledger_problems(self.db.state.payouts.values(), self.db.state.transfers)

    def events_of(self, payout_id: str) -> Sequence[CloudEvent[Any]]:
        return [e for e in self.db.state.outbox if e.data.payout_id == payout_id]
