"""One consumed batch, one unit of work: inbox claim, the service's handler and the outbox
enqueue in one database transaction (docs/architecture.md §2 and §8).

Every service consumes the same way: `UnitsOfWork` is the batch handler given to the
pipelined consumer (`shared.runtime.pipeline`). For each batch it opens a transaction on the
service's store, claims the batch in the inbox, hands the events seen for the first time to
the service's handler, enqueues what the handler published, and commits; only then does the
consumer commit the batch's offsets. What must wait for the commit (an in-memory index, a
dispatcher's wake-up, a metric) is registered with `UnitOfWork.after_commit` and runs once the
transaction is in the database, never for a transaction rolled back.

A service provides:

- a store whose `transaction()` yields a `Transaction` (`claim` and `enqueue` inside it);
- a `Handler`: `async def handle(events: NewEvents, uow: UnitOfWork[Tx]) -> None`, which
  translates the events to domain values, applies the domain rules, writes through `uow.tx`
  and publishes with `uow.publish`;
- optionally `read_ahead`: work on a whole batch that needs no database, done while the
  previous batch is applied, handed to the handler as `events.ahead` (None when the handler
  is given part of a batch after a failure, which it must then work out itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from shared.contract.events import CloudEvent, EventIdentity
from shared.contract.signing import Signer
from shared.runtime.kafka import BatchHandler, Delivery
from shared.runtime.observability import EVENTS_APPLIED, EVENTS_ENQUEUED, EVENTS_SEEN_BEFORE

Batch = Sequence[tuple[CloudEvent[Any], Delivery]]
Clock = Callable[[], datetime]


class Transaction(Protocol):
    """What the unit of work needs of a store transaction."""

    async def claim(self, events: Batch) -> set[EventIdentity]:
        """Record `events` in the inbox; return the identities seen for the first time."""
        ...

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        """Queue `events` in the outbox, published once the transaction commits."""
        ...


TxT = TypeVar("TxT", bound=Transaction)
TxT_co = TypeVar("TxT_co", bound=Transaction, covariant=True)


class TransactionalStore(Protocol[TxT_co]):
    def transaction(self) -> AbstractAsyncContextManager[TxT_co]:
        """A new transaction: committed when the block exits normally, else rolled back."""
        ...


@dataclass(frozen=True, slots=True)
class NewEvents:
    """The events of a batch not applied before, in batch order, each identity once.

    `batch` is the whole batch as consumed, repeats and events applied before included (a
    handler may need to know what arrived, e.g. to read back what another consumer wrote).
    """

    items: tuple[tuple[CloudEvent[Any], Delivery], ...]
    batch: Batch
    ahead: object | None = None

    @classmethod
    def of(cls, batch: Batch, fresh: set[EventIdentity], ahead: object | None = None) -> NewEvents:
        """The first occurrence in `batch` of each identity in `fresh`."""
        seen: set[EventIdentity] = set()
        items = []
        for event, delivery in batch:
            if event.identity in fresh and event.identity not in seen:
                seen.add(event.identity)
                items.append((event, delivery))
        return cls(tuple(items), batch, ahead)

    @property
    def events(self) -> list[CloudEvent[Any]]:
        return [event for event, _ in self.items]

    @property
    def identities(self) -> set[EventIdentity]:
        return {event.identity for event, _ in self.items}

    def of_type(self, *types: str) -> list[CloudEvent[Any]]:
        return [event for event, _ in self.items if event.type in types]

    def signers(self) -> dict[EventIdentity, Signer]:
        """Who signed each new event, where its signature was checked
        (shared.runtime.trust); unsigned events are absent."""
        return {
            event.identity: delivery.signed_by
            for event, delivery in self.items
            if delivery.signed_by is not None
        }

    def brand_signers(self) -> dict[EventIdentity, str]:
        """The brand that signed each new event a brand signed."""
        brands = {identity: signer.brand() for identity, signer in self.signers().items()}
        return {identity: brand for identity, brand in brands.items() if brand is not None}

    def shop_brands(self) -> dict[EventIdentity, str]:
        """The one brand of the shop that signed each new event a shop selling for one
        brand signed (its orders are that brand's)."""
        brands = {identity: signer.shop_brand() for identity, signer in self.signers().items()}
        return {identity: brand for identity, brand in brands.items() if brand is not None}

    def not_before(self) -> dict[EventIdentity, datetime]:
        """The earliest time each new event may take effect at (Delivery.not_before), where
        its record has a timestamp."""
        return {
            event.identity: delivery.not_before
            for event, delivery in self.items
            if delivery.not_before is not None
        }

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass
class UnitOfWork(Generic[TxT]):
    """One batch's transaction as a handler sees it."""

    tx: TxT
    now: datetime
    published: list[CloudEvent[Any]] = field(default_factory=list)
    _after_commit: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)

    def publish(self, events: Sequence[CloudEvent[Any]]) -> None:
        """Publish `events` through the outbox, in this order, if the transaction commits."""
        self.published.extend(events)

    def after_commit(self, action: Callable[[], Awaitable[None] | None]) -> None:
        """Run `action` once the transaction committed (never if it rolls back)."""
        self._after_commit.append(action)

    async def committed(self) -> None:
        for action in self._after_commit:
            result = action()
            if result is not None:
                await result


Handler = Callable[[NewEvents, UnitOfWork[TxT]], Awaitable[None]]


class UnitsOfWork(Generic[TxT]):
    """The batch handler of a service's consumer: one `UnitOfWork` per batch (or per part of
    a batch, when the failure policy bisects one that failed)."""

    def __init__(
        self,
        service: str,
        store: TransactionalStore[TxT],
        handler: Handler[TxT],
        *,
        read_ahead: Callable[[Batch], object | None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._service = service
        self._store = store
        self._handler = handler
        self._read_ahead = read_ahead
        self._clock = clock or (lambda: datetime.now(UTC))

    async def __call__(self, batch: Batch) -> None:
        await self.apply(batch)

    async def apply(self, batch: Batch, ahead: object | None = None) -> UnitOfWork[TxT] | None:
        """Apply `batch` in one transaction; the unit of work, or None if every event in it
        was applied before."""
        async with self._store.transaction() as tx:
            new = NewEvents.of(batch, await tx.claim(batch), ahead)
            if not new:
                unit = None
            else:
                unit = UnitOfWork(tx, self._clock())
                await self._handler(new, unit)
                await tx.enqueue(unit.published)
        EVENTS_SEEN_BEFORE.labels(self._service).inc(len({e.identity for e, _ in batch}) - len(new))
        if unit is None:
            return None
        EVENTS_APPLIED.labels(self._service).inc(len(new))
        for event in unit.published:
            EVENTS_ENQUEUED.labels(self._service, event.type).inc()
        await unit.committed()
        return unit

    def prepare(self, whole: Batch) -> BatchHandler:
        """The pipelined consumer's hook: read the whole batch ahead, while the previous one
        is applied; parts of it applied after a failure are worked out from scratch."""
        if self._read_ahead is None:
            return self
        ahead = self._read_ahead(whole)

        async def handle(batch: Batch) -> None:
            await self.apply(batch, ahead if batch is whole else None)

        return handle


def by_type(handlers: Mapping[str, Handler[TxT]]) -> Handler[TxT]:
    """One handler per event type. The batch's new events are handed over as runs of one
    type, in arrival order (a deal signed before its confirmation is applied first); events
    of other types are acknowledged untouched."""

    async def handle(new: NewEvents, uow: UnitOfWork[TxT]) -> None:
        run: list[tuple[CloudEvent[Any], Delivery]] = []
        for item in [*new.items, None]:
            if run and (item is None or item[0].type != run[0][0].type):
                handler = handlers.get(run[0][0].type)
                if handler is not None:
                    await handler(NewEvents(tuple(run), new.batch, new.ahead), uow)
                run = []
            if item is not None:
                run.append(item)

    return handle
