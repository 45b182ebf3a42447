"""The unit of work every service consumes through: claim, handle, enqueue, commit, then the
after-commit actions; nothing of a rolled-back batch stays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from shared.contract.events import CloudEvent, EventIdentity, EventType, make_event
from shared.contract.signing import Party, Signer
from shared.runtime.kafka import Delivery
from shared.runtime.observability import EVENTS_APPLIED, EVENTS_ENQUEUED, EVENTS_SEEN_BEFORE
from shared.runtime.unit_of_work import Batch, NewEvents, UnitOfWork, UnitsOfWork, by_type
from tests.unit.event_examples import deal, fx_rates, order_redeemed

SERVICE = "uow-test"
SOURCE = "test"


class Tx:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.claimed: set[EventIdentity] = set()
        self.outbox: list[CloudEvent[Any]] = []

    async def claim(self, events: Batch) -> set[EventIdentity]:
        fresh = {e.identity for e, _ in events} - self.store.inbox - self.claimed
        self.claimed |= fresh
        return fresh

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        self.outbox.extend(events)


class Store:
    """Keeps what a transaction claimed and enqueued only if it commits."""

    def __init__(self) -> None:
        self.inbox: set[EventIdentity] = set()
        self.outbox: list[CloudEvent[Any]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        tx = Tx(self)
        yield tx
        self.inbox |= tx.claimed
        self.outbox.extend(tx.outbox)


def _event(data: Any) -> CloudEvent[Any]:
    return make_event(data, source=SOURCE)


def _item(event: CloudEvent[Any], offset: int, signer: Signer | None = None) -> Any:
    return event, Delivery("t", 0, offset, None, b"", (), signed_by=signer)


def _batch(*events: CloudEvent[Any]) -> list[Any]:
    return [_item(event, offset) for offset, event in enumerate(events)]


def _count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def test_new_events_are_handled_once_and_what_they_publish_is_committed() -> None:
    store = Store()
    a, b = _event(deal()), _event(order_redeemed())
    handled: list[list[str]] = []

    async def handle(new: NewEvents, uow: UnitOfWork[Tx]) -> None:
        handled.append([e.id for e in new.events])
        uow.publish([_event(fx_rates()) for _ in new.events])

    units = UnitsOfWork(SERVICE, store, handle)
    applied, seen = _count(EVENTS_APPLIED, SERVICE), _count(EVENTS_SEEN_BEFORE, SERVICE)
    await units(_batch(a, a, b))  # a repeat inside the batch is handed over once
    await units(_batch(a, b))  # a replay changes nothing
    assert handled == [[a.id, b.id]]
    assert len(store.outbox) == 2
    assert _count(EVENTS_APPLIED, SERVICE) - applied == 2
    assert _count(EVENTS_SEEN_BEFORE, SERVICE) - seen == 2
    assert _count(EVENTS_ENQUEUED, SERVICE, EventType.FX_RATES_PUBLISHED) >= 2


async def test_a_failed_handler_leaves_nothing_and_runs_no_after_commit_action() -> None:
    store = Store()
    ran: list[str] = []

    async def handle(new: NewEvents, uow: UnitOfWork[Tx]) -> None:
        uow.publish(new.events)
        uow.after_commit(lambda: ran.append("index"))
        raise RuntimeError("poison")

    event = _event(deal())
    with pytest.raises(RuntimeError):
        await UnitsOfWork(SERVICE, store, handle)(_batch(event))
    assert (store.inbox, store.outbox, ran) == (set(), [], [])


async def test_after_commit_actions_run_in_order_once_the_batch_is_stored() -> None:
    store = Store()
    seen_stored: list[bool] = []

    async def wake() -> None:
        seen_stored.append(bool(store.inbox))

    async def handle(new: NewEvents, uow: UnitOfWork[Tx]) -> None:
        uow.after_commit(wake)
        uow.after_commit(lambda: seen_stored.append(False))

    await UnitsOfWork(SERVICE, store, handle)(_batch(_event(deal())))
    assert seen_stored == [True, False]


async def test_read_ahead_reaches_the_handler_for_the_whole_batch_only() -> None:
    store = Store()
    aheads: list[object | None] = []

    async def handle(new: NewEvents, uow: UnitOfWork[Tx]) -> None:
        aheads.append(new.ahead)

    units = UnitsOfWork(SERVICE, store, handle, read_ahead=lambda batch: len(batch))
    whole = _batch(_event(deal()), _event(order_redeemed()))
    apply = units.prepare(whole)
    await apply(whole[:1])  # a part, after the whole failed: worked out from scratch
    await apply(whole)
    assert aheads == [None, 2]


async def test_by_type_hands_over_runs_of_one_type_in_arrival_order() -> None:
    calls: list[tuple[str, int]] = []

    def recorder(name: str) -> Any:
        async def handle(new: NewEvents, uow: UnitOfWork[Tx]) -> None:
            calls.append((name, len(new)))

        return handle

    handle = by_type(
        {
            EventType.ORDER_REDEEMED: recorder("orders"),
            EventType.DEAL_SIGNED: recorder("deals"),
        }
    )
    d1, d2, o1 = _event(deal()), _event(deal()), _event(order_redeemed())
    fx = _event(fx_rates())  # no handler: acknowledged untouched
    batch = _batch(d1, d2, fx, o1, d1)
    await UnitsOfWork(SERVICE, Store(), handle)(batch)
    assert calls == [("deals", 2), ("orders", 1)]


def test_new_events_name_the_brand_that_signed_each() -> None:
    brand = Signer(Party.BRAND, "br-12", "k1")
    shop = Signer(Party.SHOP, "shop-1", "k2")
    a, b, c = _event(deal()), _event(order_redeemed()), _event(fx_rates())
    batch = [_item(a, 0, brand), _item(b, 1, shop), _item(c, 2)]
    new = NewEvents.of(batch, {a.identity, b.identity, c.identity})
    assert new.brand_signers() == {a.identity: "br-12"}
    assert set(new.signers()) == {a.identity, b.identity}
    assert new.of_type(EventType.FX_RATES_PUBLISHED) == [c]
