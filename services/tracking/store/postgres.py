"""The PostgreSQL adapter of the tracking store port (tables in 0200_tracking.sql).

Every method is one or a few set-based statements over arrays (`unnest`, see queries.py),
whatever the batch size. Ragged values (tag lists, deliverables) travel as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.tracking.domain.attribution import (
    DealAttribution,
    DealFacts,
    Engagement,
    as_published,
)
from services.tracking.domain.campaigns import (
    CampaignAttribution,
    CampaignFacts,
    CurrencyTotals,
    UnattributedChange,
    unattributed_totals,
)
from services.tracking.domain.credit import Click, Model, ModelSetting, newest_settings
from services.tracking.domain.deals import Cancellation, DealTerms
from services.tracking.domain.deliverables import Confirmation, DeliverableState
from services.tracking.domain.leaks import (
    CodeJudgement,
    LeakedOrders,
    LeakOrder,
    LeakThresholds,
    LeakTotals,
    judgement_inputs,
)
from services.tracking.domain.orders import (
    ClickFacts,
    Credit,
    Order,
    OrderOutcome,
    Refund,
    in_keeping_order,
)
from services.tracking.domain.posts import PostSnapshot
from services.tracking.store import queries
from services.tracking.store.port import (
    AffectedOrders,
    DealsAdded,
    LeakAlert,
    LeakFacts,
    OrderContext,
    one_per_deal,
)
from services.tracking.store.rows import (
    attribution_from,
    campaign_figures,
    campaign_totals_from,
    cancellation_from,
    click_from,
    credit_from,
    deal_from,
    deal_from_json,
    deal_json,
    deliverables_json,
    judgement_from,
    judgement_json,
    leak_order_from,
    order_from,
    outcome_from,
    post_from,
    setting_from,
    snapshot_from,
    terms_digest,
)
from shared.contract.money import FxSnapshot, Money
from shared.runtime import fx_store
from shared.runtime.service_store import ServiceStore, ServiceTransaction

# Held by the transaction applying a tracking batch (see TrackingTransaction.exclude_other_batches).
_BATCH_LOCK_ID = 0x43_46_54_52_4B  # "CFTRK"


class PostgresTrackingStore(ServiceStore["PostgresTrackingTransaction"]):
    """Tracking state in PostgreSQL; `consumer` names this service in the shared inbox."""

    def __init__(self, pool: asyncpg.Pool, *, consumer: str) -> None:
        super().__init__(pool, PostgresTrackingTransaction, consumer)

    async def campaign_attributions(
        self, campaign_id: str, brand_id: str | None = None
    ) -> list[DealAttribution]:
        rows = await self._pool.fetch(
            """SELECT a.* FROM tracking_attribution a JOIN tracking_deals d USING (deal_id)
               WHERE a.campaign_id = $1 AND ($2::text IS NULL OR d.brand_id = $2)
               ORDER BY a.deal_id""",
            campaign_id,
            brand_id,
        )
        return [attribution_from(row) for row in rows]

    async def campaign_brands(self, campaign_id: str) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT brand_id FROM tracking_deals WHERE campaign_id = $1", campaign_id
        )
        return {row["brand_id"] for row in rows}


class PostgresTrackingTransaction(ServiceTransaction):
    """One transaction on one connection; see the port for what each method promises."""

    async def exclude_other_batches(self) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _BATCH_LOCK_ID)

    async def add_deals(self, deals: Sequence[DealTerms]) -> DealsAdded:
        if not deals:
            return DealsAdded([], set(), set())
        rows = await self._conn.fetch(
            queries.INSERT_DEALS,
            [d.deal_id for d in deals],
            [d.campaign_id for d in deals],
            [d.brand_id for d in deals],
            [d.creator_id for d in deals],
            [d.fee.amount for d in deals],
            [d.currency for d in deals],
            [d.commission_rate for d in deals],
            [json.dumps(list(d.promo_codes)) for d in deals],
            [json.dumps(deliverables_json(d.deliverables)) for d in deals],
            [json.dumps(list(d.required_tags)) for d in deals],
            [d.starts_at for d in deals],
            [d.ends_at for d in deals],
            [d.attribution_window_days for d in deals],
            [d.signed_at for d in deals],
            [terms_digest(d) for d in deals],
            [json.dumps(list(d.audience_countries)) for d in deals],
        )
        inserted = {row["deal_id"] for row in rows if row["inserted"]}
        repeated = {row["deal_id"] for row in rows if not row["inserted"]}
        added = [d for d in deals if d.deal_id in inserted]
        pairs = [(code, d.deal_id) for d in added for code in d.promo_codes]
        if pairs:
            await self._conn.execute(
                "INSERT INTO tracking_deal_promo_codes (promo_code, deal_id) "
                "SELECT * FROM unnest($1::text[], $2::text[])",
                [code for code, _ in pairs],
                [deal_id for _, deal_id in pairs],
            )
        conflicting = {d.deal_id for d in deals} - inserted - repeated
        return DealsAdded(added, repeated, conflicting)

    async def deals(self, deal_ids: Collection[str]) -> dict[str, DealTerms]:
        rows = await self._rows_where_any("tracking_deals", "deal_id", deal_ids)
        return {row["deal_id"]: deal_from(row) for row in rows}

    async def _rows_where_any(
        self, table: str, column: str, values: Collection[str]
    ) -> list[asyncpg.Record]:
        """Every row of `table` whose text `column` is one of `values`."""
        if not values:
            return []
        rows: list[asyncpg.Record] = await self._conn.fetch(
            f"SELECT * FROM {table} WHERE {column} = ANY($1::text[])", list(values)
        )
        return rows

    async def keep_deal_changes(
        self, versions: Sequence[DealTerms], cancellations: Sequence[Cancellation]
    ) -> None:
        if versions:
            await self._conn.execute(
                """INSERT INTO tracking_deal_versions (deal_id, version, terms)
                   SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[])
                   ON CONFLICT (deal_id, version) DO NOTHING""",
                [v.deal_id for v in versions],
                [v.version for v in versions],
                [deal_json(v) for v in versions],
            )
        if cancellations:
            await self._conn.execute(
                """INSERT INTO tracking_deal_cancellations AS t (deal_id, brand_id, cancelled_at)
                   SELECT u.deal_id, u.brand_id, min(u.cancelled_at)
                   FROM unnest($1::text[], $2::text[], $3::timestamptz[])
                       AS u(deal_id, brand_id, cancelled_at)
                   GROUP BY u.deal_id, u.brand_id
                   ON CONFLICT (deal_id, brand_id) DO UPDATE
                   SET cancelled_at = LEAST(t.cancelled_at, EXCLUDED.cancelled_at)""",
                [c.deal_id for c in cancellations],
                [c.brand_id for c in cancellations],
                [c.cancelled_at for c in cancellations],
            )

    async def deal_changes(
        self, deal_ids: Collection[str]
    ) -> dict[str, tuple[list[DealTerms], list[Cancellation]]]:
        if not deal_ids:
            return {}
        found: dict[str, tuple[list[DealTerms], list[Cancellation]]] = {}
        for row in await self._conn.fetch(
            """SELECT deal_id, terms::text AS terms FROM tracking_deal_versions
               WHERE deal_id = ANY($1::text[]) ORDER BY deal_id, version""",
            list(deal_ids),
        ):
            found.setdefault(row["deal_id"], ([], []))[0].append(deal_from_json(row["terms"]))
        for row in await self._conn.fetch(
            """SELECT * FROM tracking_deal_cancellations WHERE deal_id = ANY($1::text[])
               ORDER BY deal_id, brand_id""",
            list(deal_ids),
        ):
            found.setdefault(row["deal_id"], ([], []))[1].append(cancellation_from(row))
        return found

    async def save_terms(self, deals: Sequence[DealTerms]) -> None:
        # Amendments are rare: a few statements per deal are fine here.
        for d in deals:
            await self._conn.execute(
                """UPDATE tracking_deals SET fee_amount = $2, commission_rate = $3,
                       promo_codes = $4::text[], deliverables = $5::jsonb,
                       required_tags = $6::text[], starts_at = $7, ends_at = $8,
                       attribution_window_days = $9, audience_countries = $10::text[],
                       version = $11, cancelled_at = $12
                   WHERE deal_id = $1""",
                d.deal_id,
                d.fee.amount,
                d.commission_rate,
                list(d.promo_codes),
                json.dumps(deliverables_json(d.deliverables)),
                list(d.required_tags),
                d.starts_at,
                d.ends_at,
                d.attribution_window_days,
                list(d.audience_countries),
                d.version,
                d.cancelled_at,
            )
            await self._conn.execute(
                "DELETE FROM tracking_deal_promo_codes WHERE deal_id = $1", d.deal_id
            )
            await self._conn.execute(
                """INSERT INTO tracking_deal_promo_codes (promo_code, deal_id)
                   SELECT unnest($1::text[]), $2""",
                list(d.promo_codes),
                d.deal_id,
            )

    async def add_fx_snapshots(
        self, snapshots: Sequence[tuple[FxSnapshot, str]], max_move: Decimal
    ) -> list[FxSnapshot]:
        # FX snapshots arrive a few times a day: a few statements each are fine here.
        return [
            snapshot
            for snapshot, event_id in snapshots
            if await fx_store.save_judged(self._conn, snapshot, event_id, max_move)
        ]

    async def upsert_posts(self, posts: Sequence[PostSnapshot]) -> list[PostSnapshot]:
        if not posts:
            return []
        rows = await self._conn.fetch(
            queries.UPSERT_POSTS,
            [p.post_id for p in posts],
            [p.creator_id for p in posts],
            [p.platform for p in posts],
            [p.kind for p in posts],
            [p.deal_id for p in posts],
            [json.dumps(sorted(p.tags)) for p in posts],
            [p.posted_at for p in posts],
            [p.observed_at for p in posts],
            [p.event_id for p in posts],
            [p.likes for p in posts],
            [p.comments for p in posts],
            [p.shares for p in posts],
            [p.saves for p in posts],
            [p.views for p in posts],
            [p.impressions for p in posts],
            [p.reach for p in posts],
            [p.followers for p in posts],
            [p.engagement_rate for p in posts],
        )
        return [post_from(row) for row in rows]

    async def deals_with_codes(self, promo_codes: Collection[str]) -> list[DealTerms]:
        if not promo_codes:
            return []
        rows = await self._conn.fetch(
            """SELECT d.* FROM tracking_deals d WHERE deal_id IN (
                   SELECT deal_id FROM tracking_deal_promo_codes
                   WHERE promo_code = ANY($1::text[]))""",
            list(promo_codes),
        )
        return [deal_from(row) for row in rows]

    async def deals_of_creators(self, creator_ids: Collection[str]) -> list[DealTerms]:
        rows = await self._rows_where_any("tracking_deals", "creator_id", creator_ids)
        return [deal_from(row) for row in rows]

    async def posts_of_creators(self, creator_ids: Collection[str]) -> list[PostSnapshot]:
        rows = await self._rows_where_any("tracking_posts", "creator_id", creator_ids)
        return [post_from(row) for row in rows]

    async def replace_memberships(
        self, post_ids: Collection[str], pairs: Collection[tuple[str, str]]
    ) -> set[str]:
        if not post_ids:
            return set()
        # One statement: drop the posts' memberships that no longer hold, add the new ones;
        # memberships that still hold stay untouched.
        gone = await self._conn.fetch(
            queries.REPLACE_MEMBERSHIPS,
            list(post_ids),
            [deal_id for deal_id, _ in pairs],
            [post_id for _, post_id in pairs],
        )
        return {row["deal_id"] for row in gone} | {deal_id for deal_id, _ in pairs}

    async def add_memberships(self, pairs: Collection[tuple[str, str]]) -> set[str]:
        return await self._add_pairs(pairs)

    async def _add_pairs(self, pairs: Collection[tuple[str, str]]) -> set[str]:
        if not pairs:
            return set()
        rows = await self._conn.fetch(
            """INSERT INTO tracking_deal_posts (deal_id, post_id)
               SELECT * FROM unnest($1::text[], $2::text[])
               ON CONFLICT DO NOTHING RETURNING deal_id""",
            [deal_id for deal_id, _ in pairs],
            [post_id for _, post_id in pairs],
        )
        return {row["deal_id"] for row in rows}

    async def add_orders(
        self, orders: Sequence[Order], outcomes: Sequence[OrderOutcome] | None = None
    ) -> set[str]:
        if not orders:
            return set()
        if outcomes is None:
            rows = await self._conn.fetch(
                """INSERT INTO tracking_orders (order_id, promo_code, amount, currency,
                                                occurred_at, brand_id, visitor_id, click_id,
                                                shipping_country, referrer, refunded_source)
                   SELECT u.*, 0 FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[],
                                             $5::timestamptz[], $6::text[], $7::text[],
                                             $8::text[], $9::text[], $10::text[])
                       AS u(order_id, promo_code, amount, currency, occurred_at, brand_id,
                            visitor_id, click_id, shipping_country, referrer)
                   ON CONFLICT (order_id) DO NOTHING RETURNING order_id""",
                *_order_columns(orders),
            )
            return {row["order_id"] for row in rows}
        rows = await self._conn.fetch(
            queries.INSERT_EVALUATED_ORDERS,
            *_order_columns(orders),
            *_outcome_columns(outcomes),
        )
        stored = {row["order_id"] for row in rows}
        await self._add_credits([o for o in outcomes if o.order_id in stored])
        return stored

    async def _add_credits(self, outcomes: Sequence[OrderOutcome]) -> None:
        credits = [(o.order_id, c) for o in outcomes for c in o.credits]
        if credits:
            await self._conn.execute(
                queries.INSERT_CREDITS,
                [order_id for order_id, _ in credits],
                [c.deal_id for _, c in credits],
                [c.revenue.amount for _, c in credits],
                [c.refunded.amount for _, c in credits],
                [c.revenue.currency for _, c in credits],
            )

    async def stored_orders(self, order_ids: Collection[str]) -> dict[str, Order]:
        rows = await self._rows_where_any("tracking_orders", "order_id", order_ids)
        return {row["order_id"]: order_from(row) for row in rows}

    async def stored_clicks(self, click_ids: Collection[str]) -> dict[str, Click]:
        rows = await self._rows_where_any("tracking_clicks", "click_id", click_ids)
        return {row["click_id"]: click_from(row) for row in rows}

    async def add_clicks(self, clicks: Sequence[Click]) -> list[Click]:
        if not clicks:
            return []
        rows = await self._conn.fetch(
            queries.INSERT_CLICKS,
            [c.click_id for c in clicks],
            [c.deal_id for c in clicks],
            [c.visitor_id for c in clicks],
            [c.clicked_at for c in clicks],
            [c.brand_id for c in clicks],
        )
        return [click_from(row) for row in rows]

    async def clicks_on_deals(self, deal_ids: Collection[str]) -> list[Click]:
        rows = await self._rows_where_any("tracking_clicks", "deal_id", deal_ids)
        return [click_from(row) for row in rows]

    async def save_model_settings(self, settings: Sequence[ModelSetting]) -> list[ModelSetting]:
        newest = sorted(newest_settings(settings).values(), key=lambda m: m.campaign_id)
        if not newest:
            return []
        rows = await self._conn.fetch(
            queries.SAVE_MODEL_SETTINGS,
            [m.campaign_id for m in newest],
            [m.brand_id for m in newest],
            [m.model.value for m in newest],
            [m.lookback_days for m in newest],
            [m.half_life_days for m in newest],
            [m.set_at for m in newest],
            [m.event_id for m in newest],
            [m.leaked_orders.value for m in newest],
        )
        return [setting_from(row) for row in rows]

    async def brands_of_campaigns(self, campaign_ids: Collection[str]) -> dict[str, set[str]]:
        if not campaign_ids:
            return {}
        brands: dict[str, set[str]] = {}
        for row in await self._conn.fetch(
            "SELECT DISTINCT campaign_id, brand_id FROM tracking_deals "
            "WHERE campaign_id = ANY($1::text[])",
            list(campaign_ids),
        ):
            brands.setdefault(row["campaign_id"], set()).add(row["brand_id"])
        return brands

    async def deals_of_campaigns(self, campaigns: Collection[tuple[str, str]]) -> set[str]:
        if not campaigns:
            return set()
        rows = await self._conn.fetch(
            """SELECT d.deal_id FROM tracking_deals d
               JOIN unnest($1::text[], $2::text[]) AS u(campaign_id, brand_id)
                 ON d.campaign_id = u.campaign_id AND d.brand_id = u.brand_id""",
            [c for c, _ in campaigns],
            [b for _, b in campaigns],
        )
        return {row["deal_id"] for row in rows}

    async def add_refunds(self, refunds: Collection[Refund]) -> set[str]:
        if not refunds:
            return set()
        # One INSERT keeps the first of twins: the same one the memory store keeps.
        items = in_keeping_order(refunds)
        rows = await self._conn.fetch(
            """INSERT INTO tracking_refunds (order_id, occurred_at, amount, currency, brand_id)
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::text[],
                                    $5::text[])
               ON CONFLICT DO NOTHING RETURNING order_id""",
            [r.order_id for r in items],
            [r.occurred_at for r in items],
            [r.amount.amount for r in items],
            [r.amount.currency for r in items],
            [r.brand_id for r in items],
        )
        return {row["order_id"] for row in rows}

    async def orders_to_evaluate(self, affected: AffectedOrders) -> list[OrderContext]:
        if not affected:
            return []
        rows = await self._conn.fetch(
            queries.ORDERS_TO_EVALUATE,
            list(affected.order_ids),
            list(affected.promo_codes),
            affected.converted_since,
            list({c.visitor_id for c in affected.clicks}),
            list({c.click_id for c in affected.clicks}),
            list(affected.campaign_ids),
        )
        return await self._order_contexts(rows, stored=True)

    async def new_order_contexts(self, orders: Sequence[Order]) -> list[OrderContext]:
        if not orders:
            return []
        rows = await self._conn.fetch(
            queries.NEW_ORDER_CONTEXTS,
            *_order_columns(orders),
        )
        return await self._order_contexts(rows, stored=False)

    async def _order_contexts(
        self, rows: Sequence[asyncpg.Record], *, stored: bool
    ) -> list[OrderContext]:
        """Contexts of the orders in `rows` (an order and its FX snapshot columns, and its
        outcome columns if `stored`), with their refunds and candidate deals."""
        if not rows:
            return []
        ids = [row["order_id"] for row in rows]
        refunds: dict[str, list[Refund]] = {}
        for r in await self._rows_where_any("tracking_refunds", "order_id", ids):
            refund = Refund(
                r["order_id"], Money(r["amount"], r["currency"]), r["occurred_at"], r["brand_id"]
            )
            refunds.setdefault(refund.order_id, []).append(refund)
        candidates: dict[str, list[DealTerms]] = {}
        for d in await self._conn.fetch(
            """SELECT c.promo_code AS code, d.* FROM tracking_deal_promo_codes c
               JOIN tracking_deals d USING (deal_id) WHERE c.promo_code = ANY($1::text[])""",
            list({row["promo_code"] for row in rows}),
        ):
            candidates.setdefault(d["code"], []).append(deal_from(d))
        snapshots: dict[tuple[Any, ...], FxSnapshot] = {}
        orders = [order_from(row) for row in rows]
        facts = await self._click_facts(orders, [d for ds in candidates.values() for d in ds])
        credits = await self._credits(ids) if stored else {}
        return [
            OrderContext(
                order=order,
                refunds=tuple(refunds.get(order.order_id, ())),
                candidates=tuple(candidates.get(order.promo_code, ())),
                snapshot=snapshot_from(row, snapshots),
                current=outcome_from(row, credits.get(order.order_id, ())) if stored else None,
                clicks=facts,
            )
            for order, row in zip(orders, rows, strict=True)
        ]

    async def _click_facts(
        self, orders: Sequence[Order], candidates: list[DealTerms]
    ) -> ClickFacts:
        """The clicks of `orders`' visitors and clicks, their deals, and the model settings
        of the campaigns of those deals and of `candidates` (one set for all the orders)."""
        visitors = list({o.visitor_id for o in orders if o.visitor_id is not None})
        click_ids = list({o.click_id for o in orders if o.click_id is not None})
        clicks: list[Click] = []
        if visitors or click_ids:
            clicks = [
                click_from(row)
                for row in await self._conn.fetch(
                    "SELECT * FROM tracking_clicks "
                    "WHERE visitor_id = ANY($1::text[]) OR click_id = ANY($2::text[])",
                    visitors,
                    click_ids,
                )
            ]
        deals = {d.deal_id: d for d in candidates}
        missing = list({c.deal_id for c in clicks} - set(deals))
        if missing:
            for row in await self._rows_where_any("tracking_deals", "deal_id", missing):
                deals[row["deal_id"]] = deal_from(row)
        settings: dict[tuple[str, str], ModelSetting] = {}
        if deals:
            campaign_ids = {d.campaign_id for d in deals.values()}
            for row in await self._rows_where_any(
                "tracking_campaign_models", "campaign_id", campaign_ids
            ):
                setting = setting_from(row)
                settings[(setting.campaign_id, setting.brand_id)] = setting
        return ClickFacts(tuple(clicks), deals, settings)

    async def _credits(self, order_ids: list[str]) -> dict[str, tuple[Credit, ...]]:
        credits: dict[str, list[Credit]] = {}
        for row in await self._conn.fetch(
            "SELECT * FROM tracking_order_credits WHERE order_id = ANY($1::text[]) "
            "ORDER BY order_id, deal_id",
            order_ids,
        ):
            credits.setdefault(row["order_id"], []).append(credit_from(row))
        return {order_id: tuple(c) for order_id, c in credits.items()}

    async def save_order_outcomes(self, outcomes: Sequence[OrderOutcome]) -> None:
        if not outcomes:
            return
        await self._conn.execute(
            queries.SAVE_OUTCOMES, [o.order_id for o in outcomes], *_outcome_columns(outcomes)
        )
        credits = [(o.order_id, c) for o in outcomes for c in o.credits]
        await self._conn.execute(
            queries.REPLACE_CREDITS,
            [o.order_id for o in outcomes],
            [order_id for order_id, _ in credits],
            [c.deal_id for _, c in credits],
            [c.revenue.amount for _, c in credits],
            [c.refunded.amount for _, c in credits],
            [c.revenue.currency for _, c in credits],
        )

    async def add_manual_confirmations(self, confirmations: Sequence[Confirmation]) -> set[str]:
        return {c.deal_id for c in await self._insert_confirmations(confirmations)}

    async def add_auto_confirmations(
        self, confirmations: Sequence[Confirmation]
    ) -> list[Confirmation]:
        return await self._insert_confirmations(confirmations)

    async def keep_early_confirmations(
        self, confirmations: Sequence[tuple[Confirmation, str]]
    ) -> None:
        if not confirmations:
            return
        await self._conn.execute(
            queries.INSERT_EARLY_CONFIRMATIONS,
            [c.deal_id for c, _ in confirmations],
            [c.deliverable_id for c, _ in confirmations],
            [signer for _, signer in confirmations],
            [json.dumps(list(c.post_ids)) for c, _ in confirmations],
            [c.confirmed_by for c, _ in confirmations],
            [c.confirmed_at for c, _ in confirmations],
        )

    async def take_early_confirmations(self, deals: Sequence[DealTerms]) -> set[str]:
        if not deals:
            return set()
        rows = await self._conn.fetch(
            queries.TAKE_EARLY_CONFIRMATIONS,
            [d.deal_id for d in deals],
            [d.brand_id for d in deals],
        )
        return {row["deal_id"] for row in rows}

    async def _insert_confirmations(
        self, confirmations: Sequence[Confirmation]
    ) -> list[Confirmation]:
        if not confirmations:
            return []
        rows = await self._conn.fetch(
            queries.INSERT_CONFIRMATIONS,
            [c.deal_id for c in confirmations],
            [c.deliverable_id for c in confirmations],
            [json.dumps(list(c.post_ids)) for c in confirmations],
            [c.confirmed_by for c in confirmations],
            [c.confirmed_at for c in confirmations],
        )
        stored = {(row["deal_id"], row["deliverable_id"]) for row in rows}
        return [c for c in confirmations if (c.deal_id, c.deliverable_id) in stored]

    async def deal_facts(self, deal_ids: Collection[str]) -> list[DealFacts]:
        if not deal_ids:
            return []
        ids = sorted(deal_ids)
        # Batches on other partitions may touch the same deal: lock its row (in id order, so
        # two batches cannot deadlock here) and read the totals only after theirs committed.
        await self._conn.execute(
            "SELECT 1 FROM tracking_deals WHERE deal_id = ANY($1::text[]) "
            "ORDER BY deal_id FOR UPDATE",
            ids,
        )
        rows = await self._conn.fetch(queries.DEAL_FACTS, ids)
        return [
            DealFacts(
                deal_id=row["deal_id"],
                campaign_id=row["campaign_id"],
                creator_id=row["creator_id"],
                fee=Money(row["fee_amount"], row["currency"]),
                commission_rate=row["commission_rate"],
                engagement=Engagement(
                    posts=row["posts"],
                    likes=int(row["likes"]),
                    comments=int(row["comments"]),
                    shares=int(row["shares"]),
                    saves=int(row["saves"]),
                    views=int(row["views"]),
                    impressions=int(row["impressions"]),
                    reach=int(row["reach"]),
                    rate_sum=row["rate_sum"],
                    rated_posts=row["rated_posts"],
                ),
                orders=row["orders"],
                revenue=Money(row["revenue"], row["currency"]),
                pending_fx_orders=row["pending_fx_orders"],
                as_of=row["as_of"],
                model=Model(row["model"]),
                setting_id=row["setting_id"],
            )
            for row in rows
        ]

    async def leak_facts(
        self, deal_ids: Collection[str], thresholds: LeakThresholds = LeakThresholds()
    ) -> list[LeakFacts]:
        if not deal_ids:
            return []
        ids = list(deal_ids)
        states: dict[str, dict[str, asyncpg.Record]] = {}
        for row in await self._rows_where_any("tracking_leak_codes", "deal_id", ids):
            states.setdefault(row["deal_id"], {})[row["promo_code"]] = row
        deals = await self._conn.fetch(queries.LEAK_DEALS, ids)
        judgements: dict[str, dict[str, CodeJudgement]] = {}
        wanted: list[tuple[str, str, tuple[datetime, str] | None]] = []
        for row in deals:
            deal = deal_from(row)
            inputs = judgement_inputs(deal.audience_countries, thresholds)
            codes = states.get(deal.deal_id, {})
            for code in sorted(set(deal.promo_codes) | set(codes)):
                judgement = _standing(codes.get(code), inputs, int(row["reach"]), thresholds)
                if judgement is not None:
                    judgements.setdefault(deal.deal_id, {})[code] = judgement
                through = None if judgement is None else judgement.through
                wanted.append((deal.deal_id, code, through))
        orders: dict[str, list[LeakOrder]] = {}
        suspected: dict[str, set[str]] = {}
        columns = [
            [deal_id for deal_id, _, _ in wanted],
            [code for _, code, _ in wanted],
            [None if through is None else through[0] for _, _, through in wanted],
            [None if through is None else through[1] for _, _, through in wanted],
            thresholds.window,
        ]
        for row in await self._leak_orders(columns) if wanted else []:
            orders.setdefault(row["deal_id"], []).append(leak_order_from(row))
            if row["leak_suspected"]:
                suspected.setdefault(row["deal_id"], set()).add(row["order_id"])
        return [
            LeakFacts(
                deal=deal_from(row),
                reach=int(row["reach"]),
                policy=LeakedOrders(row["leaked_orders"]),
                orders=tuple(orders.get(row["deal_id"], ())),
                suspected=frozenset(suspected.get(row["deal_id"], ())),
                judgements=judgements.get(row["deal_id"], {}),
            )
            for row in deals
        ]

    async def _leak_orders(self, columns: list[Any]) -> list[asyncpg.Record]:
        # Planned for its arguments: the generic plan PostgreSQL switches a prepared
        # statement to after five runs read every order of each code (history-bound).
        await self._conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows: list[asyncpg.Record] = await self._conn.fetch(queries.LEAK_ORDERS, *columns)
        await self._conn.execute("RESET plan_cache_mode")
        return rows

    async def save_leak_judgements(
        self, judgements: Collection[tuple[str, str, CodeJudgement]]
    ) -> None:
        if judgements:
            await self._conn.execute(
                queries.SAVE_LEAK_JUDGEMENTS,
                [deal_id for deal_id, _, _ in judgements],
                [code for _, code, _ in judgements],
                [judgement_json(j) for _, _, j in judgements],
            )

    async def mark_leak_suspects(
        self, suspected: Collection[str], cleared: Collection[str]
    ) -> set[str]:
        if not suspected and not cleared:
            return set()
        rows = await self._conn.fetch(
            queries.MARK_LEAK_SUSPECTS, list(suspected), list(set(cleared) - set(suspected))
        )
        return {row["deal_id"] for row in rows}

    async def add_leak_alerts(self, alerts: Sequence[LeakAlert]) -> list[LeakAlert]:
        if not alerts:
            return []
        rows = await self._conn.fetch(
            queries.INSERT_LEAK_ALERTS,
            [a.deal_id for a in alerts],
            [a.promo_code for a in alerts],
            [a.evidence.rule.value for a in alerts],
            [a.evidence.order_id for a in alerts],
            [a.evidence.fired_at for a in alerts],
        )
        recorded = {(row["deal_id"], row["promo_code"], row["rule"]) for row in rows}
        return [a for a in alerts if (a.deal_id, a.promo_code, a.evidence.rule) in recorded]

    async def leak_totals(self, deal_ids: Collection[str]) -> dict[str, LeakTotals]:
        if not deal_ids:
            return {}
        return {
            row["deal_id"]: LeakTotals(
                row["suspected"],
                row["suspected_orders"],
                row["withheld_orders"],
                row["withheld_revenue"],
            )
            for row in await self._conn.fetch(queries.LEAK_TOTALS, list(deal_ids))
        }

    async def save_attributions(
        self, attributions: Sequence[DealAttribution]
    ) -> list[DealAttribution]:
        if not attributions:
            return []
        performances = [a.performance for a in attributions]
        engagements = [p.engagement for p in performances]
        ratios = [a.ratios for a in attributions]
        rows = await self._conn.fetch(
            queries.SAVE_ATTRIBUTIONS,
            [a.deal_id for a in attributions],
            [a.campaign_id for a in attributions],
            [a.creator_id for a in attributions],
            [e.posts for e in engagements],
            [e.likes for e in engagements],
            [e.comments for e in engagements],
            [e.shares for e in engagements],
            [e.saves for e in engagements],
            [e.views for e in engagements],
            [e.impressions for e in engagements],
            [e.reach for e in engagements],
            [e.rate_sum for e in engagements],
            [e.rated_posts for e in engagements],
            [p.orders for p in performances],
            [p.pending_fx_orders for p in performances],
            [p.revenue.currency for p in performances],
            [p.revenue.amount for p in performances],
            [p.spend.amount for p in performances],
            [r.engagement_rate for r in ratios],
            [r.cpm for r in ratios],
            [r.cpe for r in ratios],
            [r.cpa for r in ratios],
            [r.roas for r in ratios],
            [r.roi_pct for r in ratios],
            [p.as_of for p in performances],
            [a.model.value for a in attributions],
            [a.setting_id for a in attributions],
            [a.leaks.suspected for a in attributions],
            [a.leaks.suspected_orders for a in attributions],
            [a.leaks.withheld_orders for a in attributions],
            [a.leaks.withheld_revenue for a in attributions],
        )
        changed = {row["deal_id"] for row in rows}
        return [a for a in attributions if a.deal_id in changed]

    async def published(self, attributions: Sequence[DealAttribution]) -> list[DealAttribution]:
        if not attributions:
            return []
        one_per_deal(attributions)  # one UPDATE changes a row once
        rows = await self._conn.fetch(
            """UPDATE tracking_attribution t
                  SET published_as_of = GREATEST(t.published_as_of, v.as_of),
                      published_sequence = t.published_sequence + 1
                 FROM unnest($1::text[], $2::timestamptz[]) AS v (deal_id, as_of)
                WHERE t.deal_id = v.deal_id
            RETURNING t.deal_id, t.published_as_of, t.published_sequence""",
            [a.deal_id for a in attributions],
            [a.performance.as_of for a in attributions],
        )
        stamped = {row["deal_id"]: row for row in rows}
        return [
            a if row is None else as_published(a, row["published_as_of"], row["published_sequence"])
            for a in attributions
            for row in (stamped.get(a.deal_id),)
        ]

    async def add_unattributed(self, changes: Sequence[UnattributedChange]) -> set[str]:
        if not changes:
            return set()
        await self._conn.execute(
            queries.ADD_UNATTRIBUTED,
            [c.brand_id for c in changes],
            [c.amount.currency for c in changes],
            [c.orders for c in changes],
            [c.amount.amount for c in changes],
        )
        await self._conn.execute(
            "DELETE FROM tracking_unattributed "
            "WHERE brand_id = ANY($1::text[]) AND orders = 0 AND revenue = 0",
            list({c.brand_id for c in changes}),
        )
        return {c.brand_id for c in changes}

    async def campaigns_of_deals(self, deal_ids: Collection[str]) -> set[tuple[str, str]]:
        if not deal_ids:
            return set()
        rows = await self._conn.fetch(
            "SELECT DISTINCT campaign_id, brand_id FROM tracking_deals "
            "WHERE deal_id = ANY($1::text[])",
            list(deal_ids),
        )
        return {(row["campaign_id"], row["brand_id"]) for row in rows}

    async def campaigns_of_brands(self, brand_ids: Collection[str]) -> set[tuple[str, str]]:
        if not brand_ids:
            return set()
        rows = await self._conn.fetch(
            "SELECT DISTINCT campaign_id, brand_id FROM tracking_deals "
            "WHERE brand_id = ANY($1::text[])",
            list(brand_ids),
        )
        return {(row["campaign_id"], row["brand_id"]) for row in rows}

    async def campaigns_converted_since(self, since: datetime) -> set[tuple[str, str]]:
        rows = await self._conn.fetch(
            "SELECT campaign_id, brand_id FROM tracking_campaign_attribution "
            "WHERE converted AND as_of >= $1",
            since,
        )
        return {(row["campaign_id"], row["brand_id"]) for row in rows}

    async def campaign_facts(self, campaigns: Collection[tuple[str, str]]) -> list[CampaignFacts]:
        if not campaigns:
            return []
        keys = sorted(campaigns)
        columns = [c for c, _ in keys], [b for _, b in keys]
        totals: dict[tuple[str, str], list[CurrencyTotals]] = {}
        for row in await self._conn.fetch(queries.CAMPAIGN_TOTALS, *columns):
            key = (row["campaign_id"], row["brand_id"])
            totals.setdefault(key, []).append(campaign_totals_from(row))
        reporting = {
            (row["campaign_id"], row["brand_id"]): row["currency"]
            for row in await self._conn.fetch(queries.REPORTING_CURRENCIES, *columns)
        }
        unattributed: dict[str, tuple[int, dict[str, Decimal]]] = {}
        for row in await self._conn.fetch(
            "SELECT brand_id, currency, orders, revenue FROM tracking_unattributed "
            "WHERE brand_id = ANY($1::text[])",
            list({b for _, b in keys}),
        ):
            orders, revenue = unattributed.setdefault(row["brand_id"], (0, {}))
            revenue[row["currency"]] = row["revenue"]
            unattributed[row["brand_id"]] = (orders + row["orders"], revenue)
        facts = []
        for key in keys:
            if key not in totals:
                continue
            orders, revenue = unattributed.get(key[1], (0, {}))
            fact = CampaignFacts(
                key[0],
                key[1],
                reporting[key],
                tuple(sorted(totals[key], key=lambda t: t.currency)),
                unattributed=unattributed_totals(orders, revenue),
            )
            if fact.converted and fact.as_of is not None:
                # Only campaigns in several currencies: a statement each is fine.
                snapshot = await fx_store.snapshot_at(self._conn, fact.as_of, trusted=True)
                fact = replace(fact, snapshot=snapshot)
            facts.append(fact)
        return facts

    async def save_campaign_attributions(
        self, campaigns: Sequence[CampaignAttribution]
    ) -> list[CampaignAttribution]:
        if not campaigns:
            return []
        rows = await self._conn.fetch(
            queries.SAVE_CAMPAIGN_ATTRIBUTIONS,
            [c.campaign_id for c in campaigns],
            [c.brand_id for c in campaigns],
            [c.as_of for c in campaigns],
            [c.converted for c in campaigns],
            [campaign_figures(c) for c in campaigns],
        )
        sequences = {(row["campaign_id"], row["brand_id"]): row["sequence"] for row in rows}
        return [
            replace(c, sequence=sequences[key])
            for c in campaigns
            if (key := (c.campaign_id, c.brand_id)) in sequences
        ]

    async def open_deliverables(self, deal_ids: Collection[str]) -> list[DeliverableState]:
        if not deal_ids:
            return []
        deals = [
            deal_from(row)
            for row in await self._conn.fetch(
                "SELECT * FROM tracking_deals "
                "WHERE deal_id = ANY($1::text[]) AND deliverables_open",
                list(deal_ids),
            )
        ]
        if not deals:
            return []
        open_ids = [d.deal_id for d in deals]
        posts: dict[str, list[PostSnapshot]] = {}
        for row in await self._conn.fetch(
            """SELECT m.deal_id AS member_of, p.* FROM tracking_deal_posts m
               JOIN tracking_posts p USING (post_id) WHERE m.deal_id = ANY($1::text[])""",
            open_ids,
        ):
            posts.setdefault(row["member_of"], []).append(post_from(row))
        confirmed: dict[str, dict[str, tuple[str, ...]]] = {}
        for row in await self._conn.fetch(
            "SELECT deal_id, deliverable_id, post_ids FROM tracking_confirmations "
            "WHERE deal_id = ANY($1::text[])",
            open_ids,
        ):
            confirmed.setdefault(row["deal_id"], {})[row["deliverable_id"]] = tuple(row["post_ids"])
        return [
            DeliverableState(d, tuple(posts.get(d.deal_id, ())), confirmed.get(d.deal_id, {}))
            for d in deals
        ]

    async def close_deals(self, deal_ids: Collection[str]) -> None:
        if deal_ids:
            await self._conn.execute(
                "UPDATE tracking_deals SET deliverables_open = false "
                "WHERE deal_id = ANY($1::text[])",
                list(deal_ids),
            )


def _standing(
    state: asyncpg.Record | None, inputs: str, reach: int, thresholds: LeakThresholds
) -> CodeJudgement | None:
    """A code's stored judgement (a tracking_leak_codes row) if it still stands: no order at
    or before the last one it judged joined or left the code since (`changed_from`, kept by
    the triggers of migration 0207), and CodeJudgement.resumable."""
    if state is None or state["judgement"] is None:
        return None
    judgement = judgement_from(state["judgement"])
    changed = state["changed_from"]
    if changed is not None and changed <= judgement.through[0]:
        return None
    return judgement if judgement.resumable(inputs, reach, thresholds) else None


def _order_columns(orders: Sequence[Order]) -> list[list[Any]]:
    """The order columns of tracking_orders (id, code, amount, currency, time, brand,
    visitor, click, shipping country, referrer), one array each."""
    return [
        [o.order_id for o in orders],
        [o.promo_code for o in orders],
        [o.amount.amount for o in orders],
        [o.amount.currency for o in orders],
        [o.occurred_at for o in orders],
        [o.brand_id for o in orders],
        [o.visitor_id for o in orders],
        [o.click_id for o in orders],
        [o.shipping_country for o in orders],
        [o.referrer for o in orders],
    ]


def _outcome_columns(outcomes: Sequence[OrderOutcome]) -> list[list[Any]]:
    """The outcome columns of tracking_orders, order_id aside, one array each."""
    return [
        [o.status.value for o in outcomes],
        [None if o.reason is None else o.reason.value for o in outcomes],
        [o.deal_id for o in outcomes],
        [None if o.revenue is None else o.revenue.amount for o in outcomes],
        [None if o.refunded is None else o.refunded.amount for o in outcomes],
        [None if o.revenue is None else o.revenue.currency for o in outcomes],
        [o.refunded_source.amount for o in outcomes],
        [o.fully_refunded for o in outcomes],
        [None if o.fx is None else o.fx.rate for o in outcomes],
        [None if o.fx is None else o.fx.as_of for o in outcomes],
        [None if o.fx is None else o.fx.source for o in outcomes],
        [o.last_refund_at for o in outcomes],
        [o.model.value for o in outcomes],
    ]
