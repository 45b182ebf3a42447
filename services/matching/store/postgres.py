"""Matching's own tables (services/matching/migrations/) behind the `MatchingStore` port.

Writes take the caller's connection, so they share its transaction with the inbox claim and
the outbox; `PostgresMatchingStore` is the real adapter and `InMemoryMatchingStore` the fake
the unit tests use. Both pass tests/integration/matching/test_store_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import numpy as np

from services.matching.domain.features import FEATURES
from services.matching.domain.profiles import Account, profile_text
from services.matching.domain.ranker import (
    LABELS,
    OUTCOME_WEIGHT,
    PROFITABLE_ROAS,
    LinearRanker,
    TrainingSet,
)
from shared.contract.events import CreatorProfileUpserted, EventIdentity, MatchRequested

Connection = Any  # an asyncpg.Connection for the real store; ignored by the fake


@dataclass(frozen=True)
class StoredProfile:
    creator_id: str
    profile: CreatorProfileUpserted
    event_time: datetime
    event_id: str

    @property
    def account(self) -> Account:
        return self.creator_id, self.profile.platform


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
    request: MatchRequested | None = None
    """The request answered: a brand's past briefs are the probes of its promotion gate."""


ModelStatus = Literal["candidate", "live", "retired", "rolled_back"]


@dataclass(frozen=True)
class StoredModel:
    """A ranker as stored: whose it is, whether it is in use, and why."""

    ranker: LinearRanker
    brand_id: str | None
    status: ModelStatus
    labels: int
    reason: str
    metrics: dict[str, float]
    trained_at: datetime


@dataclass(frozen=True)
class Outcome:
    """Realised performance of one deal, from `attribution.updated`."""

    deal_id: str
    campaign_id: str
    creator_id: str
    roas: Decimal | None
    cpe: Decimal | None
    as_of: datetime


@dataclass(frozen=True)
class FollowerCount:
    creator_id: str
    platform: str
    observed_at: datetime
    followers: int


class MatchingStore(Protocol):
    async def upsert_profiles(
        self, conn: Connection, profiles: Sequence[StoredProfile]
    ) -> set[Account]:
        """Store profiles newer than the stored ones of the same account (creator and
        platform); returns the accounts that changed."""
        ...

    async def count_profiles(self) -> int: ...

    async def profiles_of(self, creator_ids: Sequence[str]) -> list[CreatorProfileUpserted]:
        """The stored profiles of every account of `creator_ids` (unknown ids left out), in
        (creator_id, platform) order."""
        ...

    def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        """Every stored profile, in (creator_id, platform) order, `chunk` at a time."""
        ...

    async def texts(self) -> list[tuple[Account, str]]:
        """(account, niche text) of every stored account."""
        ...

    async def record_hire(
        self, conn: Connection, deal_id: str, campaign_id: str, creator_id: str, at: datetime
    ) -> None: ...

    async def hired(
        self,
        conn: Connection,
        campaign_ids: Collection[str],
        brands: Mapping[str, str] | None = None,
    ) -> dict[str, frozenset[str]]:
        """Per campaign asked, the creators with a signed deal or a `hired` feedback for it.
        With `brands` (the brand asking, per campaign), feedback signed by another brand
        does not count."""
        ...

    async def campaign_brands(
        self, conn: Connection, campaign_ids: Collection[str]
    ) -> dict[str, dict[str, str]]:
        """Per campaign with answered requests, the brand of each request (by request id)."""
        ...

    async def save_answers(self, conn: Connection, answers: Sequence[Answer]) -> set[str]:
        """Record answers; returns the request ids recorded. An answer to a request answered
        before (or earlier in `answers`) is not recorded."""
        ...

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
        signed_by: str = "",
    ) -> None:
        """Keep a brand's feedback; `signed_by` is the brand that signed it ('' if unsigned):
        signed feedback counts (hires, labels) only for requests of that brand."""
        ...

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        """Keep the deal's latest attribution (by as_of)."""
        ...

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        """(creator_id, sum of ROAS, deals with a ROAS) per creator (all creators if None)."""
        ...

    async def record_followers(
        self, conn: Connection, observations: Sequence[FollowerCount]
    ) -> None:
        """Keep each follower count by (account, event time); a repeat is kept once."""
        ...

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        """(event time, followers) per account of the creators, oldest first (all if None)."""
        ...

    async def label_count(self) -> int:
        """Feedback and outcomes received, matched to a suggestion or not (a cheap count)."""
        ...

    async def label_counts(self) -> dict[str, int]:
        """Labels (feedback + outcomes on suggested creators) per brand."""
        ...

    async def training_set(self, brand_id: str | None = None) -> TrainingSet:
        """Feedback and outcomes joined with the features each creator had when suggested,
        in the order they arrived; only the brand's when `brand_id` is given."""
        ...

    async def brand_history(
        self, brand_id: str, requests: int
    ) -> tuple[list[MatchRequested], frozenset[str]]:
        """The brand's latest `requests` requests (oldest first) and every creator it was
        ever suggested."""
        ...

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
        """Store a ranker; `live` makes it the brand's ranker and retires the one in use."""
        ...

    async def models(
        self, brand_id: str | None = None, *, status: ModelStatus | None = None
    ) -> list[StoredModel]:
        """Stored rankers, newest first; only the brand's and of that status when given."""
        ...

    async def promote(self, version: str) -> StoredModel:
        """Put a stored brand ranker in use; LookupError if unknown, ValueError if it has no
        brand or is already live."""
        ...

    async def rollback(self, brand_id: str) -> StoredModel | None:
        """Take the brand's live ranker out of use and put back the one live before it
        (None: the brand is back on the hand weights); LookupError if none is live."""
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
    ) -> set[Account]:
        if not profiles:
            return set()
        rows = await conn.fetch(
            """INSERT INTO matching_creators
                 (creator_id, platform, profile, event_time, event_id)
               SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[],
                                    $5::text[])
               ON CONFLICT (creator_id, platform) DO UPDATE
                 SET profile = excluded.profile, event_time = excluded.event_time,
                     event_id = excluded.event_id, updated_at = now()
                 WHERE matching_creators.event_time <= excluded.event_time
               RETURNING creator_id, platform""",
            [p.creator_id for p in profiles],
            [p.profile.platform for p in profiles],
            [p.profile.model_dump_json() for p in profiles],
            [p.event_time for p in profiles],
            [p.event_id for p in profiles],
        )
        return {(row["creator_id"], row["platform"]) for row in rows}

    async def count_profiles(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM matching_creators"))

    async def profiles_of(self, creator_ids: Sequence[str]) -> list[CreatorProfileUpserted]:
        if not creator_ids:
            return []
        rows = await self._pool.fetch(
            """SELECT profile::text AS profile FROM matching_creators
               WHERE creator_id = ANY($1::text[]) ORDER BY creator_id, platform""",
            list(creator_ids),
        )
        return [CreatorProfileUpserted.model_validate_json(r["profile"]) for r in rows]

    async def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        after = ("", "")
        while True:
            rows = await self._pool.fetch(
                """SELECT creator_id, platform, profile::text AS profile FROM matching_creators
                   WHERE (creator_id, platform) > ($1, $2)
                   ORDER BY creator_id, platform LIMIT $3""",
                *after,
                chunk,
            )
            if not rows:
                return
            yield [CreatorProfileUpserted.model_validate_json(r["profile"]) for r in rows]
            after = (rows[-1]["creator_id"], rows[-1]["platform"])

    async def texts(self) -> list[tuple[Account, str]]:
        rows = await self._pool.fetch(
            """SELECT creator_id, platform, profile->>'bio' AS bio, profile->'topics' AS topics
               FROM matching_creators"""
        )
        return [
            ((r["creator_id"], r["platform"]), profile_text(r["bio"], json.loads(r["topics"])))
            for r in rows
        ]

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

    async def hired(
        self,
        conn: Connection,
        campaign_ids: Collection[str],
        brands: Mapping[str, str] | None = None,
    ) -> dict[str, frozenset[str]]:
        asked = list(campaign_ids)
        rows = await conn.fetch(
            """SELECT campaign_id, creator_id FROM matching_hires WHERE campaign_id = ANY($1)
               UNION SELECT f.campaign_id, f.creator_id FROM matching_feedback f
                     LEFT JOIN unnest($1::text[], $2::text[]) AS b(campaign_id, brand_id)
                       USING (campaign_id)
                     WHERE f.campaign_id = ANY($1) AND f.decision = 'hired'
                       AND (NOT $3 OR f.signed_by = '' OR f.signed_by = b.brand_id)""",
            asked,
            [(brands or {}).get(c) for c in asked],
            brands is not None,
        )
        found: dict[str, set[str]] = {campaign: set() for campaign in campaign_ids}
        for r in rows:
            found[r["campaign_id"]].add(r["creator_id"])
        return {campaign: frozenset(creators) for campaign, creators in found.items()}

    async def save_answers(self, conn: Connection, answers: Sequence[Answer]) -> set[str]:
        if not answers:
            return set()
        # One statement for the requests, one for their suggestions: answers consumed
        # together are written together.
        inserted = await conn.fetch(
            """INSERT INTO matching_requests (request_id, campaign_id, brand_id, model_version,
                   fx_as_of, fx_source, filtered, event_id, request)
               SELECT r, c, b, m, fa, fs, f::jsonb, e, q::jsonb
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                             $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[])
                      AS a(r, c, b, m, fa, fs, f, e, q)
               ON CONFLICT (request_id) DO NOTHING RETURNING request_id""",
            [a.request_id for a in answers],
            [a.campaign_id for a in answers],
            [a.brand_id for a in answers],
            [a.model_version for a in answers],
            [a.fx_as_of for a in answers],
            [a.fx_source for a in answers],
            [json.dumps(a.filtered) for a in answers],
            [a.event_id for a in answers],
            [None if a.request is None else a.request.model_dump_json() for a in answers],
        )
        recorded = {r["request_id"] for r in inserted}
        pending = set(recorded)
        rows = []
        for a in answers:
            if a.request_id in pending:  # the first answer of a request id is the one stored
                pending.discard(a.request_id)
                rows += [
                    (a.request_id, cid, a.campaign_id, rank, score, _real_array(features))
                    for cid, rank, score, features in a.suggestions
                ]
        if rows:
            columns = list(zip(*rows, strict=True))
            await conn.execute(
                """INSERT INTO matching_suggestions
                       (request_id, creator_id, campaign_id, rank, score, features)
                   SELECT r, cr, c, k, sc, f::real[]
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[],
                                 $5::double precision[], $6::text[]) AS s(r, cr, c, k, sc, f)""",
                *(list(column) for column in columns),
            )
        return recorded

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
        signed_by: str = "",
    ) -> None:
        await conn.execute(
            """INSERT INTO matching_feedback
                   (source, event_id, campaign_id, creator_id, decision, request_id, signed_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, event_id) DO NOTHING""",
            *event,
            campaign_id,
            creator_id,
            decision,
            request_id,
            signed_by,
        )

    async def campaign_brands(
        self, conn: Connection, campaign_ids: Collection[str]
    ) -> dict[str, dict[str, str]]:
        rows = await conn.fetch(
            """SELECT campaign_id, request_id, brand_id FROM matching_requests
               WHERE campaign_id = ANY($1)""",
            list(campaign_ids),
        )
        found: dict[str, dict[str, str]] = {}
        for r in rows:
            found.setdefault(r["campaign_id"], {})[r["request_id"]] = r["brand_id"]
        return found

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        await conn.execute(
            """INSERT INTO matching_performance (deal_id, campaign_id, creator_id, roas, cpe, as_of)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (deal_id) DO UPDATE
                 SET roas = excluded.roas, cpe = excluded.cpe, as_of = excluded.as_of,
                     received_at = clock_timestamp()
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

    async def record_followers(
        self, conn: Connection, observations: Sequence[FollowerCount]
    ) -> None:
        await conn.execute(
            """INSERT INTO matching_follower_history
                 (creator_id, platform, observed_at, followers)
               SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
               ON CONFLICT (creator_id, platform, observed_at) DO NOTHING""",
            [o.creator_id for o in observations],
            [o.platform for o in observations],
            [o.observed_at for o in observations],
            [o.followers for o in observations],
        )

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        rows = await self._pool.fetch(
            """SELECT creator_id, platform, observed_at, followers
               FROM matching_follower_history
               WHERE $1::text[] IS NULL OR creator_id = ANY($1)
               ORDER BY creator_id, platform, observed_at""",
            None if creator_ids is None else list(creator_ids),
        )
        history: dict[Account, list[tuple[datetime, int]]] = {}
        for r in rows:
            account = (r["creator_id"], r["platform"])
            history.setdefault(account, []).append((r["observed_at"], r["followers"]))
        return history

    async def label_count(self) -> int:
        return int(
            await self._pool.fetchval(
                """SELECT (SELECT count(*) FROM matching_feedback)
                        + (SELECT count(*) FROM matching_performance WHERE roas IS NOT NULL)"""
            )
        )

    async def label_counts(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            f"SELECT brand_id, count(*)::int AS n FROM ({_LABELS_SQL}) l GROUP BY brand_id"
        )
        return {r["brand_id"]: int(r["n"]) for r in rows}

    async def training_set(self, brand_id: str | None = None) -> TrainingSet:
        rows = await self._pool.fetch(
            f"""SELECT * FROM ({_LABELS_SQL}) l WHERE $1::text IS NULL OR brand_id = $1
                ORDER BY received_at, tie""",
            brand_id,
        )
        labelled = []
        for r in rows:
            label, weight = (
                _decision_label(r["decision"]) if r["roas"] is None else _outcome_label(r["roas"])
            )
            labelled.append((list(r["features"]), label, weight))
        return _training_set(labelled)

    async def brand_history(
        self, brand_id: str, requests: int
    ) -> tuple[list[MatchRequested], frozenset[str]]:
        rows = await self._pool.fetch(
            """SELECT request::text AS request FROM matching_requests
               WHERE brand_id = $1 AND request IS NOT NULL
               ORDER BY answered_at DESC, request_id DESC LIMIT $2""",
            brand_id,
            requests,
        )
        shown = await self._pool.fetch(
            """SELECT DISTINCT s.creator_id FROM matching_suggestions s
               JOIN matching_requests r USING (request_id) WHERE r.brand_id = $1""",
            brand_id,
        )
        briefs = [MatchRequested.model_validate_json(r["request"]) for r in reversed(rows)]
        return briefs, frozenset(r["creator_id"] for r in shown)

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
        async with self._pool.acquire() as conn, conn.transaction():
            if live:
                await _retire_live(conn, brand_id)
            await conn.execute(
                """INSERT INTO matching_models
                       (version, ranker, labels, brand_id, status, reason, metrics, promoted_at)
                   VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7::jsonb,
                           CASE WHEN $5 = 'live' THEN now() END)
                   ON CONFLICT (version) DO NOTHING""",
                ranker.version,
                json.dumps(ranker.to_json()),
                labels,
                brand_id,
                "live" if live else "candidate",
                reason,
                json.dumps(metrics or {}),
            )

    async def models(
        self, brand_id: str | None = None, *, status: ModelStatus | None = None
    ) -> list[StoredModel]:
        rows = await self._pool.fetch(
            f"""SELECT {_MODEL_COLUMNS} FROM matching_models
                WHERE ($1::text IS NULL OR brand_id = $1) AND ($2::text IS NULL OR status = $2)
                ORDER BY seq DESC""",
            brand_id,
            status,
        )
        return [_stored_model(r) for r in rows]

    async def promote(self, version: str) -> StoredModel:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_MODEL_COLUMNS} FROM matching_models WHERE version = $1 FOR UPDATE",
                version,
            )
            if row is None:
                raise LookupError(f"no stored ranker {version!r}")
            _check_promotable(_stored_model(row))
            await _retire_live(conn, row["brand_id"])
            row = await conn.fetchrow(
                f"""UPDATE matching_models SET status = 'live', promoted_at = now(),
                        reason = 'promoted by an operator'
                    WHERE version = $1 RETURNING {_MODEL_COLUMNS}""",
                version,
            )
        return _stored_model(row)

    async def rollback(self, brand_id: str) -> StoredModel | None:
        async with self._pool.acquire() as conn, conn.transaction():
            live = await conn.fetchval(
                """UPDATE matching_models SET status = 'rolled_back', reason = 'rolled back'
                   WHERE brand_id = $1 AND status = 'live' RETURNING version""",
                brand_id,
            )
            if live is None:
                raise LookupError(f"brand {brand_id!r} has no live ranker to roll back")
            row = await conn.fetchrow(
                f"""UPDATE matching_models SET status = 'live', promoted_at = now(),
                        reason = 'back in use after a rollback'
                    WHERE version = (
                        SELECT version FROM matching_models
                        WHERE brand_id = $1 AND status = 'retired' AND promoted_at IS NOT NULL
                        ORDER BY promoted_at DESC LIMIT 1)
                    RETURNING {_MODEL_COLUMNS}""",
                brand_id,
            )
        return None if row is None else _stored_model(row)


# One row per label with the brand and the features of the creator's latest suggestion for
# the campaign (the request's own when the feedback names it), and its arrival time.
_LABELS_SQL = """
    SELECT s.brand_id, s.features, f.decision, NULL::numeric AS roas, f.received_at,
           f.source || '/' || f.event_id AS tie
    FROM matching_feedback f
    JOIN LATERAL (
        SELECT s.features, r.brand_id FROM matching_suggestions s
        JOIN matching_requests r USING (request_id)
        WHERE s.campaign_id = f.campaign_id AND s.creator_id = f.creator_id
          AND (f.request_id IS NULL OR s.request_id = f.request_id)
          AND (f.signed_by = '' OR r.brand_id = f.signed_by)
        ORDER BY r.answered_at DESC LIMIT 1) s ON true
    UNION ALL
    SELECT s.brand_id, s.features, NULL, p.roas, p.received_at, p.deal_id
    FROM matching_performance p
    JOIN LATERAL (
        SELECT s.features, r.brand_id FROM matching_suggestions s
        JOIN matching_requests r USING (request_id)
        WHERE s.campaign_id = p.campaign_id AND s.creator_id = p.creator_id
        ORDER BY r.answered_at DESC LIMIT 1) s ON true
    WHERE p.roas IS NOT NULL"""
_MODEL_COLUMNS = (
    "version, ranker::text AS ranker, brand_id, status, labels, reason, metrics::text AS metrics,"
    " trained_at"
)


async def _retire_live(conn: Connection, brand_id: str | None) -> None:
    await conn.execute(
        "UPDATE matching_models SET status = 'retired' WHERE brand_id = $1 AND status = 'live'",
        brand_id,
    )


def _stored_model(row: Any) -> StoredModel:
    return StoredModel(
        ranker=LinearRanker.from_json(json.loads(row["ranker"])),
        brand_id=row["brand_id"],
        status=row["status"],
        labels=int(row["labels"]),
        reason=row["reason"],
        metrics=json.loads(row["metrics"]),
        trained_at=row["trained_at"],
    )


def _check_promotable(model: StoredModel) -> None:
    if model.brand_id is None:
        raise ValueError(
            f"{model.ranker.version} was trained for every brand at once; only a brand's own "
            "ranker can be put in use"
        )
    if model.status == "live":
        raise ValueError(f"{model.ranker.version} is already live for {model.brand_id}")


class InMemoryMatchingStore:
    """The fake: same behaviour, dicts instead of tables, no transactions."""

    def __init__(self) -> None:
        self.profiles: dict[Account, StoredProfile] = {}
        self.hires: dict[str, tuple[str, str]] = {}
        self.answers: dict[str, Answer] = {}
        self.feedback: dict[EventIdentity, tuple[str, str, str, str | None]] = {}
        self.feedback_signers: dict[EventIdentity, str] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.followers: dict[tuple[str, str, datetime], int] = {}
        self.stored: list[StoredModel] = []  # oldest first
        self._arrival: dict[object, int] = {}  # label key -> arrival order (received_at)
        self._promoted: dict[str, int] = {}  # version -> when it last went live
        self._clock = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    async def upsert_profiles(
        self, conn: Connection, profiles: Sequence[StoredProfile]
    ) -> set[Account]:
        changed = set()
        for p in profiles:
            old = self.profiles.get(p.account)
            if old is None or old.event_time <= p.event_time:
                self.profiles[p.account] = p
                changed.add(p.account)
        return changed

    async def count_profiles(self) -> int:
        return len(self.profiles)

    async def profiles_of(self, creator_ids: Sequence[str]) -> list[CreatorProfileUpserted]:
        wanted = set(creator_ids)
        return [self.profiles[a].profile for a in sorted(self.profiles) if a[0] in wanted]

    async def iter_profiles(self, chunk: int) -> AsyncIterator[list[CreatorProfileUpserted]]:
        ordered = [self.profiles[account].profile for account in sorted(self.profiles)]
        for start in range(0, len(ordered), chunk):
            yield ordered[start : start + chunk]

    async def texts(self) -> list[tuple[Account, str]]:
        return [
            (account, profile_text(p.profile.bio, p.profile.topics))
            for account, p in self.profiles.items()
        ]

    async def record_hire(
        self, conn: Connection, deal_id: str, campaign_id: str, creator_id: str, at: datetime
    ) -> None:
        self.hires.setdefault(deal_id, (campaign_id, creator_id))

    async def hired(
        self,
        conn: Connection,
        campaign_ids: Collection[str],
        brands: Mapping[str, str] | None = None,
    ) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {campaign: set() for campaign in campaign_ids}
        for campaign, cid in self.hires.values():
            if campaign in found:
                found[campaign].add(cid)
        for event, (campaign, cid, decision, _) in self.feedback.items():
            signer = self.feedback_signers[event]
            counts = brands is None or signer in ("", brands.get(campaign))
            if campaign in found and decision == "hired" and counts:
                found[campaign].add(cid)
        return {campaign: frozenset(creators) for campaign, creators in found.items()}

    async def save_answers(self, conn: Connection, answers: Sequence[Answer]) -> set[str]:
        recorded = set()
        for answer in answers:
            if answer.request_id not in self.answers:
                self.answers[answer.request_id] = answer
                recorded.add(answer.request_id)
        return recorded

    async def record_feedback(
        self,
        conn: Connection,
        event: EventIdentity,
        campaign_id: str,
        creator_id: str,
        decision: str,
        request_id: str | None,
        signed_by: str = "",
    ) -> None:
        if event not in self.feedback:
            self.feedback[event] = (campaign_id, creator_id, decision, request_id)
            self.feedback_signers[event] = signed_by
            self._arrival[event] = self._tick()

    async def campaign_brands(
        self, conn: Connection, campaign_ids: Collection[str]
    ) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for a in self.answers.values():
            if a.campaign_id in campaign_ids:
                found.setdefault(a.campaign_id, {})[a.request_id] = a.brand_id
        return found

    async def record_outcome(self, conn: Connection, outcome: Outcome) -> None:
        old = self.outcomes.get(outcome.deal_id)
        if old is None or old.as_of <= outcome.as_of:
            self.outcomes[outcome.deal_id] = outcome
            self._arrival[outcome.deal_id] = self._tick()

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

    async def record_followers(
        self, conn: Connection, observations: Sequence[FollowerCount]
    ) -> None:
        for o in observations:
            self.followers.setdefault((o.creator_id, o.platform, o.observed_at), o.followers)

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        history: dict[Account, list[tuple[datetime, int]]] = {}
        for (creator_id, platform, at), followers in sorted(self.followers.items()):
            if creator_ids is None or creator_id in creator_ids:
                history.setdefault((creator_id, platform), []).append((at, followers))
        return history

    def _suggested(
        self, campaign_id: str, creator_id: str, request_id: str | None, signer: str = ""
    ) -> tuple[str, list[float]] | None:
        """(brand, features) of the creator's latest suggestion for the campaign (to
        `signer`, the brand, if given)."""
        found = None
        for answer in self.answers.values():  # insertion order = answering order
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
        for event, (campaign, cid, decision, request_id) in self.feedback.items():
            found = self._suggested(campaign, cid, request_id, self.feedback_signers[event])
            if found is not None:
                labelled.append((self._arrival[event], *found, *_decision_label(decision)))
        for deal_id, o in self.outcomes.items():
            found = self._suggested(o.campaign_id, o.creator_id, None)
            if found is not None and o.roas is not None:
                labelled.append((self._arrival[deal_id], *found, *_outcome_label(o.roas)))
        return [row[1:] for row in sorted(labelled, key=lambda row: row[0])]

    async def label_count(self) -> int:
        return len(self.feedback) + sum(o.roas is not None for o in self.outcomes.values())

    async def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for brand, *_ in self._labels():
            counts[brand] = counts.get(brand, 0) + 1
        return counts

    async def training_set(self, brand_id: str | None = None) -> TrainingSet:
        return _training_set(
            [(f, label, w) for b, f, label, w in self._labels() if brand_id in (None, b)]
        )

    async def brand_history(
        self, brand_id: str, requests: int
    ) -> tuple[list[MatchRequested], frozenset[str]]:
        mine = [a for a in self.answers.values() if a.brand_id == brand_id]
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
        if any(m.ranker.version == ranker.version for m in self.stored):
            return
        if live:
            self._set_status(brand_id, "live", "retired")
            self._promoted[ranker.version] = self._tick()
        status: ModelStatus = "live" if live else "candidate"
        self.stored.append(
            StoredModel(ranker, brand_id, status, labels, reason, dict(metrics or {}), _now())
        )

    async def models(
        self, brand_id: str | None = None, *, status: ModelStatus | None = None
    ) -> list[StoredModel]:
        return [
            m
            for m in reversed(self.stored)
            if brand_id in (None, m.brand_id) and status in (None, m.status)
        ]

    async def promote(self, version: str) -> StoredModel:
        found = [m for m in self.stored if m.ranker.version == version]
        if not found:
            raise LookupError(f"no stored ranker {version!r}")
        _check_promotable(found[0])
        self._set_status(found[0].brand_id, "live", "retired")
        return self._change(version, "live", "promoted by an operator")

    async def rollback(self, brand_id: str) -> StoredModel | None:
        live = [m for m in self.stored if m.brand_id == brand_id and m.status == "live"]
        if not live:
            raise LookupError(f"brand {brand_id!r} has no live ranker to roll back")
        self._change(live[0].ranker.version, "rolled_back", "rolled back")
        before = [
            m
            for m in self.stored
            if m.brand_id == brand_id
            and m.status == "retired"
            and m.ranker.version in self._promoted
        ]
        if not before:
            return None
        latest = max(before, key=lambda m: self._promoted[m.ranker.version])
        return self._change(latest.ranker.version, "live", "back in use after a rollback")

    def _set_status(self, brand_id: str | None, old: ModelStatus, new: ModelStatus) -> None:
        for i, m in enumerate(self.stored):
            if m.brand_id == brand_id and m.status == old:
                self.stored[i] = replace(m, status=new)

    def _change(self, version: str, status: ModelStatus, reason: str) -> StoredModel:
        for i, m in enumerate(self.stored):
            if m.ranker.version == version:
                self.stored[i] = replace(m, status=status, reason=reason)
                if status == "live":
                    self._promoted[version] = self._tick()
                return self.stored[i]
        raise LookupError(version)


def _now() -> datetime:
    return datetime.now(UTC)


def _real_array(values: Sequence[float]) -> str:
    """A PostgreSQL array literal of `values` (exact: repr round-trips a float)."""
    return "{" + ",".join(repr(float(v)) for v in values) + "}"
