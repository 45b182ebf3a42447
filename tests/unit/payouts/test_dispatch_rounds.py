"""Dispatcher rounds run at once (`PAYOUTS_DISPATCH_ROUNDS`): each payout is still sent once."""

from __future__ import annotations

import asyncio
import contextlib

from services.payouts.dispatcher import Dispatcher
from services.payouts.providers.base import TransferAccepted, TransferRequest
from services.payouts.providers.sandbox import SandboxProvider
from tests.support.waiting import eventually
from tests.unit.payouts.builders import DESTINATIONS, account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness


class _Watched(SandboxProvider):
    """The sandbox, answering after a moment, counting the calls under way at once."""

    def __init__(self) -> None:
        super().__init__(latency_seconds=0.001)
        self.under_way = 0
        self.most_under_way = 0

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            return await super().send(request)
        finally:
            self.under_way -= 1


async def test_rounds_at_once_send_each_payout_once() -> None:
    h = Harness()
    await h.consume(fx({"EUR": "0.9215"}))
    for _ in range(13):
        deal, creator = uid("deal"), uid("cr")
        signed = deal_signed(deal, creator, deliverables=(("dl-1", 1),))
        await h.consume(account(creator), signed, confirmed(deal, "dl-1"))
    provider = _Watched()
    dispatcher = Dispatcher(
        h.db, provider, h.policy, destinations=DESTINATIONS, batch=2, rounds=3, clock=h.clock
    )
    running = asyncio.create_task(dispatcher.run())

    async def all_sent() -> bool:
        return all(p.status == "sent" for p in h.payouts())

    try:
        await eventually(all_sent, what="every payout sent")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert len(h.payouts()) == 13
    assert provider.calls == 13 and len(provider.transfers) == 13
    assert provider.most_under_way > 2  # more than one round's batch: rounds overlapped
    for payout in h.payouts():
        assert [e.type for e in h.events_of(payout.payout_id)] == [
            "payout.scheduled",
            "payout.sent",
        ]
    assert h.problems() == []
