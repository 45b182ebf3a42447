"""Matching's own tables (deploy/migrations/0100_matching.sql) behind the `MatchingStore` port.

Writes take the caller's connection, so they share its transaction with the inbox claim and
the outbox; `PostgresMatchingStore` is the real adapter and `InMemoryMatchingStore` the fake
the unit tests use. Both pass tests/integration/matching/test_store_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from services.matching.features import FEATURES
from services.matching.profiles import profile_text
from services.matching.ranker import (
    LABELS,
    OUTCOME_WEIGHT,
    PROFITABLE_ROAS,
    LinearRanker,
    TrainingSet,
)
from shared.events import CreatorProfileUpserted, EventIdentity

Connection = Any  # an asyncpg.Connection for the real store; ignored by the fake


@dataclass(frozen=True)
class StoredProfile:
    creator_id: str
    profile: CreatorProfileUpserted
    event_time: datetime
    event_id: str


@dataclass(frozen=True)
class Answer:
    """One `match.suggested` as recorded for learning and audit."""

    request_id: str
    campaign_id: str
    brand_id: str
    model_version: str
    fx_as_of: datetime | None
    fx_source: str | None
    filtered: dict[str, int]
    event_id: str
    suggestions: Sequence[tuple[str, int, float, Sequence[float]]]
    """(creator_id, rank, score, features in FEATURES order) per suggestion."""


@dataclass(frozen=True)
class Outcome:
    """Realised performance of one deal, from `attribution.updated`."""

    deal_id: str
    campaign_id: str
    creator_id: str
    roas: Decimal | None
    cpe: Decimal | None
    as_of: datetime


class MatchingStore(Protocol):
    async def upsert_profiles(
        self, conn: Connection, profiles: Sequence[StoredProfile]
    ) -> set[str]:
        """Store profiles newer than the stored ones; returns the creator ids that changed."""
        ...

    async def count_profiles(self) -> int: ...

    def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        """Every stored profile, in creator_id order, `chunk` at a time."""
        ...

    async def texts(self) -> list[tuple[str, str]]:
        """(creator_id, niche text) of every stored creator."""
        ...

    async def record_hire(
        self, conn: Connection, deal_id: str, campaign_id: str, creator_id: str, at: datetime
    ) -> None: ...

    async def hired(self, conn: Connection, campaign_id: str) -> frozenset[str]:
        """Creators with a signed deal or a `hired` feedback for the campaign."""
        ...

    async def save_answer(self, conn: Connection, answer: Answer) -> bool:
        """Record an answer; False (and nothing written) if the request was answered before."""
        ...

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
    ) -> None: ...

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        """Keep the deal's latest attribution (by as_of)."""
        ...

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        """(creator_id, sum of ROAS, deals with a ROAS) per creator (all creators if None)."""
        ...

    async def label_count(self) -> int: ...

    async def training_set(self) -> TrainingSet:
        """Feedback and outcomes joined with the features each creator had when suggested."""
        ...

    async def save_model(self, ranker: LinearRanker, labels: int) -> None: ...

    async def latest_model(self) -> tuple[LinearRanker, int] | None:
        """The newest stored ranker and the label count it was trained on."""
        ...


def _training_set(rows: Sequence[tuple[Sequence[float], int, float]]) -> TrainingSet:
    return TrainingSet(
        np.array([r[0] for r in rows], dtype=np.float32).reshape(len(rows), len(FEATURES)),
        np.array([r[1] for r in rows], dtype=np.int8),
        np.array([r[2] for r in rows], dtype=np.float32),
    )


def _decision_label(decision: str) -> tuple[int, float]:
    return LABELS[decision]  # type: ignore[index]


def _outcome_label(roas: Decimal) -> tuple[int, float]:
    return (1 if roas >= Decimal(str(PROFITABLE_ROAS)) else 0), OUTCOME_WEIGHT


class PostgresMatchingStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def upsert_profiles(
        self, conn: Connection, profiles: Sequence[StoredProfile]
    ) -> set[str]:
        if not profiles:
            return set()
        rows = await conn.fetch(
            """INSERT INTO matching_creators (creator_id, profile, event_time, event_id)
               SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::text[])
               ON CONFLICT (creator_id) DO UPDATE
                 SET profile = excluded.profile, event_time = excluded.event_time,
                     event_id = excluded.event_id, updated_at = now()
                 WHERE matching_creators.event_time <= excluded.event_time
               RETURNING creator_id""",
            [p.creator_id for p in profiles],
            [p.profile.model_dump_json() for p in profiles],
            [p.event_time for p in profiles],
            [p.event_id for p in profiles],
        )
        return {row["creator_id"] for row in rows}

    async def count_profiles(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM matching_creators"))

    async def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        after = ""
        while True:
            rows = await self._pool.fetch(
                """SELECT creator_id, profile::text AS profile FROM matching_creators
                   WHERE creator_id > $1 ORDER BY creator_id LIMIT $2""",
                after,
                chunk,
            )
            if not rows:
                return
            yield [CreatorProfileUpserted.model_validate_json(r["profile"]) for r in rows]
            after = rows[-1]["creator_id"]

    async def texts(self) -> list[tuple[str, str]]:
        rows = await self._pool.fetch(
            """SELECT creator_id, profile->>'bio' AS bio, profile->'topics' AS topics
               FROM matching_creators"""
        )
        return [(r["creator_id"], profile_text(r["bio"], json.loads(r["topics"]))) for r in rows]

    async def record_hire(
        self, conn: Connection, deal_id: str, campaign_id: str, creator_id: str, at: datetime
    ) -> None:
        await conn.execute(
            """INSERT INTO matching_hires (deal_id, campaign_id, creator_id, signed_at)
               VALUES ($1, $2, $3, $4) ON CONFLICT (deal_id) DO NOTHING""",
            deal_id,
            campaign_id,
            creator_id,
            at,
        )

    async def hired(self, conn: Connection, campaign_id: str) -> frozenset[str]:
        rows = await conn.fetch(
            """SELECT creator_id FROM matching_hires WHERE campaign_id = $1
               UNION SELECT creator_id FROM matching_feedback
                     WHERE campaign_id = $1 AND decision = 'hired'""",
            campaign_id,
        )
        return frozenset(r["creator_id"] for r in rows)

    async def save_answer(self, conn: Connection, answer: Answer) -> bool:
        inserted = await conn.fetchval(
            """INSERT INTO matching_requests (request_id, campaign_id, brand_id, model_version,
                   fx_as_of, fx_source, filtered, event_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
               ON CONFLICT (request_id) DO NOTHING RETURNING true""",
            answer.request_id,
            answer.campaign_id,
            answer.brand_id,
            answer.model_version,
            answer.fx_as_of,
            answer.fx_source,
            json.dumps(answer.filtered),
            answer.event_id,
        )
        if not inserted:
            return False
        await conn.executemany(
            """INSERT INTO matching_suggestions
                   (request_id, creator_id, campaign_id, rank, score, features)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            [
                (answer.request_id, cid, answer.campaign_id, rank, score, list(features))
                for cid, rank, score, features in answer.suggestions
            ],
        )
        return True

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
    ) -> None:
        await conn.execute(
            """INSERT INTO matching_feedback
                   (source, event_id, campaign_id, creator_id, decision, request_id)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (source, event_id) DO NOTHING""",
            *event,
            campaign_id,
            creator_id,
            decision,
            request_id,
        )

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        await conn.execute(
            """INSERT INTO matching_performance (deal_id, campaign_id, creator_id, roas, cpe, as_of)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (deal_id) DO UPDATE
                 SET roas = excluded.roas, cpe = excluded.cpe, as_of = excluded.as_of,
                     received_at = now()
                 WHERE matching_performance.as_of <= excluded.as_of""",
            outcome.deal_id,
            outcome.campaign_id,
            outcome.creator_id,
            outcome.roas,
            outcome.cpe,
            outcome.as_of,
        )

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        rows = await self._pool.fetch(
            """SELECT creator_id, sum(roas)::float8 AS total, count(roas)::int AS deals
               FROM matching_performance
               WHERE roas IS NOT NULL AND ($1::text[] IS NULL OR creator_id = ANY($1))
               GROUP BY creator_id""",
            None if creator_ids is None else list(creator_ids),
        )
        return [(r["creator_id"], float(r["total"]), int(r["deals"])) for r in rows]

    async def label_count(self) -> int:
        return int(
            await self._pool.fetchval(
                """SELECT (SELECT count(*) FROM matching_feedback)
                        + (SELECT count(*) FROM matching_performance WHERE roas IS NOT NULL)"""
            )
        )

    async def training_set(self) -> TrainingSet:
        # Each label takes the features of the latest suggestion of that creator for that
        # campaign (the request's own when the feedback names it).
        rows = await self._pool.fetch(
            """SELECT s.features, f.decision, NULL::numeric AS roas
               FROM matching_feedback f
               JOIN LATERAL (
                   SELECT s.features FROM matching_suggestions s
                   JOIN matching_requests r USING (request_id)
                   WHERE s.campaign_id = f.campaign_id AND s.creator_id = f.creator_id
                     AND (f.request_id IS NULL OR s.request_id = f.request_id)
                   ORDER BY r.answered_at DESC LIMIT 1) s ON true
               UNION ALL
               SELECT s.features, NULL, p.roas
               FROM matching_performance p
               JOIN LATERAL (
                   SELECT s.features FROM matching_suggestions s
                   JOIN matching_requests r USING (request_id)
                   WHERE s.campaign_id = p.campaign_id AND s.creator_id = p.creator_id
                   ORDER BY r.answered_at DESC LIMIT 1) s ON true
               WHERE p.roas IS NOT NULL"""
        )
        labelled = []
        for r in rows:
            label, weight = (
                _decision_label(r["decision"]) if r["roas"] is None else _outcome_label(r["roas"])
            )
            labelled.append((list(r["features"]), label, weight))
        return _training_set(labelled)

    async def save_model(self, ranker: LinearRanker, labels: int) -> None:
        await self._pool.execute(
            """INSERT INTO matching_models (version, ranker, labels) VALUES ($1, $2::jsonb, $3)
               ON CONFLICT (version) DO NOTHING""",
            ranker.version,
            json.dumps(ranker.to_json()),
            labels,
        )

    async def latest_model(self) -> tuple[LinearRanker, int] | None:
        row = await self._pool.fetchrow(
            "SELECT ranker::text AS ranker, labels FROM matching_models ORDER BY seq DESC LIMIT 1"
        )
        if row is None:
            return None
        return LinearRanker.from_json(json.loads(row["ranker"])), int(row["labels"])


class InMemoryMatchingStore:
    """The fake: same behaviour, dicts instead of tables, no transactions."""

    def __init__(self) -> None:
        self.profiles: dict[str, StoredProfile] = {}
        self.hires: dict[str, tuple[str, str]] = {}
        self.answers: dict[str, Answer] = {}
        self.feedback: dict[EventIdentity, tuple[str, str, str, str | None]] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.models: list[tuple[LinearRanker, int]] = []

    async def upsert_profiles(
        self, conn: Connection, profiles: Sequence[StoredProfile]
    ) -> set[str]:
        changed = set()
        for p in profiles:
            old = self.profiles.get(p.creator_id)
            if old is None or old.event_time <= p.event_time:
                self.profiles[p.creator_id] = p
                changed.add(p.creator_id)
        return changed

    async def count_profiles(self) -> int:
        return len(self.profiles)

    async def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        ordered = [self.profiles[cid].profile for cid in sorted(self.profiles)]
        for start in range(0, len(ordered), chunk):
            yield ordered[start : start + chunk]

    async def texts(self) -> list[tuple[str, str]]:
        return [
            (cid, profile_text(p.profile.bio, p.profile.topics)) for cid, p in self.profiles.items()
        ]

    async def record_hire(
        self, conn: Connection, deal_id: str, campaign_id: str, creator_id: str, at: datetime
    ) -> None:
        self.hires.setdefault(deal_id, (campaign_id, creator_id))

    async def hired(self, conn: Connection, campaign_id: str) -> frozenset[str]:
        signed = {cid for campaign, cid in self.hires.values() if campaign == campaign_id}
        told = {
            cid
            for campaign, cid, decision, _ in self.feedback.values()
            if campaign == campaign_id and decision == "hired"
        }
        return frozenset(signed | told)

    async def save_answer(self, conn: Connection, answer: Answer) -> bool:
        if answer.request_id in self.answers:
            return False
        self.answers[answer.request_id] = answer
        return True

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
    ) -> None:
        self.feedback.setdefault(event, (campaign_id, creator_id, decision, request_id))

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        old = self.outcomes.get(outcome.deal_id)
        if old is None or old.as_of <= outcome.as_of:
            self.outcomes[outcome.deal_id] = outcome

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        totals: dict[str, tuple[float, int]] = {}
        for o in self.outcomes.values():
            if o.roas is None or (creator_ids is not None and o.creator_id not in creator_ids):
                continue
            total, deals = totals.get(o.creator_id, (0.0, 0))
            totals[o.creator_id] = (total + float(o.roas), deals + 1)
        return [(cid, total, deals) for cid, (total, deals) in totals.items()]

    async def label_count(self) -> int:
        return len(self.feedback) + sum(o.roas is not None for o in self.outcomes.values())

    def _features(
        self, campaign_id: str, creator_id: str, request_id: str | None
    ) -> list[float] | None:
        found = None
        for answer in self.answers.values():  # insertion order = answering order
            if answer.campaign_id != campaign_id or request_id not in (None, answer.request_id):
                continue
            for cid, _, _, features in answer.suggestions:
                if cid == creator_id:
                    found = list(features)
        return found

    async def training_set(self) -> TrainingSet:
        labelled = []
        for campaign, cid, decision, request_id in self.feedback.values():
            features = self._features(campaign, cid, request_id)
            if features is not None:
                labelled.append((features, *_decision_label(decision)))
        for o in self.outcomes.values():
            features = self._features(o.campaign_id, o.creator_id, None)
            if features is not None and o.roas is not None:
                labelled.append((features, *_outcome_label(o.roas)))
        return _training_set(labelled)

    async def save_model(self, ranker: LinearRanker, labels: int) -> None:
        if all(m.version != ranker.version for m, _ in self.models):
            self.models.append((ranker, labels))

    async def latest_model(self) -> tuple[LinearRanker, int] | None:
        return self.models[-1] if self.models else None
