"""Matching's own tables (services/matching/migrations/) behind the port (`port.py`).

A `PostgresMatchingTransaction` is one database transaction: the inbox claim
(shared/runtime/inbox.py), matching's writes and the outbox (shared/runtime/outbox.py) commit
together. It passes tests/unit/matching/store_contract.py, as the fake does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

import asyncpg

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
    check_promotable,
    decision_label,
    outcome_label,
    training_set_of,
)
from shared.contract.events import CreatorProfileUpserted, MatchRequested
from shared.contract.money import FxSnapshot
from shared.runtime import fx_store
from shared.runtime.db import any_of, session_connection
from shared.runtime.service_store import ServiceStore, ServiceTransaction

# One replica at a time trains rankers (a session advisory lock).
_RETRAIN_LOCK: Final = 0x6D61_7463_6872_6E31  # "matchrn1"


class PostgresMatchingTransaction(ServiceTransaction):
    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        return await fx_store.save_judged(self._conn, snapshot, event_id, max_move)

    async def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> set[Account]:
        if not profiles:
            return set()
        rows = await self._conn.fetch(
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

    async def record_hire(
        self, deal_id: str, campaign_id: str, creator_id: str, at: datetime, brand_id: str = ""
    ) -> None:
        await self._conn.execute(
            """INSERT INTO matching_hires (deal_id, campaign_id, creator_id, signed_at, brand_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (deal_id) DO NOTHING""",
            deal_id,
            campaign_id,
            creator_id,
            at,
            brand_id,
        )

    async def record_cancellation(self, deal_id: str, brand_id: str, at: datetime) -> None:
        await self._conn.execute(
            """INSERT INTO matching_cancelled_deals (deal_id, brand_id, cancelled_at)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            deal_id,
            brand_id,
            at,
        )

    async def kept_deals(self, deal_ids: Collection[str]) -> dict[str, KeptDeal]:
        rows = await self._conn.fetch(
            """SELECT deal_id, campaign_id, creator_id, brand_id FROM matching_hires
               WHERE deal_id = ANY($1::text[])""",
            list(deal_ids),
        )
        return {
            r["deal_id"]: KeptDeal(r["campaign_id"], r["creator_id"], r["brand_id"]) for r in rows
        }

    async def hired(
        self,
        campaign_ids: Collection[str],
        brands: Mapping[str, str] | None = None,
    ) -> dict[str, frozenset[str]]:
        asked = list(campaign_ids)
        rows = await self._conn.fetch(
            """SELECT h.campaign_id, h.creator_id FROM matching_hires h
               LEFT JOIN unnest($1::text[], $2::text[]) AS b(campaign_id, brand_id)
                 USING (campaign_id)
               WHERE h.campaign_id = ANY($1) AND NOT EXISTS (
                   SELECT 1 FROM matching_cancelled_deals c
                   WHERE c.deal_id = h.deal_id AND c.brand_id = h.brand_id)
                 AND (NOT $3 OR h.brand_id = '' OR h.brand_id = b.brand_id)
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

    async def save_answers(self, answers: Sequence[Answer]) -> set[str]:
        if not answers:
            return set()
        # One statement for the requests, one for their suggestions: answers consumed
        # together are written together.
        inserted = await self._conn.fetch(
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
                    (a.request_id, cid, a.campaign_id, rank, score, features)
                    for cid, rank, score, features in a.suggestions
                ]
        if rows:
            *columns, features = zip(*rows, strict=True)
            width = len(features[0])
            # Every row's features in one flat float4 array, sent binary and cut per row: an
            # answer of 24 x 50 suggestions is 1,200 arrays, which as text literals cost more
            # to write and to parse than the rest of the statement.
            await self._conn.execute(
                """INSERT INTO matching_suggestions
                       (request_id, creator_id, campaign_id, rank, score, features)
                   SELECT r, cr, c, k, sc, ($6::real[])[(n - 1) * $7 + 1 : n * $7]
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[],
                                 $5::double precision[])
                          WITH ORDINALITY AS s(r, cr, c, k, sc, n)""",
                *(list(column) for column in columns),
                [value for row in features for value in row],
                width,
            )
        return recorded

    async def record_feedback(self, feedback: Feedback) -> None:
        await self._conn.execute(
            """INSERT INTO matching_feedback
                   (source, event_id, campaign_id, creator_id, decision, request_id, signed_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, event_id) DO NOTHING""",
            *feedback.event,
            feedback.campaign_id,
            feedback.creator_id,
            feedback.decision,
            feedback.request_id,
            feedback.signed_by,
        )

    async def answered_for(self, request_ids: Collection[str]) -> dict[str, Asked]:
        rows = await self._conn.fetch(
            """SELECT request_id, brand_id, campaign_id, request::text AS request
               FROM matching_requests WHERE request_id = ANY($1)""",
            list(request_ids),
        )
        return {
            r["request_id"]: Asked(
                r["brand_id"],
                r["campaign_id"],
                None if r["request"] is None else json.loads(r["request"]),
            )
            for r in rows
        }

    async def campaign_brands(self, campaign_ids: Collection[str]) -> dict[str, dict[str, str]]:
        rows = await self._conn.fetch(
            """SELECT campaign_id, request_id, brand_id FROM matching_requests
               WHERE campaign_id = ANY($1)""",
            list(campaign_ids),
        )
        found: dict[str, dict[str, str]] = {}
        for r in rows:
            found.setdefault(r["campaign_id"], {})[r["request_id"]] = r["brand_id"]
        return found

    async def record_outcome(self, outcome: Outcome) -> None:
        await self._conn.execute(
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

    async def record_followers(self, observations: Sequence[FollowerCount]) -> None:
        await self._conn.execute(
            """INSERT INTO matching_follower_history
                 (creator_id, platform, observed_at, followers)
               SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
               ON CONFLICT (creator_id, platform, observed_at) DO NOTHING""",
            [o.creator_id for o in observations],
            [o.platform for o in observations],
            [o.observed_at for o in observations],
            [o.followers for o in observations],
        )


class PostgresMatchingStore(ServiceStore[PostgresMatchingTransaction]):
    def __init__(self, pool: asyncpg.Pool, *, consumer: str = "matching") -> None:
        super().__init__(pool, PostgresMatchingTransaction, consumer)

    @contextlib.asynccontextmanager
    async def retrain_turn(self) -> AsyncIterator[bool]:
        async with session_connection(self._pool) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RETRAIN_LOCK):
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _RETRAIN_LOCK)

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        return await fx_store.snapshot_at(self._pool, when, trusted=True)

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

    async def performance(
        self, creator_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float, int]]:
        only, args = any_of("creator_id", creator_ids)
        rows = await self._pool.fetch(
            f"""SELECT creator_id, sum(roas)::float8 AS total, count(roas)::int AS deals
                FROM matching_performance WHERE roas IS NOT NULL AND {only}
                GROUP BY creator_id""",
            *args,
        )
        return [(r["creator_id"], float(r["total"]), int(r["deals"])) for r in rows]

    async def follower_history(
        self, creator_ids: Sequence[str] | None = None
    ) -> dict[Account, list[tuple[datetime, int]]]:
        only, args = any_of("creator_id", creator_ids)
        rows = await self._pool.fetch(
            f"""SELECT creator_id, platform, observed_at, followers
                FROM matching_follower_history WHERE {only}
                ORDER BY creator_id, platform, observed_at""",
            *args,
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
                decision_label(r["decision"]) if r["roas"] is None else outcome_label(r["roas"])
            )
            labelled.append((list(r["features"]), label, weight))
        return training_set_of(labelled)

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
            check_promotable(_stored_model(row))
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


async def _retire_live(conn: asyncpg.Connection, brand_id: str | None) -> None:
    await conn.execute(
        "UPDATE matching_models SET status = 'retired' WHERE brand_id = $1 AND status = 'live'",
        brand_id,
    )


def _stored_model(row: asyncpg.Record) -> StoredModel:
    return StoredModel(
        ranker=LinearRanker.from_json(json.loads(row["ranker"])),
        brand_id=row["brand_id"],
        status=row["status"],
        labels=int(row["labels"]),
        reason=row["reason"],
        metrics=json.loads(row["metrics"]),
        trained_at=row["trained_at"],
    )
