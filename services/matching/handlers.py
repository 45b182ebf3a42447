"""The handlers matching's units of work call, one per event type (docs/architecture.md §8).

Each consumed batch is cut into runs of consecutive events of one type, handled in arrival
order, and each run is one unit of work (shared/runtime/unit_of_work.py): inbox claim, the
handler's writes and the outbox in one transaction. Not one unit of work per batch, because a
profile must reach the in-memory index (after its commit) before a request later in the same
batch is scored, and because a request run first reads the followed topics to their end: the
follower's own units of work must not wait for a transaction of ours still open.

In-memory changes (the index, performance, the FX snapshot in force) are registered with
`uow.after_commit`. A profile run also holds the index lock from before its transaction until
its index change is done, so this replica's index takes the profiles in commit order whichever
of its consumers (the group's, the follower) wrote them. A run whose events were all written
by another consumer (this replica's follower, or another replica) is not handed to a handler:
its state is taken from the database, as the handler's after-commit work would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.matching.domain.profiles import Account
from services.matching.domain.scoring import match_many
from services.matching.state import MatchingService
from services.matching.store.port import (
    Asked,
    MatchingStore,
    MatchingTransaction,
    Outcome,
    as_json,
)
from services.matching.translate import (
    answer_record,
    check_request,
    exploration_seed,
    feedback_record,
    follower_count,
    match_query,
    profile_columns,
    stored_profile,
    suggestion_payload,
)
from shared.contract.errors import EventRejected
from shared.contract.events import (
    AttributionUpdated,
    CloudEvent,
    CreatorProfileUpserted,
    DealAmended,
    DealCancelled,
    EventType,
    MatchFeedback,
    MatchRequested,
    make_event,
)
from shared.contract.signing import RejectReason
from shared.runtime.fx_store import snapshot_from_event
from shared.runtime.kafka import Delivery
from shared.runtime.trust import Untrusted
from shared.runtime.unit_of_work import Batch, Clock, NewEvents, UnitOfWork, UnitsOfWork, by_type

SOURCE = "creatorflow/matching"
Uow = UnitOfWork[MatchingTransaction]
CatchUp = Callable[[], Awaitable[None]]


class MatchingHandlers:
    """One handler per event type, and what each changes in memory once committed."""

    def __init__(
        self,
        service: MatchingService,
        store: MatchingStore,
        *,
        fx_max_move: Decimal = Decimal("0.25"),
        catch_up: CatchUp | None = None,
    ) -> None:
        self.service = service
        self._store = store
        self._fx_max_move = fx_max_move
        self._scoring = service.scoring
        self.catch_up = catch_up
        """Reads the followed topics to their end (the follower's), before requests."""
        self.handle = by_type(
            {
                EventType.CREATOR_PROFILE_UPSERTED: self.on_profiles,
                EventType.MATCH_REQUESTED: self.on_requests,
                EventType.MATCH_FEEDBACK: self.on_feedback,
                EventType.ATTRIBUTION_UPDATED: self.on_attribution,
                EventType.FX_RATES_PUBLISHED: self.on_fx,
                EventType.DEAL_SIGNED: self.on_deals,
                EventType.DEAL_AMENDED: self.on_amended_deals,
                EventType.DEAL_CANCELLED: self.on_cancelled_deals,
            }
        )
        self._taken_from_database: dict[str, Callable[[Batch], Awaitable[None]]] = {
            EventType.CREATOR_PROFILE_UPSERTED: lambda run: self._index_profiles(run, {}),
            EventType.ATTRIBUTION_UPDATED: self._index_performance,
            EventType.FX_RATES_PUBLISHED: lambda run: self._fx_in_force(),
        }

    @contextlib.asynccontextmanager
    async def around(self, event_type: str) -> AsyncIterator[None]:
        """What a run of `event_type` needs held or done before its transaction opens."""
        if event_type == EventType.CREATOR_PROFILE_UPSERTED:
            async with self.service.index_lock:
                yield
            return
        if event_type == EventType.MATCH_REQUESTED and self.catch_up is not None:
            await self.catch_up()  # every profile published before these requests
        yield

    async def seen_before(self, run: Batch) -> None:
        """A run every event of which another consumer applied: take its state from the
        database, as the handler would have after its commit."""
        refresh = self._taken_from_database.get(run[0][0].type)
        if refresh is not None:
            await refresh(run)

    async def on_profiles(self, new: NewEvents, uow: Uow) -> None:
        latest = {stored_profile(e).account: stored_profile(e) for e in new.events}
        changed = await uow.tx.upsert_profiles(list(latest.values()))
        # Every count is history, also one older than the stored profile.
        await uow.tx.record_followers([follower_count(e) for e in new.events])
        written = {a: p.profile for a, p in latest.items() if a in changed}
        uow.after_commit(lambda: self._index_profiles(new.batch, written, latest.keys()))

    async def _index_profiles(
        self,
        run: Batch,
        written: Mapping[Account, CreatorProfileUpserted],
        ours: Collection[Account] = (),
    ) -> None:
        """Put the run's profiles in the index: those this unit wrote, and the others as the
        database has them (written by another consumer, whose claim committed before ours
        returned). Then judge the creators' follower histories, and refit if due."""
        accounts = {(e.data.creator_id, e.data.platform) for e, _ in run}
        elsewhere = accounts - set(ours)
        profiles = list(written.values())
        profiles += [
            p
            for p in await self._store.profiles_of(sorted({cid for cid, _ in elsewhere}))
            if (p.creator_id, p.platform) in elsewhere
        ]
        index = self.service.state.index
        if profiles:
            index.upsert(profile_columns(profiles))
        if accounts:
            await self.service.judge_follower_history(sorted({cid for cid, _ in accounts}))
        if self.service.state.index.needs_refit():
            await self.service.refit()

    async def on_requests(self, new: NewEvents, uow: Uow) -> None:
        """Requests that arrived together are scored together (`match_many`: one call for
        all their niches, costs and audience shares) and answered in one transaction,
        set-based."""
        requests: list[MatchRequested] = [e.data for e in new.events]
        check_request_ids(requests, await uow.tx.answered_for({r.request_id for r in requests}))
        # Per brand: brands may ask for the same campaign id, and a `hired` feedback counts
        # only for the requests of the brand that signed it.
        hired: dict[tuple[str, str], frozenset[str]] = {}
        for brand in sorted({r.brand_id for r in requests}):
            campaigns = {r.campaign_id for r in requests if r.brand_id == brand}
            found = await uow.tx.hired(campaigns, dict.fromkeys(campaigns, brand))
            hired.update({(brand, campaign): creators for campaign, creators in found.items()})
        state = self.service.state
        asked = [
            (
                match_query(
                    r,
                    hired=hired[r.brand_id, r.campaign_id],
                    exploration_seed=exploration_seed(e.id),
                ),
                state.ranker_for(r.brand_id),
            )
            for e, r in zip(new.events, requests, strict=True)
        ]
        async with self.service.index_lock:
            results = match_many(state.index, asked, state.fx, self._scoring)
        answers = [
            (make_event(suggestion_payload(request, result), source=SOURCE), request, result)
            for request, result in zip(requests, results, strict=True)
        ]
        recorded = await uow.tx.save_answers(
            [answer_record(event.id, request, result) for event, request, result in answers]
        )
        published = []
        for event, request, _ in answers:  # a request id answered before is not answered
            if request.request_id in recorded:
                recorded.discard(request.request_id)
                published.append(event)
        uow.publish(published)

    async def on_feedback(self, new: NewEvents, uow: Uow) -> None:
        """Keep each brand's feedback on its suggestions.

        Feedback names no brand: signed by another brand than the one whose request it
        answers (or, without a request id, than every brand that asked for the campaign), it
        is refused (`not_the_owner`); naming a request answered for another campaign, it is
        refused too. Feedback on a campaign not answered yet is kept with its
        signer and counts only for that brand's requests (the store's `hired` and labels).
        """
        owners = await uow.tx.campaign_brands({e.data.campaign_id for e in new.events})
        named = {e.data.request_id for e in new.events if e.data.request_id is not None}
        answered = await uow.tx.answered_for(named)
        signers = new.brand_signers()
        for event in new.events:
            data: MatchFeedback = event.data
            signer = signers.get(event.identity)
            if signer is not None:
                check_feedback_owner(data, signer, owners.get(data.campaign_id, {}))
            asked = answered.get(data.request_id or "")
            if asked is not None and asked.campaign_id != data.campaign_id:
                raise EventRejected(
                    f"data.request_id: {data.request_id!r} names a request for "
                    f"{asked.campaign_id}, not {data.campaign_id}: feedback goes with the "
                    "campaign it answers"
                )
            await uow.tx.record_feedback(feedback_record(event, signer))

    async def on_attribution(self, new: NewEvents, uow: Uow) -> None:
        for event in new.events:
            data: AttributionUpdated = event.data
            await uow.tx.record_outcome(
                Outcome(
                    data.deal_id, data.campaign_id, data.creator_id, data.roas, data.cpe, data.as_of
                )
            )
        uow.after_commit(lambda: self._index_performance(new.batch))

    async def _index_performance(self, run: Batch) -> None:
        """Whoever wrote the run's outcomes, the database has them now."""
        creators = sorted({e.data.creator_id for e, _ in run})
        performance = await self._store.performance(creators)
        async with self.service.index_lock:
            for creator_id, total, deals in performance:
                self.service.state.index.record_performance(creator_id, total, deals)

    async def on_fx(self, new: NewEvents, uow: Uow) -> None:
        for event in new.events:
            await uow.tx.save_fx(snapshot_from_event(event.data), event.id, self._fx_max_move)
        uow.after_commit(self._fx_in_force)

    async def _fx_in_force(self) -> None:
        # Estimated costs use the trusted snapshot in force (the codec refuses future ones).
        self.service.state.fx = await self._store.fx_in_force(datetime.now(UTC))

    async def on_deals(self, new: NewEvents, uow: Uow) -> None:
        for event in new.events:
            data = event.data
            await uow.tx.record_hire(
                data.deal_id, data.campaign_id, data.creator_id, event.time, data.brand_id
            )

    async def on_amended_deals(self, new: NewEvents, uow: Uow) -> None:
        """An amendment never changes the campaign or creator: nothing to keep. Another
        brand's is refused, as the other services refuse it."""
        await check_deal_owners([e.data for e in new.events], uow.tx)

    async def on_cancelled_deals(self, new: NewEvents, uow: Uow) -> None:
        """A cancelled deal no longer makes its creator hired for the campaign; only the
        cancellation of the deal's own brand counts (`hired`), whichever arrives first. One
        by another brand than a kept deal's is refused."""
        await check_deal_owners([e.data for e in new.events], uow.tx)
        for event in new.events:
            await uow.tx.record_cancellation(event.data.deal_id, event.data.brand_id, event.time)


class MatchingUnits(UnitsOfWork[MatchingTransaction]):
    """Matching's consumer: one unit of work per run of one event type (module docstring).
    The group consumer and the follower both hand their batches to it."""

    def __init__(
        self,
        service: str,
        store: MatchingStore,
        handlers: MatchingHandlers,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(service, store, handlers.handle, clock=clock)
        self._handlers = handlers

    async def __call__(self, batch: Batch) -> None:
        for event, _ in batch:  # refuse a bad request before any work: the batch is bisected
            if event.type == EventType.MATCH_REQUESTED:
                check_request(event.data)
        for run in runs_of_one_type(batch):
            async with self._handlers.around(run[0][0].type):
                if await self.apply(run) is None:
                    await self._handlers.seen_before(run)


def runs_of_one_type(batch: Batch) -> list[Sequence[tuple[CloudEvent[Any], Delivery]]]:
    """`batch` cut into runs of consecutive events of one type, in arrival order."""
    runs: list[list[tuple[CloudEvent[Any], Delivery]]] = []
    for item in batch:
        if runs and runs[-1][0][0].type == item[0].type:
            runs[-1].append(item)
        else:
            runs.append([item])
    return list(runs)


async def check_deal_owners(
    changes: Sequence[DealAmended | DealCancelled], tx: MatchingTransaction
) -> None:
    """Raise Untrusted for a change of a kept deal by another brand than the deal's, and
    EventRejected for an amendment moving it to another campaign or creator (what matching
    keeps of a deal; the fee currency it does not keep, payouts and tracking check it)."""
    kept = await tx.kept_deals({c.deal_id for c in changes})
    for change in changes:
        deal = kept.get(change.deal_id)
        if deal is None:
            continue
        if deal.brand_id and change.brand_id != deal.brand_id:
            raise Untrusted(
                RejectReason.NOT_THE_DEAL_OWNER,
                f"data.brand_id: deal {change.deal_id} is brand {deal.brand_id}'s, "
                f"not {change.brand_id}'s",
            )
        if isinstance(change, DealAmended):
            for name, was in (("campaign_id", deal.campaign_id), ("creator_id", deal.creator_id)):
                if getattr(change, name) != was:
                    raise EventRejected(
                        f"data.{name}: {getattr(change, name)!r} differs from deal "
                        f"{change.deal_id}'s {was!r}; an amendment never changes it"
                    )


def check_request_ids(requests: Sequence[MatchRequested], answered: Mapping[str, Asked]) -> None:
    """Refuse a request whose `request_id` already names another request: of another brand
    or campaign, or with other details (`answered`, or earlier in `requests`): the answer and
    any feedback go by that id. The same request sent again under it (another event id) is a
    repeat, answered once."""
    named = dict(answered)
    for r in requests:
        asked = named.setdefault(r.request_id, Asked(r.brand_id, r.campaign_id, as_json(r)))
        if asked.brand_id != r.brand_id:
            whose = "another brand's request"
        elif asked.campaign_id != r.campaign_id:
            whose = f"a request for {asked.campaign_id}"
        elif asked.request is not None and (changed := _changed(asked.request, as_json(r))):
            whose = f"a request with another {', '.join(changed)}"
        else:
            continue
        raise EventRejected(
            f"data.request_id: {r.request_id!r} already names {whose}; a request id names one "
            "request, whose answer and feedback carry it: send this one under an id of its own"
        )


def _changed(before: Mapping[str, object], after: Mapping[str, object]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def check_feedback_owner(data: MatchFeedback, signer: str, requests: Mapping[str, str]) -> None:
    """Raise Untrusted unless `signer` is the brand the feedback is about: the brand of the
    request it names, else of any answered request of its campaign (`requests`: request id
    -> brand). Feedback on a campaign with no answered request passes (kept with its signer)."""
    if not requests:
        return
    named = requests.get(data.request_id) if data.request_id is not None else None
    owners = {named} if named is not None else set(requests.values())
    if signer not in owners:
        raise Untrusted(
            RejectReason.NOT_THE_OWNER,
            f"campaign {data.campaign_id} was asked for by brand {', '.join(sorted(owners))}; "
            f"this feedback is signed by brand {signer}",
        )
