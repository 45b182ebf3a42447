"""PostgreSQL rows of the tracking tables <-> tracking's domain values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from services.tracking.domain.attribution import DealAttribution, Engagement, Performance, Ratios
from services.tracking.domain.campaigns import CampaignAttribution, CurrencyTotals
from services.tracking.domain.credit import Click, Model, ModelSetting
from services.tracking.domain.deals import Cancellation, DealTerms, DeliverableSpec
from services.tracking.domain.leaks import (
    CodeJudgement,
    Evidence,
    LeakedOrders,
    LeakOrder,
    LeakRule,
    LeakTotals,
    kept_referrer,
)
from services.tracking.domain.orders import (
    Credit,
    FxUsed,
    Order,
    OrderOutcome,
    OrderReason,
    OrderStatus,
)
from services.tracking.domain.posts import PostSnapshot
from shared.contract.money import FxSnapshot, Money

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Columns = TypeVar("Columns", bound="DataclassInstance")


def terms_digest(deal: DealTerms) -> str:
    """A fingerprint of what the deal says (not of when it was announced)."""
    canonical = _stated_terms(deal, str(deal.commission_rate.normalize()))
    if deal.audience_countries:
        # Only when given, so deals stored before audience countries keep their digest.
        canonical["audience_countries"] = list(deal.audience_countries)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _stated_terms(deal: DealTerms, commission_rate: str) -> dict[str, Any]:
    """What the deal says, as JSON values, with its commission rate written `commission_rate`."""
    return {
        "deal_id": deal.deal_id,
        "campaign_id": deal.campaign_id,
        "brand_id": deal.brand_id,
        "creator_id": deal.creator_id,
        "fee": [str(deal.fee.amount), deal.fee.currency],
        "commission_rate": commission_rate,
        "promo_codes": list(deal.promo_codes),
        "deliverables": deliverables_json(deal.deliverables),
        "required_tags": list(deal.required_tags),
        "starts_at": deal.starts_at.isoformat(),
        "ends_at": deal.ends_at.isoformat(),
        "attribution_window_days": deal.attribution_window_days,
    }


def deliverables_json(deliverables: Sequence[DeliverableSpec]) -> list[dict[str, Any]]:
    return [
        {
            "deliverable_id": d.deliverable_id,
            "kind": d.kind,
            "count": d.count,
            "due_by": d.due_by.isoformat(),
        }
        for d in deliverables
    ]


def deliverables_from(items: Sequence[dict[str, Any]]) -> tuple[DeliverableSpec, ...]:
    """The deliverables `deliverables_json` wrote."""
    return tuple(
        DeliverableSpec(
            d["deliverable_id"], d["kind"], d["count"], datetime.fromisoformat(d["due_by"])
        )
        for d in items
    )


# Parsed deals by (deal_id, terms_digest, signed_at, version, cancelled_at): those columns
# fix every field of DealTerms (the digest is the signed version's; the first received of
# each later version is kept), so an entry can never go stale; bounded because deals are few.
_DEALS: dict[tuple[str, str, datetime, int, datetime | None], DealTerms] = {}
_DEAL_CACHE_LIMIT = 100_000


def deal_from(row: asyncpg.Record) -> DealTerms:
    key = (
        row["deal_id"],
        row["terms_digest"],
        row["signed_at"],
        row.get("version", 1),
        row.get("cancelled_at"),
    )
    deal = _DEALS.get(key)
    if deal is None:
        if len(_DEALS) >= _DEAL_CACHE_LIMIT:
            _DEALS.clear()
        deal = _DEALS[key] = _parse_deal(row)
    return deal


def _parse_deal(row: asyncpg.Record) -> DealTerms:
    return DealTerms(
        deal_id=row["deal_id"],
        campaign_id=row["campaign_id"],
        brand_id=row["brand_id"],
        creator_id=row["creator_id"],
        fee=Money(row["fee_amount"], row["currency"]),
        commission_rate=row["commission_rate"],
        promo_codes=tuple(row["promo_codes"]),
        deliverables=deliverables_from(json.loads(row["deliverables"])),
        required_tags=tuple(row["required_tags"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        attribution_window_days=row["attribution_window_days"],
        signed_at=row["signed_at"],
        audience_countries=tuple(row["audience_countries"]),
        version=row.get("version", 1),
        cancelled_at=row.get("cancelled_at"),
    )


def deal_json(deal: DealTerms) -> str:
    """A version of a deal's terms as kept in tracking_deal_versions."""
    return json.dumps(
        {
            **_stated_terms(deal, str(deal.commission_rate)),
            "signed_at": deal.signed_at.isoformat(),
            "audience_countries": list(deal.audience_countries),
            "version": deal.version,
            "sent_at": None if deal.sent_at is None else deal.sent_at.isoformat(),
        }
    )


def deal_from_json(text: str) -> DealTerms:
    d = json.loads(text)
    return DealTerms(
        deal_id=d["deal_id"],
        campaign_id=d["campaign_id"],
        brand_id=d["brand_id"],
        creator_id=d["creator_id"],
        fee=Money(Decimal(d["fee"][0]), d["fee"][1]),
        commission_rate=Decimal(d["commission_rate"]),
        promo_codes=tuple(d["promo_codes"]),
        deliverables=deliverables_from(d["deliverables"]),
        required_tags=tuple(d["required_tags"]),
        starts_at=datetime.fromisoformat(d["starts_at"]),
        ends_at=datetime.fromisoformat(d["ends_at"]),
        attribution_window_days=d["attribution_window_days"],
        signed_at=datetime.fromisoformat(d["signed_at"]),
        audience_countries=tuple(d["audience_countries"]),
        version=d["version"],
        sent_at=None if d["sent_at"] is None else datetime.fromisoformat(d["sent_at"]),
    )


def cancellation_from(row: asyncpg.Record) -> Cancellation:
    return Cancellation(row["deal_id"], row["brand_id"], row["cancelled_at"])


def post_from(row: asyncpg.Record) -> PostSnapshot:
    return _same_named(PostSnapshot, row, tags=frozenset(json.loads(row["tags"])))


def order_from(row: asyncpg.Record) -> Order:
    return Order(
        row["order_id"],
        row["promo_code"],
        Money(row["amount"], row["currency"]),
        row["occurred_at"],
        row["brand_id"],
        row["visitor_id"],
        row["click_id"],
        row["shipping_country"],
        kept_referrer(row["referrer"]),
    )


def click_from(row: asyncpg.Record) -> Click:
    return Click(
        row["click_id"], row["deal_id"], row["visitor_id"], row["clicked_at"], row["brand_id"]
    )


def setting_from(row: asyncpg.Record) -> ModelSetting:
    return _same_named(
        ModelSetting,
        row,
        model=Model(row["model"]),
        leaked_orders=LeakedOrders(row["leaked_orders"]),
    )


def credit_from(row: asyncpg.Record) -> Credit:
    return Credit(
        row["deal_id"],
        Money(row["revenue"], row["currency"]),
        Money(row["refunded"], row["currency"]),
    )


def outcome_from(row: asyncpg.Record, credits: tuple[Credit, ...] = ()) -> OrderOutcome | None:
    if not row["evaluated"]:
        return None
    deal_currency = row["deal_currency"]
    attributed = row["status"] == OrderStatus.ATTRIBUTED
    return OrderOutcome(
        order_id=row["order_id"],
        status=OrderStatus(row["status"]),
        reason=None if row["reason"] is None else OrderReason(row["reason"]),
        deal_id=row["deal_id"],
        revenue=Money(row["revenue"], deal_currency) if attributed else None,
        refunded=Money(row["refunded"], deal_currency) if attributed else None,
        refunded_source=Money(row["refunded_source"], row["currency"]),
        fully_refunded=row["fully_refunded"],
        fx=FxUsed(row["fx_rate"], row["fx_as_of"], row["fx_source"]) if attributed else None,
        last_refund_at=row["last_refund_at"],
        credits=credits if attributed else (),
        model=Model(row["model"]),
    )


def snapshot_from(
    row: asyncpg.Record, cache: dict[tuple[Any, ...], FxSnapshot]
) -> FxSnapshot | None:
    if row["fx_base"] is None:
        return None
    key = (row["fx_base"], row["fx_snapshot_as_of"], row["fx_snapshot_source"])
    snapshot = cache.get(key)
    if snapshot is None:
        rates = {code: Decimal(rate) for code, rate in json.loads(row["fx_rates"]).items()}
        snapshot = FxSnapshot(
            base=row["fx_base"].strip(),
            rates=rates,
            as_of=row["fx_snapshot_as_of"],
            source=row["fx_snapshot_source"],
        )
        cache[key] = snapshot
    return snapshot


def _same_named(kind: type[Columns], row: asyncpg.Record, **given: Any) -> Columns:
    """A `kind` each of whose fields is the row's column of the same name, but for those
    `given` (columns stored in another form than the field's)."""
    return kind(**{f.name: given[f.name] if f.name in given else row[f.name] for f in fields(kind)})


def performance_from(row: asyncpg.Record) -> Performance:
    """The engagement and money columns a deal's attribution and a campaign's totals share."""
    currency = row["currency"]
    return Performance(
        engagement=_same_named(Engagement, row),
        orders=row["orders"],
        revenue=Money(row["revenue"], currency),
        spend=Money(row["spend"], currency),
        pending_fx_orders=row["pending_fx_orders"],
        as_of=row["as_of"],
    )


def attribution_from(row: asyncpg.Record) -> DealAttribution:
    performance = performance_from(row)
    ratios = _same_named(Ratios, row)
    return DealAttribution(
        row["deal_id"],
        row["campaign_id"],
        row["creator_id"],
        performance,
        ratios,
        Model(row["attribution_model"]),
        row["model_setting_id"],
        LeakTotals(
            row["leak_suspected"],
            row["suspected_orders"],
            row["withheld_orders"],
            row["withheld_revenue"],
        ),
    )


def leak_order_from(row: asyncpg.Record) -> LeakOrder:
    return LeakOrder(
        row["order_id"],
        row["occurred_at"],
        row["shipping_country"],
        kept_referrer(row["referrer"]),
        row["promo_code"],
    )


def judgement_json(judgement: CodeJudgement) -> str:
    """A code's judgement as the JSON of tracking_leak_codes.judgement."""
    at, order_id = judgement.through
    return json.dumps(
        {
            "through": [at.isoformat(), order_id],
            "inputs": judgement.inputs,
            "reach": judgement.reach,
            "peak": judgement.peak,
            "tallies": list(judgement.tallies),
            "evidence": [
                {
                    "rule": e.rule.value,
                    "order_id": e.order_id,
                    "fired_at": e.fired_at.isoformat(),
                    "window_start": e.window_start.isoformat(),
                    "window_end": e.window_end.isoformat(),
                    "orders": e.orders,
                    "considered": e.considered,
                    "share": str(e.share),
                    "threshold": str(e.threshold),
                    "reach": e.reach,
                }
                for e in judgement.evidence
            ],
        }
    )


def judgement_from(text: str) -> CodeJudgement:
    data = json.loads(text)
    at, order_id = data["through"]
    return CodeJudgement(
        (datetime.fromisoformat(at), order_id),
        data["inputs"],
        data["reach"],
        tuple(
            Evidence(
                LeakRule(e["rule"]),
                e["order_id"],
                datetime.fromisoformat(e["fired_at"]),
                datetime.fromisoformat(e["window_start"]),
                datetime.fromisoformat(e["window_end"]),
                e["orders"],
                e["considered"],
                Decimal(e["share"]),
                Decimal(e["threshold"]),
                e["reach"],
            )
            for e in data["evidence"]
        ),
        data["peak"],
        (*data["tallies"],),
    )


def campaign_totals_from(row: asyncpg.Record) -> CurrencyTotals:
    """One row of queries.CAMPAIGN_TOTALS."""
    performance = performance_from(row)
    fees = Money(row["fees"], row["currency"])
    return CurrencyTotals(row["deals"], fees, performance)


def campaign_figures(campaign: CampaignAttribution) -> str:
    """The figures of a campaign's attribution (all but its sequence) as canonical JSON: what
    tells whether they changed."""
    return json.dumps(_plain(campaign), sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, Money):
        return [str(value.amount), value.currency]
    if isinstance(value, Decimal):
        return str(value.normalize()) if value else "0"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name != "sequence"
        }
    return value
