"""Wiring of the matching service: one consumer group over its six input topics, and in
every replica a follower of the topics its memory is made of.

Each consumed batch is cut into runs of consecutive events of one type, handled in order. A
run is one database transaction (inbox claim + state change + outbox); the in-memory index
changes only after that commit.

Replicas share the group, so each request is answered once, but each replica keeps the whole
index: its `TopicFollower` (shared.runtime.follow) reads every partition of the profile, FX
and attribution topics. The group consumer and the follower handle such an event alike: the
inbox claim lets one of them (in any replica) write it, the other's claim waits for that
commit, and both then take the state from the database. Before answering, a replica reads
those topics to their end, so a request sees every profile published before it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import numpy as np
import structlog

from services.matching.domain.features import FEATURES
from services.matching.domain.follower_history import largest_jump
from services.matching.domain.index import CreatorIndex
from services.matching.domain.learning import Verdict, learn_brand
from services.matching.domain.profiles import Account, ProfileColumns
from services.matching.domain.ranker import HAND_RANKER, LinearRanker
from services.matching.domain.scoring import MatchQuery, MatchResult, match_many
from services.matching.settings import MatchingSettings
from services.matching.store.postgres import (
    Answer,
    FollowerCount,
    MatchingStore,
    Outcome,
    PostgresMatchingStore,
    StoredProfile,
)
from services.matching.translate import check_request, suggestion_payload
from shared.contract.events import (
    AttributionUpdated,
    CloudEvent,
    CreatorProfileUpserted,
    DealSigned,
    EventType,
    FxRatesPublished,
    MatchFeedback,
    MatchRequested,
    Topic,
    make_event,
)
from shared.contract.money import FxSnapshot
from shared.contract.signing import RejectReason
from shared.runtime import fx_store, inbox, outbox
from shared.runtime.follow import TopicFollower
from shared.runtime.kafka import Delivery, kafka_security
from shared.runtime.service import Background, Resources
from shared.runtime.trust import Untrusted

log = structlog.get_logger(__name__)

SERVICE: Final = "matching"
GROUP_ID: Final = SERVICE  # the consumer group
BATCH_TIMEOUT_MS: Final = 20  # how long a batch may wait to fill once it has records
SOURCE: Final = "creatorflow/matching"
INPUT_TOPICS: Final = (
    Topic.CREATOR_PROFILES,
    Topic.BRAND_MATCH_REQUESTS,
    Topic.MATCH_FEEDBACK,
    Topic.TRACKING_ATTRIBUTION,
    Topic.FX_RATES,
    Topic.CAMPAIGN_DEALS,
)
# What every replica keeps in memory: each replica also reads these whole (its follower).
FOLLOWED_TOPICS: Final = (Topic.CREATOR_PROFILES, Topic.FX_RATES, Topic.TRACKING_ATTRIBUTION)
# One replica at a time trains rankers (a session advisory lock).
_RETRAIN_LOCK: Final = 0x6D61_7463_6872_6E31  # "matchrn1"
# Published through the outbox; the registry routes each event type to its topic.
OUTPUT_TOPICS: Final = (Topic.MATCH_SUGGESTIONS,)

Batch = Sequence[tuple[CloudEvent[Any], Delivery]]


@dataclass
class MatchingState:
    """What the service keeps in memory; all of it can be rebuilt from Postgres."""

    index: CreatorIndex
    rankers: dict[str, LinearRanker] = field(default_factory=dict)
    """Each brand's live ranker; a brand without one is ranked by the hand weights."""
    labels_at_training: dict[str, int] = field(default_factory=dict)
    """Per brand, the label count its last ranker (live or not) was trained on."""
    trained_at: float = field(default_factory=time.monotonic)
    labels_seen: int = -1
    """Labels received at the last retraining check (-1: none made yet)."""
    fx: FxSnapshot | None = None

    def ranker_for(self, brand_id: str) -> LinearRanker:
        return self.rankers.get(brand_id, HAND_RANKER)


class MatchingService:
    def __init__(
        self,
        pool: Any,
        store: MatchingStore,
        settings: MatchingSettings,
        state: MatchingState,
        *,
        fx_max_move: Decimal = Decimal("0.25"),
    ) -> None:
        self._pool = pool
        self._fx_max_move = fx_max_move
        self._store = store
        self._settings = settings
        self._scoring = settings.scoring()
        self.state = state
        # Held while the index changes, and while it is read outside a worker thread.
        self._index_lock = asyncio.Lock()
        self.follower: TopicFollower | None = None
        self.consume: Background | None = None  # the group consumer's loop, once subscribed
        self._handlers: dict[str, Callable[[Batch], Awaitable[None]]] = {
            EventType.CREATOR_PROFILE_UPSERTED: self.on_profiles,
            EventType.MATCH_REQUESTED: self.on_requests,
            EventType.MATCH_FEEDBACK: self.on_feedback,
            EventType.ATTRIBUTION_UPDATED: self.on_attribution,
            EventType.FX_RATES_PUBLISHED: self.on_fx,
            EventType.DEAL_SIGNED: self.on_deals,
        }

    async def handle_batch(self, batch: Batch) -> None:
        """Handle a consumed batch as runs of one event type, in arrival order."""
        for event, _ in batch:  # refuse a bad request before any work: the batch is bisected
            if event.type == EventType.MATCH_REQUESTED:
                check_request(event.data)
        run: list[tuple[CloudEvent[Any], Delivery]] = []
        for item in batch:
            if run and item[0].type != run[0][0].type:
                await self._handle_run(run)
                run = []
            run.append(item)
        if run:
            await self._handle_run(run)

    async def _handle_run(self, run: Batch) -> None:
        handler = self._handlers.get(run[0][0].type)
        if handler is not None:
            await handler(run)

    async def on_profiles(self, run: Batch) -> None:
        async with self._index_lock:
            async with self._pool.acquire() as conn, conn.transaction():
                fresh = await inbox.claim(conn, SERVICE, run)
                latest: dict[Account, StoredProfile] = {}  # one profile per creator and platform
                counts = []
                accounts = set()
                for event, _ in run:
                    data: CreatorProfileUpserted = event.data
                    accounts.add((data.creator_id, data.platform))
                    if event.identity in fresh:
                        stored = StoredProfile(data.creator_id, data, event.time, event.id)
                        latest[stored.account] = stored
                        counts.append(
                            FollowerCount(
                                data.creator_id, data.platform, event.time, data.followers
                            )
                        )
                changed = await self._store.upsert_profiles(conn, list(latest.values()))
                # Every count is history, also one older than the stored profile.
                await self._store.record_followers(conn, counts)
            profiles = [p.profile for account, p in latest.items() if account in changed]
            # Written by another consumer (this replica's follower, or another replica):
            # its claim committed before ours returned, so the database has it.
            elsewhere = accounts - latest.keys()
            profiles += [
                p
                for p in await self._store.profiles_of(sorted({cid for cid, _ in elsewhere}))
                if (p.creator_id, p.platform) in elsewhere
            ]
            creators = {cid for cid, _ in accounts}
            if profiles:
                self.state.index.upsert(ProfileColumns.from_profiles(profiles))
            if creators:
                await self._judge_follower_history(sorted(creators))
            if self.state.index.needs_refit():
                await self.refit()

    async def _judge_follower_history(self, creator_ids: list[str] | None) -> None:
        history = await self._store.follower_history(creator_ids)
        jumps = {account: largest_jump(points) for account, points in history.items()}
        self.state.index.record_follower_jumps(jumps)

    async def on_requests(self, run: Batch) -> None:
        """Requests that arrived together are scored together (`match_many`: one sparse
        product for all their niches) and answered in one transaction, set-based."""
        if self.follower is not None:
            await self.follower.catch_up()  # every profile published before these requests
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, SERVICE, run)
            requests: list[MatchRequested] = []
            seeds: list[int] = []
            for event, _ in run:
                if event.identity in fresh:
                    fresh.discard(event.identity)  # a repeat inside the run is answered once
                    requests.append(event.data)
                    seeds.append(exploration_seed(event.id))
            hired = await self._store.hired(
                conn,
                {r.campaign_id for r in requests},
                {r.campaign_id: r.brand_id for r in requests},
            )
            state = self.state
            asked = [
                (
                    MatchQuery.from_request(
                        request, hired=hired[request.campaign_id], exploration_seed=seed
                    ),
                    state.ranker_for(request.brand_id),
                )
                for request, seed in zip(requests, seeds, strict=True)
            ]
            async with self._index_lock:
                results = match_many(state.index, asked, state.fx, self._scoring)
            answers = [
                (make_event(suggestion_payload(request, result), source=SOURCE), request, result)
                for request, result in zip(requests, results, strict=True)
            ]
            recorded = await self._store.save_answers(
                conn, [_answer(event.id, request, result) for event, request, result in answers]
            )
            published = []
            for event, request, _ in answers:  # a request id answered before is not answered
                if request.request_id in recorded:
                    recorded.discard(request.request_id)
                    published.append(event)
            await outbox.enqueue(conn, published, producer=SERVICE)

    async def on_feedback(self, run: Batch) -> None:
        """Keep each brand's feedback on its suggestions.

        Feedback names no brand: signed by another brand than the one whose request it
        answers (or, without a request id, than every brand that asked for the campaign), it
        is refused (`not_the_owner`). Feedback on a campaign not answered yet is kept with its
        signer and counts only for that brand's requests (the store's `hired` and labels).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, SERVICE, run)
            campaigns = {event.data.campaign_id for event, _ in run if event.identity in fresh}
            owners = await self._store.campaign_brands(conn, campaigns)
            for event, delivery in run:
                if event.identity in fresh:
                    data: MatchFeedback = event.data
                    signer = delivery.signed_by.brand() if delivery.signed_by else None
                    if signer is not None:
                        check_feedback_owner(data, signer, owners.get(data.campaign_id, {}))
                    await self._store.record_feedback(
                        conn,
                        event.identity,
                        data.campaign_id,
                        data.creator_id,
                        data.decision,
                        data.request_id,
                        signer or "",
                    )

    async def on_attribution(self, run: Batch) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, SERVICE, run)
            creators = set()
            for event, _ in run:
                data: AttributionUpdated = event.data
                creators.add(data.creator_id)  # whoever wrote it, the database has it now
                if event.identity in fresh:
                    outcome = Outcome(
                        data.deal_id,
                        data.campaign_id,
                        data.creator_id,
                        data.roas,
                        data.cpe,
                        data.as_of,
                    )
                    await self._store.record_outcome(conn, outcome)
        performance = await self._store.performance(sorted(creators))
        async with self._index_lock:
            for creator_id, total, deals in performance:
                self.state.index.record_performance(creator_id, total, deals)

    async def on_fx(self, run: Batch) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, SERVICE, run)
            for event, _ in run:
                if event.identity in fresh:
                    data: FxRatesPublished = event.data
                    snapshot = fx_store.snapshot_from_event(data)
                    await fx_store.save_judged(conn, snapshot, event.id, self._fx_max_move)
        # Estimated costs use the trusted snapshot in force (the codec refuses future ones).
        self.state.fx = await fx_store.snapshot_at(self._pool, datetime.now(UTC), trusted=True)

    async def on_deals(self, run: Batch) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await inbox.claim(conn, SERVICE, run)
            for event, _ in run:
                if event.identity in fresh:
                    data: DealSigned = event.data
                    await self._store.record_hire(
                        conn, data.deal_id, data.campaign_id, data.creator_id, event.time
                    )

    async def refit(self) -> None:
        """Refit the vectoriser and anomaly model on every stored creator, off the event loop."""
        index = self.state.index
        rows_and_texts = [
            (index.account_row(*account), text) for account, text in await self._store.texts()
        ]
        texts = [(row, text) for row, text in rows_and_texts if row is not None]
        rows = np.array([row for row, _ in texts], dtype=np.int64)
        started = time.perf_counter()
        await asyncio.to_thread(index.refit, [text for _, text in texts], rows)
        log.info(
            "matching index refitted",
            creators=len(index),
            seconds=round(time.perf_counter() - started, 2),
        )

    async def rebuild(self) -> None:
        """Load every stored creator, performance, the latest FX snapshot and ranker."""
        total = await self._store.count_profiles()
        index = CreatorIndex(seed=self._settings.seed)
        texts: list[str] = []
        rows: list[np.ndarray[Any, Any]] = []
        loaded = 0
        started = time.perf_counter()
        async for chunk in self._store.iter_profiles(self._settings.rebuild_chunk):
            columns = ProfileColumns.from_profiles(chunk)
            written, picks = index.upsert(columns, encode_text=False)
            texts += [columns.text(int(i)) for i in picks]
            rows.append(written)
            loaded += len(chunk)
            log.info(
                "matching index rebuild",
                loaded=loaded,
                total=total,
                percent=round(100 * loaded / max(total, 1)),
            )
        if loaded:
            await asyncio.to_thread(index.refit, texts, np.concatenate(rows))
        for creator_id, roas_total, deals in await self._store.performance():
            index.record_performance(creator_id, roas_total, deals)
        self.state.index = index
        await self._judge_follower_history(None)
        self.state.fx = await fx_store.snapshot_at(self._pool, datetime.now(UTC), trusted=True)
        await self.load_models(history=True)
        log.info(
            "matching index ready",
            creators=len(index),
            seconds=round(time.perf_counter() - started, 2),
            brand_rankers=len(self.state.rankers),
        )

    async def load_models(self, *, history: bool = False) -> None:
        """Put in use every brand's live ranker, as stored (promotions and rollbacks made
        with `creatorflow matching models` take effect here); with `history`, also learn
        how many labels each brand's last ranker was trained on."""
        live = await self._store.models(status="live")
        self.state.rankers = {m.brand_id: m.ranker for m in live if m.brand_id is not None}
        for m in await self._store.models() if history else ():
            if m.brand_id is not None:
                trained = self.state.labels_at_training.get(m.brand_id, 0)
                self.state.labels_at_training[m.brand_id] = max(trained, m.labels)

    async def retrain_once(self) -> list[tuple[LinearRanker, Verdict]]:
        """Train a ranker for each brand with enough new labels (or when the schedule is due),
        judge it with the promotion gate and store it; only a promoted one is used."""
        due = time.monotonic() - self.state.trained_at >= self._settings.retrain_interval_seconds
        received = await self._store.label_count()  # cheap: per brand only when it moved
        if received == self.state.labels_seen and not due:
            return []
        self.state.labels_seen = received
        trained = []
        for brand_id, labels in sorted((await self._store.label_counts()).items()):
            new = labels - self.state.labels_at_training.get(brand_id, 0)
            if labels < self._settings.learning_min_labels or new <= 0:
                continue
            if new < self._settings.retrain_every_labels and not due:
                continue
            outcome = await self._train_brand(brand_id, labels)
            if outcome is not None:
                trained.append(outcome)
        if due:
            self.state.trained_at = time.monotonic()
        return trained

    async def _train_brand(self, brand_id: str, labels: int) -> tuple[LinearRanker, Verdict] | None:
        data = await self._store.training_set(brand_id)
        briefs, shown = await self._store.brand_history(
            brand_id, self._settings.learning_probe_requests
        )
        queries = [MatchQuery.from_request(b) for b in briefs]
        current = self.state.ranker_for(brand_id)
        version = f"lr-{brand_id}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{labels}"
        # Like the refit, the fit runs in a worker thread and only reads the index.
        learned = await asyncio.to_thread(
            learn_brand,
            data, queries, shown, current, self.state.index, self.state.fx, self._scoring,
            self._settings.learning(), version=version,
        )  # fmt: skip
        self.state.labels_at_training[brand_id] = labels
        if learned is None:
            return None  # nothing to learn from yet (one outcome only): wait for more labels
        ranker, verdict = learned
        await self._store.save_model(
            ranker, labels, brand_id=brand_id, live=verdict.promote, reason=verdict.reason,
            metrics=verdict.metrics,
        )  # fmt: skip
        if verdict.promote:
            self.state.rankers[brand_id] = ranker
            log.info("matching ranker promoted", brand_id=brand_id, model_version=version,
                     reason=verdict.reason, labels=len(data))  # fmt: skip
        else:
            log.warning("matching ranker stored, not used", brand_id=brand_id,
                        model_version=version, reason=verdict.reason, labels=len(data))  # fmt: skip
        return ranker, verdict

    async def retrain_loop(self) -> None:
        """Pick up promotions and rollbacks; train in one replica at a time, which first
        learns what the others trained (so a brand's labels are trained on once)."""
        while True:
            await asyncio.sleep(self._settings.retrain_check_seconds)
            async with self._pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RETRAIN_LOCK):
                    await self.load_models()
                    continue
                try:
                    await self.load_models(history=True)
                    await self.retrain_once()
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _RETRAIN_LOCK)


def exploration_seed(event_id: str) -> int:
    """The exploration draw's seed for a request event: the same for every replay of it."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big")


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


def _answer(event_id: str, request: MatchRequested, result: MatchResult) -> Answer:
    """The answer to `request` as recorded for learning and audit."""
    return Answer(
        request_id=request.request_id,
        campaign_id=request.campaign_id,
        brand_id=request.brand_id,
        model_version=result.model_version,
        fx_as_of=None if result.fx is None else result.fx.as_of,
        fx_source=None if result.fx is None else result.fx.source,
        filtered=result.filtered,
        event_id=event_id,
        suggestions=[
            (c.creator_id, c.rank, c.score, [c.features[f] for f in FEATURES])
            for c in result.creators
        ],
        request=request,
    )


async def start_service(resources: Resources, settings: MatchingSettings) -> MatchingService:
    """Rebuild the index from Postgres and subscribe the service's one consumer group."""
    store = PostgresMatchingStore(resources.pool)
    service = MatchingService(
        resources.pool,
        store,
        settings,
        MatchingState(CreatorIndex(seed=settings.seed)),
        fx_max_move=Decimal(str(resources.settings.fx_max_rate_move)),
    )
    follower = TopicFollower(
        resources.urls.kafka_bootstrap_servers,
        kafka_security(resources.settings),
        FOLLOWED_TOPICS,
        handler=service.handle_batch,
        policy=resources.consumer,
        client_id=f"{SERVICE}-follower",
        max_records=settings.batch_max_records,
    )
    await follower.start()  # at the topics' ends: what came before is in the database
    service.follower = follower
    await service.rebuild()
    service.consume = resources.consume_pipelined(
        INPUT_TOPICS,
        group_id=GROUP_ID,
        handler=service.handle_batch,
        max_records=settings.batch_max_records,
        batch_timeout_ms=BATCH_TIMEOUT_MS,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    return service


def background(resources: Resources, service: MatchingService) -> list[Background]:
    """The group consumer (pipelined batches, as in every service), the outbox relay (publishes
    the suggestions), the retraining schedule and the follower that keeps this replica's index
    current."""
    relay = resources.outbox_relay(SERVICE)
    loops: list[Background] = [relay.run, service.retrain_loop]
    if service.consume is not None:
        loops.append(service.consume)
    if service.follower is not None:
        loops.append(service.follower.run)
    return loops


async def setup(resources: Resources) -> list[Background]:
    """`shared.runtime.service` entry point: settings from the environment (MATCHING_*)."""
    service = await start_service(resources, MatchingSettings())
    return background(resources, service)
