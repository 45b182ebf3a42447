"""The contract and payouts' domain, each way: wire payloads in (`shared.contract.events`) to
domain values, payouts out to `payout.*` status events. Domain code never sees a wire model
(docs/architecture.md §9)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from pydantic import SecretStr

from services.payouts.domain.accounts import (
    PayoutAccount,
    RawDestination,
    SealedDestination,
    looks_like_account_number,
)
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.commission import AttributedRevenue
from services.payouts.domain.escrow import Funding
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.terms import (
    Cancellation,
    Confirmation,
    DealTerms,
    DeliverableTerm,
    FeeSchedule,
)
from shared.contract.events import (
    AttributionUpdated,
    BrandFunded,
    CloudEvent,
    DealAmended,
    DealCancelled,
    DealSigned,
    DeliverableConfirmed,
    FxRatesPublished,
    PayoutAccountUpserted,
    PayoutStatusChanged,
    make_event,
)
from shared.contract.events.deals import cancellation_time
from shared.contract.money import FxSnapshot
from shared.runtime.fx_store import snapshot_from_event

SOURCE: Final = "creatorflow/payouts"
# A status event's reason is cut to this many characters (a rail's message can be long).
_REASON_LIMIT: Final = 200

Seal = Callable[[str, SecretStr], SealedDestination]
"""Encrypts a creator's (creator_id, destination) (services/payouts/destinations.py)."""


def deal_terms(
    data: DealSigned, fee_schedule: FeeSchedule, sent_at: datetime | None = None
) -> DealTerms:
    """What payouts keeps of a signed (version 1) or amended deal, under the fee schedule in
    force now; `sent_at` is the event's time."""
    return DealTerms(
        deal_id=data.deal_id,
        campaign_id=data.campaign_id,
        brand_id=data.brand_id,
        creator_id=data.creator_id,
        fee=data.fee,
        commission_rate=data.commission_rate,
        deliverables=tuple(DeliverableTerm(d.deliverable_id, d.count) for d in data.deliverables),
        ends_at=data.ends_at,
        attribution_window_days=data.attribution_window_days,
        fee_schedule=fee_schedule,
        version=data.version if isinstance(data, DealAmended) else 1,
        sent_at=sent_at,
    )


def cancellation(
    data: DealCancelled, sent_at: datetime, not_before: datetime | None = None
) -> Cancellation:
    """A cancellation: the deal ends at the event's time, no earlier than `not_before`
    (contract: cancellation_time)."""
    ended = cancellation_time(sent_at, not_before)
    return Cancellation(data.deal_id, data.brand_id, ended, data.reason)


def confirmation(data: DeliverableConfirmed, signed_by: str | None) -> Confirmation:
    """A confirmation and the brand that signed it (None: unsigned or signed by a service)."""
    return Confirmation(
        deal_id=data.deal_id,
        deliverable_id=data.deliverable_id,
        confirmed_by=data.confirmed_by,
        confirmed_at=data.confirmed_at,
        signed_by=signed_by or "",
        post_received_at=data.post_received_at,
    )


def payout_account(data: PayoutAccountUpserted, updated_at: datetime, seal: Seal) -> PayoutAccount:
    """The account in `data` with its destinations sealed; raises RawDestination (without
    echoing it) if a destination is untokenised."""
    destinations = [data.destination] + ([data.fallback.destination] if data.fallback else [])
    if any(looks_like_account_number(d.get_secret_value()) for d in destinations):
        raise RawDestination(
            f"creator {data.creator_id}: destination looks like a raw account number; "
            "send the payment provider's token for the account instead"
        )
    return PayoutAccount(
        creator_id=data.creator_id,
        method=data.method,
        destination=seal(data.creator_id, data.destination),
        currency=data.currency,
        tax_form_type=data.tax_form.type,
        tax_form_status=data.tax_form.status,
        updated_at=updated_at,
        fallback_method=data.fallback.method if data.fallback else None,
        fallback_destination=(
            seal(data.creator_id, data.fallback.destination) if data.fallback else None
        ),
        email=None if data.email is None else data.email.get_secret_value(),
    )


def funding(data: BrandFunded) -> Funding:
    return Funding(data.funding_id, data.brand_id, data.amount, data.funded_at)


def attributed_revenue(data: AttributionUpdated) -> AttributedRevenue:
    return AttributedRevenue(
        data.deal_id, data.revenue, data.as_of, attribution_figures(data), data.sequence
    )


def attribution_figures(data: AttributionUpdated) -> AttributionFigures:
    """What a brand is shown of the update (services/payouts/brand_api/)."""
    return AttributionFigures(
        as_of=data.as_of,
        posts=data.posts,
        likes=data.likes,
        comments=data.comments,
        shares=data.shares,
        views=data.views,
        impressions=data.impressions,
        reach=data.reach,
        orders=data.orders,
        revenue=data.revenue,
        spend=data.spend,
        engagement_rate=data.engagement_rate,
        cpm=data.cpm,
        cpe=data.cpe,
        cpa=data.cpa,
        roas=data.roas,
        roi_pct=data.roi_pct,
        saves=data.saves,
        attribution_model=data.attribution_model,
        leak_suspected=data.leak_suspected,
        suspected_orders=data.suspected_orders,
        withheld_orders=data.withheld_orders,
        withheld_revenue=data.withheld_revenue,
    )


def fx_snapshot(data: FxRatesPublished) -> FxSnapshot:
    return snapshot_from_event(data)


def status_data(payout: Payout) -> PayoutStatusChanged:
    """The `payouts.status` payload for the payout's current status.

    Until converted (a held payout), `net` and `fx_rate` are absent: the creator's currency or
    the rate is not known yet.
    """
    held = payout.status == "held" and payout.hold is not None
    reason = payout.hold.reason if held and payout.hold else payout.failure_reason
    return PayoutStatusChanged(
        payout_id=payout.payout_id,
        deal_id=payout.deal_id,
        creator_id=payout.creator_id,
        gross=payout.gross,
        fx_rate=payout.fx.rate if payout.fx else None,
        net=payout.net,
        status=payout.status,
        reason=reason[:_REASON_LIMIT] if reason else None,
        hold_code=payout.hold.code.value if held and payout.hold else None,
        provider_ref=payout.provider_ref,
        kind=payout.kind,
        platform_fee=payout.platform_fee,
        fx_as_of=payout.fx.as_of if payout.fx else None,
        fx_source=payout.fx.source if payout.fx else None,
        recovered=payout.recovered,
    )


def status_event(payout: Payout, now: datetime) -> CloudEvent[Any]:
    """The payout's status event; its id names the payout's version, so a replayed step
    publishes the same event again."""
    return make_event(status_data(payout), source=SOURCE, id=payout.event_id(), time=now)
