"""Read-ahead, through the service's unit of work: a batch whose events are all new is applied
from what was translated while the previous batch was applied (the pipelined consumer's
hook), not translated again; a batch with events applied before, or a part of a batch after
a failure, is worked out from what is new in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import services.tracking.handlers as handlers
from services.tracking.app import SERVICE
from services.tracking.handlers import make_handler, read_ahead
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.store.port import TrackingTransaction
from shared.runtime.unit_of_work import UnitsOfWork
from tests.unit.tracking.builders import T0, deal_event, delivered, order_event, post_event

NOW = T0 + timedelta(days=3)


@pytest.fixture
def translations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each translation of a batch read (handlers.read_inputs)."""
    counted: list[int] = []
    real = handlers.read_inputs

    def counting(events: Any, *rest: Any) -> Any:
        events = list(events)
        counted.append(len(events))
        return real(events, *rest)

    monkeypatch.setattr(handlers, "read_inputs", counting)
    return counted


def units(store: MemoryTrackingStore) -> UnitsOfWork[TrackingTransaction]:
    return UnitsOfWork(SERVICE, store, make_handler(), read_ahead=read_ahead, clock=lambda: NOW)


async def test_a_new_batch_is_applied_from_what_was_read_ahead(translations: list[int]) -> None:
    store = MemoryTrackingStore()
    batch = delivered([deal_event("deal-1", creator_id="cr-1"), post_event("p-1")])
    apply = units(store).prepare(batch)
    assert translations == [2]  # read ahead, before the batch's transaction
    await apply(batch)
    assert translations == [2]
    assert set(store.state.deals) == {"deal-1"}
    assert set(store.state.memberships) == {("deal-1", "p-1")}


async def test_what_was_applied_before_is_not_read_ahead_into_the_batch(
    translations: list[int],
) -> None:
    store = MemoryTrackingStore()
    deal = deal_event("deal-1", promo_codes=("CODE10",), starts_at=T0)
    await units(store)(delivered([deal]))
    order = order_event("ord-1", promo_code="CODE10", occurred_at=T0 + timedelta(days=1))
    again = delivered([deal, order], offset=1)
    apply = units(store).prepare(again)
    await apply(again)
    # Read ahead as if all were new, then read again: only the order is new.
    assert translations[-2:] == [2, 1]
    assert store.state.outcomes["ord-1"].deal_id == "deal-1"
    assert store.state.attributions["deal-1"].performance.orders == 1


async def test_a_part_of_a_batch_after_a_failure_is_read_from_scratch(
    translations: list[int],
) -> None:
    store = MemoryTrackingStore()
    batch = delivered([deal_event("deal-1"), post_event("p-1")])
    apply = units(store).prepare(batch)
    await apply(batch[:1])  # the failure policy bisects what failed
    assert translations == [2, 1]
    assert set(store.state.deals) == {"deal-1"}
    assert store.state.posts == {}
