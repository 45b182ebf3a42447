"""The payouts store on PostgreSQL (tables `payouts_*`, migrations 0300-0303)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

import asyncpg
from pydantic import SecretStr

from services.payouts.domain.accounts import Hold, HoldCode, PayoutAccount, SealedDestination
from services.payouts.domain.amounts import FxRecord
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.escrow import Funding
from services.payouts.domain.ledger import Posting, Transfer, TransferKind
from services.payouts.domain.ledger_check import PostedTransfer
from services.payouts.domain.lifecycle import Payout, PayoutStatus
from services.payouts.domain.statements import DatedPayout
from services.payouts.domain.terms import (
    Cancellation,
    Confirmation,
    DealTerms,
    DeliverableTerm,
    PayoutKind,
)
from services.payouts.notices import DueEmail, EmailState, Notice, notice_of
from services.payouts.providers.rails import LEGACY_RAIL
from services.payouts.store.port import Attribution, FeeCeilingExceeded, LockMode, StaleUpdate
from shared.contract.events import CloudEvent, PayoutStatusChanged, Topic, decode
from shared.contract.money import FxSnapshot, Money
from shared.runtime import fx_store
from shared.runtime.db import any_of, session_connection
from shared.runtime.observability import PAYOUT_EMAILS
from shared.runtime.service_store import ServiceStore, ServiceTransaction

DUE_CHANNEL: Final = "payouts_due"
# First keys of our two-key advisory locks ("PD", "PC", "PF"), so they cannot meet others'.
_DEAL_LOCK_SPACE: Final = 0x5044
_CREATOR_LOCK_SPACE: Final = 0x5043
_FX_LOCK_SPACE: Final = 0x5046
_BRAND_LOCK_SPACE: Final = 0x5042

# A payout row's columns and their types, in `_payout_values`' order.
_PAYOUT_COLUMN_TYPES: Final = (
    ("payout_id", "text"),
    ("deal_id", "text"),
    ("kind", "text"),
    ("milestone", "text"),
    ("creator_id", "text"),
    ("brand_id", "text"),
    ("gross_amount", "numeric"),
    ("gross_currency", "text"),
    ("platform_fee_amount", "numeric"),
    ("net_amount", "numeric"),
    ("net_currency", "text"),
    ("fx_rate", "numeric"),
    ("fx_as_of", "timestamptz"),
    ("fx_source", "text"),
    ("status", "text"),
    ("hold_code", "text"),
    ("hold_reason", "text"),
    ("failure_reason", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "timestamptz"),
    ("provider_ref", "text"),
    ("version", "int"),
    ("recovered_amount", "numeric"),
    ("fx_at", "timestamptz"),
    ("chapter", "int"),
    ("in_doubt", "bool"),
    ("rail", "text"),
    ("leased", "bool"),
)
_PAYOUT_COLUMNS: Final = ", ".join(name for name, _ in _PAYOUT_COLUMN_TYPES)
# `$1, $2, ...`: one parameter per column; and as arrays, to insert many rows in one statement.
_PAYOUT_PARAMETERS: Final = ", ".join(f"${i + 1}" for i in range(len(_PAYOUT_COLUMN_TYPES)))
_PAYOUT_ARRAYS: Final = ", ".join(
    f"${i + 1}::{sql_type}[]" for i, (_, sql_type) in enumerate(_PAYOUT_COLUMN_TYPES)
)


def _lock_key(entity_id: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(entity_id.encode(), digest_size=4).digest(), "big", signed=True
    )


def _payout(row: asyncpg.Record) -> Payout:
    net = (
        None if row["net_amount"] is None else Money(row["net_amount"], row["net_currency"].strip())
    )
    fx = (
        None
        if row["fx_rate"] is None
        else FxRecord(row["fx_rate"], row["fx_as_of"], row["fx_source"])
    )
    hold = (
        None if row["hold_code"] is None else Hold(HoldCode(row["hold_code"]), row["hold_reason"])
    )
    currency = row["gross_currency"].strip()
    return Payout(
        payout_id=row["payout_id"],
        deal_id=row["deal_id"],
        kind=cast(PayoutKind, row["kind"]),
        milestone=row["milestone"],
        creator_id=row["creator_id"],
        brand_id=row["brand_id"],
        gross=Money(row["gross_amount"], currency),
        platform_fee=Money(row["platform_fee_amount"], currency),
        status=cast(PayoutStatus, row["status"]),
        net=net,
        fx=fx,
        hold=hold,
        failure_reason=row["failure_reason"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        provider_ref=row["provider_ref"],
        version=row["version"],
        recovered=None if not row["recovered_amount"] else Money(row["recovered_amount"], currency),
        fx_at=row["fx_at"],
        chapter=row["chapter"],
        in_doubt=row["in_doubt"],
        rail=row["rail"],
        leased=row["leased"],
    )


def _payout_values(p: Payout) -> tuple[Any, ...]:
    return (
        p.payout_id,
        p.deal_id,
        p.kind,
        p.milestone,
        p.creator_id,
        p.brand_id,
        p.gross.amount,
        p.gross.currency,
        p.platform_fee.amount,
        None if p.net is None else p.net.amount,
        None if p.net is None else p.net.currency,
        None if p.fx is None else p.fx.rate,
        None if p.fx is None else p.fx.as_of,
        None if p.fx is None else p.fx.source,
        p.status,
        None if p.hold is None else p.hold.code.value,
        None if p.hold is None else p.hold.reason,
        p.failure_reason,
        p.attempts,
        p.next_attempt_at,
        p.provider_ref,
        p.version,
        _recovered(p),
        p.fx_at,
        p.chapter,
        p.in_doubt,
        p.rail,
        p.leased,
    )


def _recovered(p: Payout) -> Decimal:
    return Decimal(0) if p.recovered is None else p.recovered.amount


_FUNDING_COLUMNS: Final = "funding_id, brand_id, amount, currency, funded_at"


def _terms_row(terms: DealTerms) -> dict[str, Any]:
    """The columns a deal's terms fill alike in `payouts_deals` and `payouts_deal_versions`."""
    return {
        "deal_id": terms.deal_id,
        "campaign_id": terms.campaign_id,
        "brand_id": terms.brand_id,
        "creator_id": terms.creator_id,
        "fee_amount": terms.fee.amount,
        "currency": terms.currency,
        "commission_rate": terms.commission_rate,
        "deliverables": _deliverables_json(terms),
        "ends_at": terms.ends_at,
        "attribution_window_days": terms.attribution_window_days,
    }


_CASTS: Final = {"deliverables": "::jsonb"}


def _insert_new(table: str, row: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    """An INSERT of `row` into `table` that keeps a row already there under `key` and
    returns true only when it inserted, then its arguments."""
    names = ", ".join(row)
    values = ", ".join(f"${i}{_CASTS.get(name, '')}" for i, name in enumerate(row, 1))
    return (
        f"INSERT INTO {table} ({names}) VALUES ({values}) "
        f"ON CONFLICT ({key}) DO NOTHING RETURNING true",
        *row.values(),
    )


def _funding(row: asyncpg.Record) -> Funding:
    return Funding(
        row["funding_id"],
        row["brand_id"],
        Money(row["amount"], row["currency"].strip()),
        row["funded_at"],
    )


def _deal(row: asyncpg.Record) -> DealTerms:
    currency = row["currency"].strip()
    return DealTerms(
        deal_id=row["deal_id"],
        campaign_id=row["campaign_id"],
        brand_id=row["brand_id"],
        creator_id=row["creator_id"],
        fee=Money(row["fee_amount"], currency),
        commission_rate=row["commission_rate"],
        deliverables=tuple(
            DeliverableTerm(d["deliverable_id"], d["count"])
            for d in json.loads(row["deliverables"])
        ),
        ends_at=row["ends_at"],
        attribution_window_days=row["attribution_window_days"],
        # A kept version (payouts_deal_versions) has neither: the deal row's count.
        fee_schedule=row.get("fee_schedule", "on_completion"),
        version=row["version"],
        cancelled_at=row.get("cancelled_at"),
        sent_at=row.get("sent_at"),
    )


def _deliverables_json(terms: DealTerms) -> str:
    return json.dumps(
        [{"deliverable_id": d.deliverable_id, "count": d.count} for d in terms.deliverables]
    )


def _account(row: asyncpg.Record) -> PayoutAccount:
    return PayoutAccount(
        creator_id=row["creator_id"],
        method=row["method"],
        destination=SealedDestination(
            bytes(row["destination_sealed"]),
            None
            if row["destination_fingerprint"] is None
            else bytes(row["destination_fingerprint"]),
        ),
        currency=row["currency"].strip(),
        tax_form_type=row["tax_form_type"],
        tax_form_status=row["tax_form_status"],
        updated_at=row["updated_at"],
        cooling_off_until=row["cooling_off_until"],
        fallback_method=row["fallback_method"],
        fallback_destination=None
        if row["fallback_destination_sealed"] is None
        else SealedDestination(
            bytes(row["fallback_destination_sealed"]),
            None
            if row["fallback_destination_fingerprint"] is None
            else bytes(row["fallback_destination_fingerprint"]),
        ),
        email=row["email"],
    )


def _notice(row: asyncpg.Record) -> Notice:
    return Notice(
        event_id=row["event_id"],
        payout_id=row["payout_id"],
        creator_id=row["creator_id"],
        status=row["status"],
        amount=Money(row["amount"], row["currency"].strip()),
        converted=row["converted"],
        changed_at=row["changed_at"],
        kind=row["kind"],
        hold_code=row["hold_code"],
        returned=row["returned"],
    )


# The name of payouts' inbox and of its outbox rows' producer: the payouts relay publishes
# them (shared.runtime.outbox). The inbox keeps it whatever the consumer group, so a new group
# replays history without paying twice.
CONSUMER: Final = "payouts"
OUTBOX_PRODUCER: Final = CONSUMER


_LOCK_IN_ORDER = """
SELECT count(CASE WHEN l.shared THEN pg_advisory_xact_lock_shared(l.space, l.k)
                  ELSE pg_advisory_xact_lock(l.space, l.k) END)
FROM unnest($1::int[], $2::int[], $3::boolean[]) AS l(space, k, shared)"""


class PostgresPayoutsTransaction(ServiceTransaction):
    """`PayoutsTransaction` over one connection inside an open transaction."""

    def __init__(self, conn: asyncpg.Connection, consumer: str = CONSUMER) -> None:
        super().__init__(conn, consumer)

    async def _payouts(self, query: str, *args: Any) -> list[Payout]:
        """The payouts `query` (selecting `_PAYOUT_COLUMNS`) finds, in its order; every
        method that lists payouts reads its rows here."""
        return [_payout(r) for r in await self._conn.fetch(query, *args)]

    async def lock(
        self,
        *,
        fx: LockMode | None = None,
        deal_ids: Iterable[str] = (),
        creator_ids: Iterable[str] = (),
        brand_ids: Iterable[str] = (),
    ) -> None:
        # One statement for all of them: unnest feeds the locks to the lock functions in
        # array order, FX first, then each kind's keys sorted, so transactions locking
        # overlapping sets cannot deadlock.
        spaces: list[int] = []
        keys: list[int] = []
        shared: list[bool] = []
        if fx is not None:
            spaces.append(_FX_LOCK_SPACE)
            keys.append(0)
            shared.append(fx == "shared")
        for space, ids in (
            (_DEAL_LOCK_SPACE, deal_ids),
            (_CREATOR_LOCK_SPACE, creator_ids),
            (_BRAND_LOCK_SPACE, brand_ids),
        ):
            sorted_keys = sorted({_lock_key(i) for i in ids})
            spaces += [space] * len(sorted_keys)
            keys += sorted_keys
            shared += [False] * len(sorted_keys)
        if keys:
            await self._conn.execute(_LOCK_IN_ORDER, spaces, keys, shared)

    async def add_funding(self, funding: Funding, event_id: str) -> bool:
        inserted = await self._conn.fetchval(
            """INSERT INTO payouts_brand_fundings
                   (funding_id, brand_id, amount, currency, funded_at, event_id)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (funding_id) DO NOTHING RETURNING true""",
            funding.funding_id,
            funding.brand_id,
            funding.amount.amount,
            funding.amount.currency,
            funding.funded_at,
            event_id,
        )
        return bool(inserted)

    async def funding(self, funding_id: str) -> Funding | None:
        row = await self._conn.fetchrow(
            f"SELECT {_FUNDING_COLUMNS} FROM payouts_brand_fundings WHERE funding_id = $1",
            funding_id,
        )
        return None if row is None else _funding(row)

    async def fundings_of(self, brand_id: str) -> list[Funding]:
        rows = await self._conn.fetch(
            f"""SELECT {_FUNDING_COLUMNS} FROM payouts_brand_fundings WHERE brand_id = $1
                ORDER BY funded_at, funding_id""",
            brand_id,
        )
        return [_funding(r) for r in rows]

    async def escrow_balances(self, brand_ids: Iterable[str]) -> dict[tuple[str, str], Decimal]:
        rows = await self._conn.fetch(
            """SELECT brand_id, currency, balance FROM payouts_brand_escrow
               WHERE brand_id = ANY($1::text[])""",
            sorted(set(brand_ids)),
        )
        return {(r["brand_id"], r["currency"].strip()): r["balance"] for r in rows}

    async def awaiting_funds(self, brand_ids: Iterable[str]) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts
                WHERE status = 'held' AND hold_code = 'awaiting_funds'
                  AND brand_id = ANY($1::text[])
                ORDER BY brand_id, fx_at, payout_id""",
            sorted(set(brand_ids)),
        )

    async def payouts_of_brand(self, brand_id: str) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts WHERE brand_id = $1
                ORDER BY created_at, payout_id""",
            brand_id,
        )

    async def add_deal(self, terms: DealTerms, event_id: str) -> bool:
        row = _terms_row(terms) | {
            "attribution_closes_at": terms.attribution_closes_at,
            "signed_event_id": event_id,
            "fee_schedule": terms.fee_schedule,
        }
        return bool(await self._conn.fetchval(*_insert_new("payouts_deals", row, "deal_id")))

    async def deal(self, deal_id: str) -> DealTerms | None:
        row = await self._conn.fetchrow("SELECT * FROM payouts_deals WHERE deal_id = $1", deal_id)
        return None if row is None else _deal(row)

    async def deals(self, deal_ids: Iterable[str]) -> dict[str, DealTerms]:
        rows = await self._conn.fetch(
            "SELECT * FROM payouts_deals WHERE deal_id = ANY($1::text[])", sorted(set(deal_ids))
        )
        return {r["deal_id"]: _deal(r) for r in rows}

    async def add_confirmation(
        self,
        deal_id: str,
        deliverable_id: str,
        confirmed_by: str,
        confirmed_at: datetime,
        signed_by: str = "",
        post_received_at: datetime | None = None,
    ) -> bool:
        inserted = await self._conn.fetchval(
            """INSERT INTO payouts_confirmations (deal_id, deliverable_id, confirmed_by,
                   confirmed_at, signed_by, post_received_at) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT DO NOTHING RETURNING true""",
            deal_id,
            deliverable_id,
            confirmed_by,
            confirmed_at,
            signed_by,
            post_received_at,
        )
        return bool(inserted)

    async def confirmed(self, deal_id: str) -> Mapping[str, datetime]:
        rows = await self._conn.fetch(
            """SELECT c.deliverable_id, min(c.confirmed_at) AS confirmed_at
               FROM payouts_confirmations c LEFT JOIN payouts_deals d USING (deal_id)
               WHERE c.deal_id = $1 AND (c.signed_by = '' OR c.signed_by = d.brand_id)
               GROUP BY c.deliverable_id""",
            deal_id,
        )
        return {r["deliverable_id"]: r["confirmed_at"] for r in rows}

    async def confirmations_of(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], datetime]]:
        asked = sorted(set(deal_ids))
        rows = await self._conn.fetch(
            """SELECT deal_id, deliverable_id, signed_by, confirmed_at
               FROM payouts_confirmations WHERE deal_id = ANY($1::text[])""",
            asked,
        )
        found: dict[str, dict[tuple[str, str], datetime]] = {deal_id: {} for deal_id in asked}
        for r in rows:
            found[r["deal_id"]][(r["deliverable_id"], r["signed_by"])] = r["confirmed_at"]
        return found

    async def add_confirmations(self, confirmations: Sequence[Confirmation]) -> None:
        if not confirmations:
            return
        try:
            await self._conn.execute(
                """INSERT INTO payouts_confirmations (deal_id, deliverable_id, confirmed_by,
                       confirmed_at, signed_by, post_received_at)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                       $5::text[], $6::timestamptz[])""",
                [c.deal_id for c in confirmations],
                [c.deliverable_id for c in confirmations],
                [c.confirmed_by for c in confirmations],
                [c.confirmed_at for c in confirmations],
                [c.signed_by for c in confirmations],
                [c.post_received_at for c in confirmations],
            )
        except asyncpg.UniqueViolationError as error:
            raise StaleUpdate(f"confirmation stored meanwhile: {error.detail}") from None

    async def post_arrivals(self, deal_ids: Iterable[str]) -> dict[tuple[str, datetime], datetime]:
        rows = await self._conn.fetch(
            """SELECT c.deal_id, c.confirmed_at, min(c.post_received_at) AS post_received_at
               FROM payouts_confirmations c LEFT JOIN payouts_deals d USING (deal_id)
               WHERE c.deal_id = ANY($1::text[]) AND c.post_received_at IS NOT NULL
                 AND (c.signed_by = '' OR c.signed_by = d.brand_id)
               GROUP BY c.deal_id, c.confirmed_at""",
            sorted(set(deal_ids)),
        )
        return {(r["deal_id"], r["confirmed_at"]): r["post_received_at"] for r in rows}

    async def save_account(self, account: PayoutAccount) -> bool:
        stored = await self._conn.fetchval(
            """INSERT INTO payouts_accounts AS a (creator_id, method, destination_sealed,
                   currency, tax_form_type, tax_form_status, updated_at,
                   destination_fingerprint, cooling_off_until, fallback_method,
                   fallback_destination_sealed, fallback_destination_fingerprint, email)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (creator_id) DO UPDATE SET method = EXCLUDED.method,
                   destination_sealed = EXCLUDED.destination_sealed, destination_token = NULL,
                   currency = EXCLUDED.currency, tax_form_type = EXCLUDED.tax_form_type,
                   tax_form_status = EXCLUDED.tax_form_status, updated_at = EXCLUDED.updated_at,
                   destination_fingerprint = EXCLUDED.destination_fingerprint,
                   cooling_off_until = EXCLUDED.cooling_off_until,
                   fallback_method = EXCLUDED.fallback_method,
                   fallback_destination_sealed = EXCLUDED.fallback_destination_sealed,
                   fallback_destination_fingerprint = EXCLUDED.fallback_destination_fingerprint,
                   email = EXCLUDED.email
               WHERE a.updated_at <= EXCLUDED.updated_at
               RETURNING true""",
            account.creator_id,
            account.method,
            account.destination.data,
            account.currency,
            account.tax_form_type,
            account.tax_form_status,
            account.updated_at,
            account.destination.fingerprint,
            account.cooling_off_until,
            account.fallback_method,
            None if account.fallback_destination is None else account.fallback_destination.data,
            None
            if account.fallback_destination is None
            else account.fallback_destination.fingerprint,
            account.email,
        )
        return bool(stored)

    async def accounts(self, creator_ids: Iterable[str]) -> dict[str, PayoutAccount]:
        rows = await self._conn.fetch(
            "SELECT * FROM payouts_accounts WHERE creator_id = ANY($1::text[])",
            sorted(set(creator_ids)),
        )
        return {r["creator_id"]: _account(r) for r in rows}

    async def save_attribution(
        self,
        deal_id: str,
        revenue: Money,
        as_of: datetime,
        figures: AttributionFigures | None = None,
        *,
        sequence: int | None = None,
    ) -> bool:
        # The newest wins, as `domain.commission.replaces` says.
        stored = await self._conn.fetchval(
            """INSERT INTO payouts_attribution AS a (deal_id, revenue_amount, revenue_currency,
                   as_of, figures, sequence) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
               ON CONFLICT (deal_id) DO UPDATE SET revenue_amount = EXCLUDED.revenue_amount,
                   revenue_currency = EXCLUDED.revenue_currency, as_of = EXCLUDED.as_of,
                   figures = EXCLUDED.figures, sequence = EXCLUDED.sequence,
                   revision = a.revision + 1
               WHERE CASE WHEN a.sequence IS NOT NULL AND EXCLUDED.sequence IS NOT NULL
                              THEN a.sequence < EXCLUDED.sequence
                          WHEN a.sequence IS NOT NULL THEN a.as_of < EXCLUDED.as_of
                          ELSE a.as_of <= EXCLUDED.as_of END
               RETURNING true""",
            deal_id,
            revenue.amount,
            revenue.currency,
            as_of,
            None if figures is None else json.dumps(figures.to_json()),
            sequence,
        )
        return bool(stored)

    async def attributions(self, deal_ids: Iterable[str]) -> dict[str, Attribution]:
        rows = await self._conn.fetch(
            """SELECT deal_id, revenue_amount, revenue_currency, revision FROM payouts_attribution
               WHERE deal_id = ANY($1::text[])""",
            sorted(set(deal_ids)),
        )
        return {r[0]: Attribution(Money(r[1], r[2].strip()), r[3]) for r in rows}

    async def attribution_figures(self, deal_ids: Iterable[str]) -> dict[str, AttributionFigures]:
        rows = await self._conn.fetch(
            """SELECT deal_id, figures FROM payouts_attribution
               WHERE deal_id = ANY($1::text[]) AND figures IS NOT NULL""",
            sorted(set(deal_ids)),
        )
        return {r["deal_id"]: AttributionFigures.from_json(json.loads(r["figures"])) for r in rows}

    async def deals_of_brand(
        self, brand_id: str, *, campaign_id: str | None = None, creator_id: str | None = None
    ) -> list[DealTerms]:
        rows = await self._conn.fetch(
            """SELECT * FROM payouts_deals WHERE brand_id = $1
                   AND ($2::text IS NULL OR campaign_id = $2)
                   AND ($3::text IS NULL OR creator_id = $3)
               ORDER BY deal_id""",
            brand_id,
            campaign_id,
            creator_id,
        )
        return [_deal(r) for r in rows]

    async def add_deal_version(self, terms: DealTerms, event_id: str) -> bool:
        row = _terms_row(terms) | {
            "version": terms.version,
            "event_id": event_id,
            "sent_at": terms.sent_at,
        }
        insert = _insert_new("payouts_deal_versions", row, "deal_id, version")
        return bool(await self._conn.fetchval(*insert))

    async def deal_versions(self, deal_id: str) -> list[DealTerms]:
        rows = await self._conn.fetch(
            "SELECT * FROM payouts_deal_versions WHERE deal_id = $1 ORDER BY version", deal_id
        )
        return [_deal(r) for r in rows]

    async def save_terms(self, terms: DealTerms) -> None:
        await self._conn.execute(
            """UPDATE payouts_deals SET version = $2, fee_amount = $3, commission_rate = $4,
                   deliverables = $5::jsonb, ends_at = $6, attribution_window_days = $7,
                   attribution_closes_at = $8, cancelled_at = $9
               WHERE deal_id = $1""",
            terms.deal_id,
            terms.version,
            terms.fee.amount,
            terms.commission_rate,
            _deliverables_json(terms),
            terms.ends_at,
            terms.attribution_window_days,
            terms.attribution_closes_at,
            terms.cancelled_at,
        )

    async def add_cancellation(self, cancellation: Cancellation, event_id: str) -> bool:
        changed = await self._conn.fetchval(
            """INSERT INTO payouts_deal_cancellations AS c
                   (deal_id, brand_id, cancelled_at, reason, event_id)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (deal_id, brand_id) DO UPDATE SET cancelled_at = EXCLUDED.cancelled_at,
                   reason = EXCLUDED.reason, event_id = EXCLUDED.event_id
               WHERE EXCLUDED.cancelled_at < c.cancelled_at
               RETURNING true""",
            cancellation.deal_id,
            cancellation.brand_id,
            cancellation.cancelled_at,
            cancellation.reason,
            event_id,
        )
        return bool(changed)

    async def cancellations(self, deal_id: str) -> list[Cancellation]:
        rows = await self._conn.fetch(
            """SELECT deal_id, brand_id, cancelled_at, reason FROM payouts_deal_cancellations
               WHERE deal_id = $1 ORDER BY brand_id""",
            deal_id,
        )
        return [
            Cancellation(r["deal_id"], r["brand_id"], r["cancelled_at"], r["reason"]) for r in rows
        ]

    async def fee_paid(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Money]]:
        asked = sorted(set(deal_ids))
        rows = await self._conn.fetch(
            """SELECT deal_id, milestone, gross_amount, gross_currency FROM payouts_payouts
               WHERE deal_id = ANY($1::text[]) AND kind = 'fee'""",
            asked,
        )
        paid: dict[str, dict[str, Money]] = {d: {} for d in asked}
        for r in rows:
            paid[r["deal_id"]][r["milestone"]] = Money(
                r["gross_amount"], r["gross_currency"].strip()
            )
        return paid

    async def save_fx(self, snapshot: FxSnapshot, event_id: str, max_move: Decimal) -> bool:
        return await fx_store.save_judged(self._conn, snapshot, event_id, max_move)

    async def fx_in_force(self, when: datetime) -> FxSnapshot | None:
        return await fx_store.snapshot_at(self._conn, when)

    async def fx_first_after(
        self, after: datetime, until: datetime, currencies: Sequence[str]
    ) -> FxSnapshot | None:
        return await fx_store.first_trusted_after(self._conn, after, until, currencies)

    async def add_payout(self, payout: Payout) -> bool:
        try:
            inserted = await self._conn.fetchval(
                f"""INSERT INTO payouts_payouts ({_PAYOUT_COLUMNS})
                    VALUES ({_PAYOUT_PARAMETERS})
                    ON CONFLICT ON CONSTRAINT payouts_business_key DO NOTHING RETURNING true""",
                *_payout_values(payout),
            )
        except asyncpg.CheckViolationError as error:
            if error.constraint_name != "payouts_fee_within_deal":
                raise
            raise FeeCeilingExceeded(error.message) from None
        return bool(inserted)

    async def payout_grosses(
        self, deal_ids: Iterable[str]
    ) -> dict[str, dict[tuple[str, str], Money]]:
        asked = sorted(set(deal_ids))
        rows = await self._conn.fetch(
            """SELECT deal_id, kind, milestone, gross_amount, gross_currency
               FROM payouts_payouts WHERE deal_id = ANY($1::text[])""",
            asked,
        )
        grosses: dict[str, dict[tuple[str, str], Money]] = {d: {} for d in asked}
        for r in rows:
            gross = Money(r["gross_amount"], r["gross_currency"].strip())
            grosses[r["deal_id"]][(r["kind"], r["milestone"])] = gross
        return grosses

    async def add_payouts(self, payouts: Sequence[Payout]) -> None:
        if not payouts:
            return
        try:
            # One statement; the fee ceiling's row trigger sees the rows inserted before each
            # one (a row trigger sees its statement's earlier rows).
            await self._conn.execute(
                f"""INSERT INTO payouts_payouts ({_PAYOUT_COLUMNS})
                    SELECT * FROM unnest({_PAYOUT_ARRAYS})""",
                *(list(column) for column in zip(*map(_payout_values, payouts), strict=True)),
            )
        except asyncpg.UniqueViolationError as error:
            raise StaleUpdate(f"payout stored meanwhile: {error.detail}") from None
        except asyncpg.CheckViolationError as error:
            if error.constraint_name != "payouts_fee_within_deal":
                raise
            raise FeeCeilingExceeded(error.message) from None

    async def payout(self, payout_id: str) -> Payout | None:
        row = await self._conn.fetchrow(
            f"SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts WHERE payout_id = $1", payout_id
        )
        return None if row is None else _payout(row)

    async def payouts_for_update(self, payout_ids: Sequence[str]) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts WHERE payout_id = ANY($1::text[])
                ORDER BY payout_id FOR UPDATE""",
            list(payout_ids),
        )

    async def claim_webhook(self, rail: str, event_id: str, received_at: datetime) -> bool:
        return bool(
            await self._conn.fetchval(
                """INSERT INTO payouts_webhook_events (rail, event_id, received_at)
                    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
                rail,
                event_id,
                received_at,
            )
        )

    async def payout_of_transfer(self, rail: str, provider_ref: str) -> str | None:
        found = await self._conn.fetchval(
            """SELECT payout_id FROM payouts_payouts
                WHERE provider_ref = $1 AND coalesce(rail, $3) = $2
                ORDER BY payout_id LIMIT 1""",
            provider_ref,
            rail,
            LEGACY_RAIL,
        )
        return None if found is None else str(found)

    async def held_for_update(
        self, *, creator_ids: Sequence[str] | None = None, codes: Sequence[HoldCode] = ()
    ) -> list[Payout]:
        only, args = any_of("creator_id", creator_ids)
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts
                WHERE status = 'held' AND hold_code = ANY(${len(args) + 1}::text[]) AND {only}
                ORDER BY payout_id FOR UPDATE""",
            *args,
            [c.value for c in codes],
        )

    async def in_flight(self, creator_id: str) -> bool:
        return bool(
            await self._conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM payouts_payouts WHERE creator_id = $1
                       AND status IN ('held', 'scheduled', 'failed'))""",
                creator_id,
            )
        )

    async def cooled_off_for_update(self, now: datetime, limit: int) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts p
                WHERE status = 'held' AND hold_code = 'destination_cooloff' AND EXISTS (
                    SELECT 1 FROM payouts_accounts a WHERE a.creator_id = p.creator_id
                      AND (a.cooling_off_until IS NULL OR a.cooling_off_until <= $1))
                ORDER BY payout_id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )

    async def failed_for_update(self, creator_ids: Sequence[str]) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts
                WHERE status = 'failed' AND creator_id = ANY($1::text[])
                ORDER BY payout_id FOR UPDATE""",
            list(creator_ids),
        )

    async def due_for_update(self, now: datetime, limit: int) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts
                WHERE status = 'scheduled' AND next_attempt_at <= $1
                ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )

    async def sent_due_for_update(self, now: datetime, limit: int) -> list[tuple[Payout, int]]:
        rows = await self._conn.fetch(
            f"""SELECT {_PAYOUT_COLUMNS}, settle_checks FROM payouts_payouts
                WHERE status = 'sent' AND (settle_check_at IS NULL OR settle_check_at <= $1)
                ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        return [(_payout(row), row["settle_checks"]) for row in rows]

    async def settlement_checks_ahead(self, next_checks: Mapping[str, datetime]) -> None:
        await self._conn.execute(
            """UPDATE payouts_payouts AS p
               SET settle_check_at = c.check_at, settle_checks = p.settle_checks + 1
               FROM unnest($1::text[], $2::timestamptz[]) AS c(payout_id, check_at)
               WHERE p.payout_id = c.payout_id AND p.status = 'sent'""",
            list(next_checks),
            list(next_checks.values()),
        )

    async def save_payouts(self, changes: Sequence[tuple[Payout, PayoutStatus]]) -> None:
        if not changes:
            return
        payouts = [p for p, _ in changes]
        updated = await self._conn.fetch(
            """UPDATE payouts_payouts AS p SET net_amount = c.net_amount,
                   net_currency = c.net_currency, fx_rate = c.fx_rate, fx_as_of = c.fx_as_of,
                   fx_source = c.fx_source, status = c.status, hold_code = c.hold_code,
                   hold_reason = c.hold_reason, failure_reason = c.failure_reason,
                   attempts = c.attempts, next_attempt_at = c.next_attempt_at,
                   provider_ref = c.provider_ref, version = c.version,
                   recovered_amount = c.recovered_amount, chapter = c.chapter,
                   in_doubt = c.in_doubt, rail = c.rail, leased = c.leased,
                   -- sent again (a retry): its rail is asked at once, as for a first send
                   settle_check_at = CASE WHEN c.status = 'sent' AND p.status <> 'sent'
                                          THEN NULL ELSE p.settle_check_at END,
                   settle_checks = CASE WHEN c.status = 'sent' AND p.status <> 'sent'
                                        THEN 0 ELSE p.settle_checks END,
                   updated_at = now()
               FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::numeric[],
                           $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                           $11::text[], $12::int[], $13::timestamptz[], $14::text[], $15::int[],
                           $16::numeric[], $17::int[], $18::boolean[], $19::text[],
                           $20::boolean[])
                   AS c(payout_id, previous, net_amount, net_currency, fx_rate, fx_as_of,
                        fx_source, status, hold_code, hold_reason, failure_reason, attempts,
                        next_attempt_at, provider_ref, version, recovered_amount, chapter,
                        in_doubt, rail, leased)
               WHERE p.payout_id = c.payout_id AND p.status = c.previous
               RETURNING p.payout_id""",
            [p.payout_id for p in payouts],
            [previous for _, previous in changes],
            [None if p.net is None else p.net.amount for p in payouts],
            [None if p.net is None else p.net.currency for p in payouts],
            [None if p.fx is None else p.fx.rate for p in payouts],
            [None if p.fx is None else p.fx.as_of for p in payouts],
            [None if p.fx is None else p.fx.source for p in payouts],
            [p.status for p in payouts],
            [None if p.hold is None else p.hold.code.value for p in payouts],
            [None if p.hold is None else p.hold.reason for p in payouts],
            [p.failure_reason for p in payouts],
            [p.attempts for p in payouts],
            [p.next_attempt_at for p in payouts],
            [p.provider_ref for p in payouts],
            [p.version for p in payouts],
            [_recovered(p) for p in payouts],
            [p.chapter for p in payouts],
            [p.in_doubt for p in payouts],
            [p.rail for p in payouts],
            [p.leased for p in payouts],
        )
        if len(updated) != len(changes):
            missing = sorted({p.payout_id for p in payouts} - {r[0] for r in updated})
            raise StaleUpdate(f"payouts changed meanwhile: {', '.join(missing[:5])}")

    async def commission_due_for_update(
        self, closed_before: datetime, final_before: datetime, limit: int
    ) -> list[DealTerms]:
        rows = await self._conn.fetch(
            """SELECT d.* FROM payouts_deals d LEFT JOIN payouts_attribution a USING (deal_id)
               WHERE d.commission_rate > 0 AND d.attribution_closes_at <= $1
                 AND (NOT d.commission_done
                      OR (d.attribution_closes_at > $2
                          AND coalesce(a.revision, 0) <> d.commission_revision))
               ORDER BY d.attribution_closes_at LIMIT $3 FOR UPDATE OF d SKIP LOCKED""",
            closed_before,
            final_before,
            limit,
        )
        return [_deal(r) for r in rows]

    async def commission_decided(self, revisions: Mapping[str, int]) -> None:
        if not revisions:
            return
        deal_ids = sorted(revisions)
        await self._conn.execute(
            """UPDATE payouts_deals AS d SET commission_done = true, commission_revision = r.rev
               FROM unnest($1::text[], $2::bigint[]) AS r (deal_id, rev)
               WHERE d.deal_id = r.deal_id""",
            deal_ids,
            [revisions[d] for d in deal_ids],
        )

    async def commission_booked(self, deal_ids: Iterable[str]) -> dict[str, list[Payout]]:
        rows = await self._conn.fetch(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts
                WHERE deal_id = ANY($1::text[]) AND kind IN ('commission', 'clawback')
                ORDER BY created_at, payout_id""",
            sorted(set(deal_ids)),
        )
        booked: dict[str, list[Payout]] = {}
        for row in rows:
            payout = _payout(row)
            booked.setdefault(payout.deal_id, []).append(payout)
        return booked

    async def post(self, transfers: Sequence[Transfer], *, wake_dispatchers: bool = False) -> None:
        if not transfers:
            if wake_dispatchers:
                await self._conn.execute("SELECT pg_notify($1, '')", DUE_CHANNEL)
            return
        funding = TransferKind.FUNDING
        postings = [(t.transfer_id, p) for t in transfers for p in t.postings]
        # One round trip: the transfers, their postings and the wake-up (NOTIFY is delivered
        # at commit). The postings' foreign key and the ledger's statement triggers run when
        # the whole statement ends, the transfers inserted.
        await self._conn.execute(
            """WITH transfers AS (
                   INSERT INTO payouts_transfers (transfer_id, payout_id, funding_id, kind)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])),
               postings AS (
                   INSERT INTO payouts_postings (transfer_id, account, amount, currency)
                   SELECT * FROM unnest($5::text[], $6::text[], $7::numeric[], $8::text[]))
               SELECT pg_notify($9, '') WHERE $10""",
            [t.transfer_id for t in transfers],
            [None if t.kind is funding else t.payout_id for t in transfers],
            [t.payout_id if t.kind is funding else None for t in transfers],
            [t.kind.value for t in transfers],
            [t for t, _ in postings],
            [p.account for _, p in postings],
            [p.amount.amount for _, p in postings],
            [p.amount.currency for _, p in postings],
            DUE_CHANNEL,
            wake_dispatchers,
        )

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        await self._queue_emails(events)
        await super().enqueue(events)

    async def _queue_emails(self, events: Sequence[CloudEvent[Any]]) -> None:
        """A `payouts_emails` row per payout status change of a creator with an address, in
        this transaction (docs/architecture.md §11); the others are counted `no_address`."""
        changes = [e for e in events if isinstance(e.data, PayoutStatusChanged)]
        if not changes:
            return
        last = await self._last_statuses([e for e in changes if e.data.status == "failed"])
        notices = []
        for event in changes:
            data = event.data
            notice = notice_of(
                event, hold_code=data.hold_code, previous_status=last.get(data.payout_id)
            )
            last[data.payout_id] = data.status
            if notice is not None:
                notices.append(notice)
        if not notices:
            return
        # One round trip: queued for the creators with an address, the others counted.
        unaddressed = await self._conn.fetchval(
            """WITH notice AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                       $5::text[], $6::numeric[], $7::text[], $8::bool[], $9::text[],
                       $10::bool[], $11::timestamptz[])
                       AS n (event_id, payout_id, creator_id, status, kind, amount, currency,
                             converted, hold_code, returned, changed_at)),
               queued AS (
                   INSERT INTO payouts_emails (event_id, payout_id, creator_id, status, kind,
                       amount, currency, converted, hold_code, returned, changed_at, not_before)
                   SELECT n.*, n.changed_at FROM notice n
                   WHERE EXISTS (SELECT 1 FROM payouts_accounts a
                                 WHERE a.creator_id = n.creator_id AND a.email IS NOT NULL)
                   ON CONFLICT (event_id) DO NOTHING)
               SELECT count(*) FROM notice n
               WHERE NOT EXISTS (SELECT 1 FROM payouts_accounts a
                                 WHERE a.creator_id = n.creator_id AND a.email IS NOT NULL)""",
            [n.event_id for n in notices],
            [n.payout_id for n in notices],
            [n.creator_id for n in notices],
            [n.status for n in notices],
            [n.kind for n in notices],
            [n.amount.amount for n in notices],
            [n.amount.currency for n in notices],
            [n.converted for n in notices],
            [n.hold_code for n in notices],
            [n.returned for n in notices],
            [n.changed_at for n in notices],
        )
        if unaddressed:
            PAYOUT_EMAILS.labels(outcome="no_address").inc(unaddressed)

    async def _last_statuses(self, failures: Sequence[CloudEvent[Any]]) -> dict[str, str]:
        """The status each of these payouts published last, from the outbox (which keeps
        every status event, keyed by deal): a failure after `sent` is a return."""
        if not failures:
            return {}
        rows = await self._conn.fetch(
            """SELECT value FROM outbox
               WHERE topic = $1 AND kafka_key = ANY($2::bytea[]) ORDER BY seq""",
            Topic.PAYOUTS_STATUS.value,
            sorted({e.data.deal_id.encode() for e in failures}),
        )
        wanted = {e.data.payout_id for e in failures}
        last: dict[str, str] = {}
        for row in rows:
            data = decode(Topic.PAYOUTS_STATUS, bytes(row["value"])).data
            if isinstance(data, PayoutStatusChanged) and data.payout_id in wanted:
                last[data.payout_id] = data.status
        return last

    async def claim_emails(self, now: datetime, lease: timedelta, limit: int) -> list[DueEmail]:
        rows = await self._conn.fetch(
            """WITH due AS (
                   SELECT event_id FROM payouts_emails
                   WHERE state = 'pending' AND not_before <= $1
                   ORDER BY not_before, changed_at, event_id LIMIT $3
                   FOR UPDATE SKIP LOCKED
               )
               , claimed AS (
                   UPDATE payouts_emails e
                   SET not_before = $2, claim_id = gen_random_uuid()::text
                   FROM due WHERE e.event_id = due.event_id
                   RETURNING e.*
               )
               SELECT c.*, a.email, a.cooling_off_until
               FROM claimed c LEFT JOIN payouts_accounts a USING (creator_id)""",
            now,
            now + lease,
            limit,
        )
        due = [
            DueEmail(
                _notice(r),
                None if r["email"] is None else SecretStr(r["email"]),
                r["claim_id"],
                r["attempts"],
                r["cooling_off_until"],
            )
            for r in rows
        ]
        return sorted(due, key=lambda d: (d.notice.changed_at, d.notice.event_id))

    async def start_email(self, event_id: str, claim_id: str, until: datetime) -> bool:
        started = await self._conn.fetchval(
            """UPDATE payouts_emails SET state = 'sending', not_before = $3,
                      attempts = attempts + 1
               WHERE event_id = $1 AND claim_id = $2 AND state = 'pending'
               RETURNING true""",
            event_id,
            claim_id,
            until,
        )
        return bool(started)

    async def end_email(
        self,
        event_id: str,
        state: EmailState,
        at: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        ended = await self._conn.fetchval(
            """UPDATE payouts_emails SET state = $2, error = $4,
                      finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $3::timestamptz END,
                      not_before = coalesce($5, not_before), claim_id = NULL
               WHERE event_id = $1 AND state IN ('sending', 'pending')
               RETURNING true""",
            event_id,
            state,
            at,
            error,
            retry_at,
        )
        return bool(ended)

    async def emails_in_doubt(self, now: datetime) -> list[Notice]:
        rows = await self._conn.fetch(
            """UPDATE payouts_emails SET state = 'unknown', finished_at = $1,
                      error = 'sender stopped while sending'
               WHERE state = 'sending' AND not_before <= $1
               RETURNING *""",
            now,
        )
        return [_notice(r) for r in rows]

    async def emails_of(self, payout_id: str) -> list[tuple[Notice, EmailState]]:
        rows = await self._conn.fetch(
            "SELECT * FROM payouts_emails WHERE payout_id = $1 ORDER BY changed_at, created_at",
            payout_id,
        )
        return [(_notice(r), r["state"]) for r in rows]

    async def payouts_of(self, creator_id: str | None = None) -> list[Payout]:
        only, args = any_of("creator_id", None if creator_id is None else [creator_id])
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts WHERE {only}
                ORDER BY created_at, payout_id""",
            *args,
        )

    async def settled_between(self, start: datetime, end: datetime) -> list[Payout]:
        return await self._payouts(
            f"""SELECT {_PAYOUT_COLUMNS} FROM payouts_payouts p
                WHERE p.status = 'settled' AND (
                    SELECT max(t.posted_at) FROM payouts_transfers t
                    WHERE t.payout_id = p.payout_id AND t.kind = 'settlement'
                ) >= $1 AND (
                    SELECT max(t.posted_at) FROM payouts_transfers t
                    WHERE t.payout_id = p.payout_id AND t.kind = 'settlement'
                ) < $2
                ORDER BY creator_id, payout_id""",
            start,
            end,
        )

    async def dated_payouts_of(self, creator_id: str) -> list[DatedPayout]:
        rows = await self._conn.fetch(
            f"""SELECT {_PAYOUT_COLUMNS}, coalesce(fx_at, created_at) AS owed_at,
                       CASE WHEN status = 'settled' THEN (
                           SELECT max(t.posted_at) FROM payouts_transfers t
                           WHERE t.payout_id = p.payout_id AND t.kind = 'settlement'
                       ) END AS settled_at
                FROM payouts_payouts p WHERE creator_id = $1
                ORDER BY owed_at, payout_id""",
            creator_id,
        )
        return [DatedPayout(_payout(r), r["owed_at"], r["settled_at"]) for r in rows]

    async def transfers(self, payout_ids: Sequence[str] | None = None) -> list[PostedTransfer]:
        only, args = any_of("t.payout_id", payout_ids)
        rows = await self._conn.fetch(
            f"""SELECT t.transfer_id, coalesce(t.payout_id, t.funding_id) AS payout_id, t.kind,
                       p.account, p.amount, p.currency
                FROM payouts_transfers t JOIN payouts_postings p USING (transfer_id)
                WHERE {only} ORDER BY p.posting_id""",
            *args,
        )
        grouped: dict[str, PostedTransfer] = {}
        for r in rows:
            posting = Posting(r["account"], Money(r["amount"], r["currency"].strip()))
            known = grouped.get(r["transfer_id"])
            postings = (*known.postings, posting) if known else (posting,)
            grouped[r["transfer_id"]] = PostedTransfer(
                r["transfer_id"], r["payout_id"], r["kind"], postings
            )
        return list(grouped.values())

    async def balances(
        self, accounts: Sequence[str] | None = None
    ) -> dict[tuple[str, str], Decimal]:
        only, args = any_of("account", accounts)
        rows = await self._conn.fetch(
            f"""SELECT account, currency, sum(amount) AS balance FROM payouts_postings
                WHERE {only} GROUP BY account, currency""",
            *args,
        )
        return {(r["account"], r["currency"].strip()): r["balance"] for r in rows}


class PostgresPayoutsStore(ServiceStore[PostgresPayoutsTransaction]):
    """`PayoutsStore` over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, consumer: str = CONSUMER) -> None:
        super().__init__(pool, PostgresPayoutsTransaction, consumer)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PostgresPayoutsTransaction]:
        # READ COMMITTED (the default) takes a new snapshot for each statement.
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield PostgresPayoutsTransaction(conn, self._consumer)

    async def seal_plain_destinations(
        self, seal: Callable[[str, SecretStr], SealedDestination]
    ) -> int:
        """Encrypt the destinations stored in plain text before migration 0301 and clear them;
        returns how many. Safe to run from several instances at once (row locks)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT creator_id, destination_token FROM payouts_accounts
                   WHERE destination_sealed IS NULL FOR UPDATE"""
            )
            await conn.executemany(
                """UPDATE payouts_accounts SET destination_sealed = $2, destination_token = NULL
                   WHERE creator_id = $1""",
                [
                    (r["creator_id"], seal(r["creator_id"], SecretStr(r["destination_token"])).data)
                    for r in rows
                ],
            )
        return len(rows)

    async def destination_key_ids(self) -> list[bytes]:
        """The ids of the keys the stored destinations are sealed with (migration 0308)."""
        rows = await self._pool.fetch(
            """SELECT DISTINCT destination_key_id FROM payouts_accounts
               WHERE destination_key_id IS NOT NULL"""
        )
        return [bytes(r["destination_key_id"]) for r in rows]

    async def destinations_not_under(self, key_id: bytes) -> int:
        """How many stored destinations are sealed with another key than `key_id`."""
        return int(
            await self._pool.fetchval(
                "SELECT count(*) FROM payouts_accounts WHERE destination_key_id <> $1", key_id
            )
        )

    async def reseal_destinations(
        self,
        key_id: bytes,
        reseal: Callable[[str, SealedDestination], SealedDestination],
        batch: int,
    ) -> int:
        """Seal again, with `reseal`, up to `batch` destinations sealed with another key than
        `key_id`, in one short transaction; returns how many. Rows another transaction holds
        (an account being updated) are skipped and found by a later batch, so this runs
        beside the service and beside other runs of itself."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT creator_id, destination_sealed FROM payouts_accounts
                   WHERE destination_key_id <> $1
                   ORDER BY creator_id LIMIT $2 FOR UPDATE SKIP LOCKED""",
                key_id,
                batch,
            )
            changed = []
            for r in rows:
                # The fingerprint is keyed too: it moves to the new key with the destination.
                new = reseal(r["creator_id"], SealedDestination(bytes(r["destination_sealed"])))
                changed.append((r["creator_id"], new.data, new.fingerprint))
            await conn.executemany(
                """UPDATE payouts_accounts SET destination_sealed = $2,
                          destination_fingerprint = $3
                   WHERE creator_id = $1""",
                changed,
            )
        return len(rows)

    async def listen_due(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever any instance commits newly scheduled payouts; runs until
        cancelled (holds one pooled connection)."""

        def on_notify(*_: object) -> None:
            wake()

        ended = asyncio.Event()
        async with session_connection(self._pool) as conn:
            await conn.add_listener(DUE_CHANNEL, on_notify)
            conn.add_termination_listener(lambda _: ended.set())
            try:
                await ended.wait()
            finally:
                with contextlib.suppress(asyncpg.InterfaceError):
                    await conn.remove_listener(DUE_CHANNEL, on_notify)
        # The server ended the session (a restart): listen again on a new one, with a
        # round now for what was notified meanwhile.
        wake()
        raise ConnectionResetError("the connection listening for due payouts was closed")
