"""`creatorflow_payout_transitions_total{status}` counts each status change the store keeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from services.payouts.store.memory import MemoryPayoutsTransaction
from shared.contract.events import CloudEvent
from shared.contract.events.vocabulary import PAYOUT_STATUSES
from tests.support.metrics import LabelledCounter
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

RATES = {"EUR": "0.9215", "JPY": "151.32"}


TRANSITIONS = LabelledCounter("creatorflow_payout_transitions_total", "status", PAYOUT_STATUSES)
transitions, grown = TRANSITIONS.read, TRANSITIONS.grown


async def test_each_transition_counts_once_under_its_status_and_replays_count_nothing() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    before = transitions()
    events = (fx(RATES), account(creator), deal_signed(deal, creator), confirmed(deal, "dl-1"))
    await h.consume(*events, confirmed(deal, "dl-2"))
    assert grown(before) == {"scheduled": 1}
    await h.dispatch_all()
    assert grown(before) == {"scheduled": 1, "sent": 1}
    await h.consume(*events)  # redelivered: the inbox makes it a no-op
    await h.dispatch_all()
    assert grown(before) == {"scheduled": 1, "sent": 1}


async def test_counts_follow_the_published_status_events() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    before = transitions()
    await h.consume(fx(RATES), deal_signed(deal, creator), confirmed(deal, "dl-1"))
    await h.consume(confirmed(deal, "dl-2"))  # no account yet: held
    await h.consume(account(creator, status="pending"))  # still held, for another reason
    await h.consume(account(creator, currency="JPY", time=T0 + timedelta(hours=1)))
    await h.dispatch_all()
    published = Counter(e.data.status for e in h.db.state.outbox if e.data.deal_id == deal)
    assert published == {"held": 2, "scheduled": 1, "sent": 1}
    assert grown(before) == dict(published)


async def test_a_transaction_that_rolls_back_counts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    events = (fx(RATES), account(creator), deal_signed(deal, creator))
    before = transitions()

    async def outbox_down(
        self: MemoryPayoutsTransaction, events: Sequence[CloudEvent[Any]]
    ) -> None:
        raise ConnectionError("outbox write failed")

    with monkeypatch.context() as patch:
        patch.setattr(MemoryPayoutsTransaction, "enqueue", outbox_down)
        with pytest.raises(ConnectionError):
            await h.consume(*events, confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    assert h.payouts(deal) == [] and grown(before) == {}
    await h.consume(*events, confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))  # the retry
    assert grown(before) == {"scheduled": 1}
