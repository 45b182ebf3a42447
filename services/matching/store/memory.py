"""The in-memory fake of the matching store (the port: `port.py`).

Dicts instead of tables. Transactions run one at a time and roll back (restore a copy of the
state) on error, so the fake passes tests/unit/matching/store_contract.py as the PostgreSQL
adapter does.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from services.matching.domain.profiles import Account, profile_text
from services.matching.domain.ranker import LinearRanker, TrainingSet
from services.matching.store.port import (
    Answer,
    Asked,
    Feedback,
    FollowerCount,
    KeptDeal,
    ModelStatus,
    Outcome,
    StoredModel,
    StoredProfile,
    as_json,
    check_promotable,
    decision_label,
    outcome_label,
    training_set_of,
)
from shared.contract.events import CloudEvent, CreatorProfileUpserted, EventIdentity, MatchRequested
from shared.contract.money import FxSnapshot
from shared.runtime.fx_moves import rejudged
from shared.runtime.inbox import Claimed, claim_in
from shared.runtime.unit_of_work import Batch

FxKey = tuple[str, datetime, str]

# The inbox's consumer, named as the service names it in PostgreSQL.
_CONSUMER: Final = "matching"


@dataclass
class MemoryState:
    profiles: dict[Account, StoredProfile] = field(default_factory=dict)
    hires: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # campaign, creator, brand
    cancelled: set[tuple[str, str]] = field(default_factory=set)  # (deal, brand)
    answers: dict[str, Answer] = field(default_factory=dict)
    feedback: dict[EventIdentity, Feedback] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    followers: dict[tuple[str, str, datetime], int] = field(default_factory=dict)
    stored: list[StoredModel] = field(default_factory=list)  # oldest first
    arrival: dict[object, int] = field(default_factory=dict)  # label key -> arrival order
    promoted: dict[str, int] = field(default_factory=dict)  # version -> when it last went live
    inbox: dict[tuple[str, str, str], Claimed] = field(default_factory=dict)
    outbox: list[CloudEvent[Any]] = field(default_factory=list)
    fx: dict[FxKey, FxSnapshot] = field(default_factory=dict)
    clock: int = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def copy(self) -> MemoryState:
        """A copy deep enough to roll back to: the values themselves are immutable."""
        return MemoryState(**{k: copy.copy(v) for k, v in self.__dict__.items()})

    def latest_fx(self, where: Callable[[FxSnapshot], bool]) -> FxSnapshot | None:
        found = [s for s in self.fx.values() if where(s)]
        return max(found, key=lambda s: (s.as_of, s.source), default=None)


class MemoryMatchingTransaction:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def claim(self, events: Batch) -> set[EventIdentity]:
        return claim_in(self._s.inbox, _CONSUMER, events)

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        known = {e.id for e in self._s.outbox}
        self._s.outbox += [e for e in events if e.id not in known]

    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        key = (snapshot.base, snapshot.as_of, snapshot.source)
        if key in self._s.fx:
            return False
        self._s.fx[key] = replace(snapshot, suspect=None)
        # As shared.runtime.fx_store.save_judged: this one and every later one judged again.
        trusted = [s for s in self._s.fx.values() if s.as_of < snapshot.as_of and s.suspect is None]
        later = sorted(
            (s for s in self._s.fx.values() if s.as_of >= snapshot.as_of),
            key=lambda s: (s.as_of, s.source),
        )
        for verdict in rejudged(later, trusted, max_move):
            self._s.fx[verdict.base, verdict.as_of, verdict.source] = verdict
        return True

    async def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> set[Account]:
        changed = set()
        for p in profiles:
            old = self._s.profiles.get(p.account)
            if old is None or old.event_time <= p.event_time:
                self._s.profiles[p.account] = p
                changed.add(p.account)
        return changed

    async def record_hire(
        self, deal_id: str, campaign_id: str, creator_id: str, at: datetime, brand_id: str = ""
    ) -> None:
        self._s.hires.setdefault(deal_id, (campaign_id, creator_id, brand_id))

    async def record_cancellation(self, deal_id: str, brand_id: str, at: datetime) -> None:
        self._s.cancelled.add((deal_id, brand_id))

    async def kept_deals(self, deal_ids: Collection[str]) -> dict[str, KeptDeal]:
        return {d: KeptDeal(*self._s.hires[d]) for d in deal_ids if d in self._s.hires}

    async def hired(
        self,
        campaign_ids: Collection[str],
        brands: Mapping[str, str] | None = None,
    ) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {campaign: set() for campaign in campaign_ids}

        def counts(campaign: str, brand: str) -> bool:
            return brands is None or brand in ("", brands.get(campaign))

        for deal_id, (campaign, cid, brand) in self._s.hires.items():
            kept = (deal_id, brand) not in self._s.cancelled
            if campaign in found and kept and counts(campaign, brand):
                found[campaign].add(cid)
        for f in self._s.feedback.values():
            if (
                f.campaign_id in found
                and f.decision == "hired"
                and counts(f.campaign_id, f.signed_by)
            ):
                found[f.campaign_id].add(f.creator_id)
        return {campaign: frozenset(creators) for campaign, creators in found.items()}

    async def answered_for(self, request_ids: Collection[str]) -> dict[str, Asked]:
        found = {r: self._s.answers.get(r) for r in request_ids}
        return {
            r: Asked(a.brand_id, a.campaign_id, None if a.request is None else as_json(a.request))
            for r, a in found.items()
            if a is not None
        }

    async def save_answers(self, answers: Sequence[Answer]) -> set[str]:
        recorded = set()
        for answer in answers:
            if answer.request_id not in self._s.answers:
                self._s.answers[answer.request_id] = answer
                recorded.add(answer.request_id)
        return recorded

    async def record_feedback(self, feedback: Feedback) -> None:
        if feedback.event not in self._s.feedback:
            self._s.feedback[feedback.event] = feedback
            self._s.arrival[feedback.event] = self._s.tick()

    async def campaign_brands(self, campaign_ids: Collection[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for a in self._s.answers.values():
            if a.campaign_id in campaign_ids:
                found.setdefault(a.campaign_id, {})[a.request_id] = a.brand_id
        return found

    async def record_outcome(self, outcome: Outcome) -> None:
        old = self._s.outcomes.get(outcome.deal_id)
        if old is None or old.as_of <= outcome.as_of:
            self._s.outcomes[outcome.deal_id] = outcome
            self._s.arrival[outcome.deal_id] = self._s.tick()

    async def record_followers(self, observations: Sequence[FollowerCount]) -> None:
        for o in observations:
            self._s.followers.setdefault((o.creator_id, o.platform, o.observed_at), o.followers)


class MemoryMatchingStore:
    """The fake: same behaviour as the PostgreSQL adapter, one transaction at a time."""

    def __init__(self) -> None:
        self._s = MemoryState()
        self._lock = asyncio.Lock()
        self._training = False

    @property
    def state(self) -> MemoryState:
        return self._s

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryMatchingTransaction]:
        async with self._lock:
            before = self._s.copy()
            try:
                yield MemoryMatchingTransaction(self._s)
            except BaseException:
                self._s = before
                raise

    @contextlib.asynccontextmanager
    async def retrain_turn(self) -> AsyncIterator[bool]:
        if self._training:
            yield False
            return
        self._training = True
        try:
            yield True
        finally:
            self._training = False

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        return self._s.latest_fx(lambda s: s.as_of <= when and s.suspect is None)

    async def count_profiles(self) -> int:
        return len(self._s.profiles)

    async def profiles_of(self, creator_ids: Sequence[str]) -> list[CreatorProfileUpserted]:
        wanted = set(creator_ids)
        return [self._s.profiles[a].profile for a in sorted(self._s.profiles) if a[0] in wanted]

    async def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        ordered = [self._s.profiles[account].profile for account in sorted(self._s.profiles)]
        for start in range(0, len(ordered), chunk):
            yield ordered[start : start + chunk]

    async def texts(self) -> list[tuple[Account, str]]:
        return [
            (account, profile_text(p.profile.bio, p.profile.topics))
            for account, p in self._s.profiles.items()
        ]

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        totals: dict[str, tuple[float, int]] = {}
        for o in self._s.outcomes.values():
            if o.roas is None or (creator_ids is not None and o.creator_id not in creator_ids):
                continue
            total, deals = totals.get(o.creator_id, (0.0, 0))
            totals[o.creator_id] = (total + float(o.roas), deals + 1)
        return [(cid, total, deals) for cid, (total, deals) in totals.items()]

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        history: dict[Account, list[tuple[datetime, int]]] = {}
        for (creator_id, platform, at), followers in sorted(self._s.followers.items()):
            if creator_ids is None or creator_id in creator_ids:
                history.setdefault((creator_id, platform), []).append((at, followers))
        return history

    def _suggested(
        self, campaign_id: str, creator_id: str, request_id: str | None, signer: str = ""
    ) -> tuple[str, list[float]] | None:
        """(brand, features) of the creator's latest suggestion for the campaign (to
        `signer`, the brand, if given)."""
        found = None
        for answer in self._s.answers.values():  # insertion order = answering order
            if answer.campaign_id != campaign_id or request_id not in (None, answer.request_id):
                continue
            if signer not in ("", answer.brand_id):
                continue
            for cid, _, _, features in answer.suggestions:
                if cid == creator_id:
                    found = (answer.brand_id, list(features))
        return found

    def _labels(self) -> list[tuple[str, list[float], int, float]]:
        """(brand, features, label, weight) in arrival order."""
        labelled: list[tuple[int, str, list[float], int, float]] = []
        for event, f in self._s.feedback.items():
            found = self._suggested(f.campaign_id, f.creator_id, f.request_id, f.signed_by)
            if found is not None:
                labelled.append((self._s.arrival[event], *found, *decision_label(f.decision)))
        for deal_id, o in self._s.outcomes.items():
            found = self._suggested(o.campaign_id, o.creator_id, None)
            if found is not None and o.roas is not None:
                labelled.append((self._s.arrival[deal_id], *found, *outcome_label(o.roas)))
        return [row[1:] for row in sorted(labelled, key=lambda row: row[0])]

    async def label_count(self) -> int:
        return len(self._s.feedback) + sum(o.roas is not None for o in self._s.outcomes.values())

    async def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for brand, *_ in self._labels():
            counts[brand] = counts.get(brand, 0) + 1
        return counts

    async def training_set(self, brand_id: str | None = None) -> TrainingSet:
        return training_set_of(
            [(f, label, w) for b, f, label, w in self._labels() if brand_id in (None, b)]
        )

    async def brand_history(
        self, brand_id: str, requests: int
    ) -> tuple[list[MatchRequested], frozenset[str]]:
        mine = [a for a in self._s.answers.values() if a.brand_id == brand_id]
        briefs = [a.request for a in mine if a.request is not None]
        shown = frozenset(cid for a in mine for cid, *_ in a.suggestions)
        return briefs[-requests:] if requests else [], shown

    async def save_model(
        self,
        ranker: LinearRanker,
        labels: int,
        *,
        brand_id: str | None = None,
        live: bool = False,
        reason: str = "",
        metrics: dict[str, float] | None = None,
    ) -> None:
        if any(m.ranker.version == ranker.version for m in self._s.stored):
            return
        if live:
            self._set_status(brand_id, "live", "retired")
            self._s.promoted[ranker.version] = self._s.tick()
        status: ModelStatus = "live" if live else "candidate"
        self._s.stored.append(
            StoredModel(
                ranker, brand_id, status, labels, reason, dict(metrics or {}), datetime.now(UTC)
            )
        )

    async def models(
        self, brand_id: str | None = None, *, status: ModelStatus | None = None
    ) -> list[StoredModel]:
        return [
            m
            for m in reversed(self._s.stored)
            if brand_id in (None, m.brand_id) and status in (None, m.status)
        ]

    async def promote(self, version: str) -> StoredModel:
        found = [m for m in self._s.stored if m.ranker.version == version]
        if not found:
            raise LookupError(f"no stored ranker {version!r}")
        check_promotable(found[0])
        self._set_status(found[0].brand_id, "live", "retired")
        return self._change(version, "live", "promoted by an operator")

    async def rollback(self, brand_id: str) -> StoredModel | None:
        live = [m for m in self._s.stored if m.brand_id == brand_id and m.status == "live"]
        if not live:
            raise LookupError(f"brand {brand_id!r} has no live ranker to roll back")
        self._change(live[0].ranker.version, "rolled_back", "rolled back")
        before = [
            m
            for m in self._s.stored
            if m.brand_id == brand_id
            and m.status == "retired"
            and m.ranker.version in self._s.promoted
        ]
        if not before:
            return None
        latest = max(before, key=lambda m: self._s.promoted[m.ranker.version])
        return self._change(latest.ranker.version, "live", "back in use after a rollback")

    def _set_status(self, brand_id: str | None, old: ModelStatus, new: ModelStatus) -> None:
        for i, m in enumerate(self._s.stored):
            if m.brand_id == brand_id and m.status == old:
                self._s.stored[i] = replace(m, status=new)

    def _change(self, version: str, status: ModelStatus, reason: str) -> StoredModel:
        for i, m in enumerate(self._s.stored):
            if m.ranker.version == version:
                self._s.stored[i] = replace(m, status=status, reason=reason)
                if status == "live":
                    self._s.promoted[version] = self._s.tick()
                return self._s.stored[i]
        raise LookupError(version)
