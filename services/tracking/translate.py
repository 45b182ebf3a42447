"""Translation between v1 events and tracking's domain values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from services.tracking.domain.attribution import DealAttribution
from services.tracking.domain.campaigns import CampaignAttribution
from services.tracking.domain.credit import Click, Model, ModelSetting
from services.tracking.domain.deals import Cancellation, DealTerms, DeliverableSpec
from services.tracking.domain.deliverables import Confirmation
from services.tracking.domain.leaks import (
    CodeVerdict,
    Evidence,
    LeakedOrders,
    LeakRule,
    LeakThresholds,
    kept_referrer,
)
from services.tracking.domain.orders import Order, Refund
from services.tracking.domain.posts import PostSnapshot, tags_carried
from shared.contract.errors import EventRejected
from shared.contract.events import (
    AttributionModelSet,
    AttributionUpdated,
    CampaignAttributionUpdated,
    CampaignCurrencyTotals,
    CampaignFx,
    CloudEvent,
    DealAmended,
    DealCancelled,
    DealSigned,
    DeliverableConfirmed,
    EventIdentity,
    EventType,
    FxRatesPublished,
    LeakEvidence,
    LinkClicked,
    OrderRedeemed,
    OrderRefunded,
    PostMetricsObserved,
    PromoCodeLeakSuspected,
    envelope_for,
    make_event,
)
from shared.contract.events.deals import cancellation_time
from shared.contract.events.envelope import JSON_CONTENT_TYPE, SPEC_VERSION
from shared.contract.money import FxSnapshot, Money
from shared.runtime.fx_store import snapshot_from_event

SOURCE: Final = "creatorflow/tracking"
_ATTRIBUTION_ENVELOPE: Final = envelope_for(AttributionUpdated)
_CONFIRMATION_IDS: Final = uuid.UUID("5b0c7f3e-2d41-4c59-9a55-7f0e3c1d2a64")
_LEAK_ALERT_IDS: Final = uuid.UUID("1f6b3c52-8d0e-4a7b-b1f4-3e9a6c2d5b80")
_CAMPAIGN_IDS: Final = uuid.UUID("8e2d4a17-6c3b-4f90-a5d2-0b7e9c1f3a48")
_ATTRIBUTION_IDS: Final = uuid.UUID("3c7a9e21-5b4d-4e18-8f06-d2a1b7c4e953")

T = TypeVar("T")


def deal_terms(event: CloudEvent[Any]) -> DealTerms:
    data: DealSigned = event.data
    return DealTerms(
        deal_id=data.deal_id,
        campaign_id=data.campaign_id,
        brand_id=data.brand_id,
        creator_id=data.creator_id,
        fee=data.fee,
        commission_rate=data.commission_rate,
        promo_codes=tuple(data.promo_codes),
        deliverables=tuple(
            DeliverableSpec(d.deliverable_id, d.kind, d.count, d.due_by) for d in data.deliverables
        ),
        required_tags=tuple(data.required_tags),
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        attribution_window_days=data.attribution_window_days,
        signed_at=event.time,
        audience_countries=tuple(data.audience_countries or ()),
        # An amendment's own time; a signed deal's is `signed_at`.
        version=data.version if isinstance(data, DealAmended) else 1,
        sent_at=event.time if isinstance(data, DealAmended) else None,
    )


def post_snapshot(event: CloudEvent[Any]) -> PostSnapshot:
    data: PostMetricsObserved = event.data
    return PostSnapshot(
        post_id=data.post_id,
        creator_id=data.creator_id,
        platform=data.platform,
        kind=data.kind,
        deal_id=data.deal_id,
        tags=tags_carried(data.tags, data.caption),
        posted_at=data.posted_at,
        observed_at=data.observed_at,
        event_id=event.id,
        likes=data.likes,
        comments=data.comments,
        shares=data.shares,
        saves=data.saves,
        views=data.views,
        impressions=data.impressions,
        reach=data.reach,
        followers=data.followers,
    )


@dataclass
class BatchInputs:
    """A batch's new events sorted by kind, deduplicated on their business keys:
    one deal per deal_id, one order per order_id, one click per click_id (a second one with
    other details is refused), refunds by (order_id, occurred_at, amount), manual
    confirmations by (deal_id, deliverable_id, the brand that signed)."""

    deals: dict[str, DealTerms] = field(default_factory=dict)
    posts: list[PostSnapshot] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: set[Refund] = field(default_factory=set)
    fx: list[tuple[FxSnapshot, str]] = field(default_factory=list)
    # Keyed (deal_id, deliverable_id, signer): the brand that signed, '' if none did.
    confirmations: dict[tuple[str, str, str], Confirmation] = field(default_factory=dict)
    # One click per click_id; every model setting (the store keeps the newest per campaign
    # and brand).
    clicks: dict[str, Click] = field(default_factory=dict)
    models: list[ModelSetting] = field(default_factory=list)
    # Every amendment (a deal's later version, sent at `sent_at`) and cancellation: the store
    # keeps them all, and the terms in force follow from all of them.
    amendments: list[DealTerms] = field(default_factory=list)
    cancellations: list[Cancellation] = field(default_factory=list)


def read_inputs(
    events: Iterable[CloudEvent[Any]],
    brand_signers: Mapping[EventIdentity, str] | None = None,
    shop_brands: Mapping[EventIdentity, str] | None = None,
    not_before: Mapping[EventIdentity, datetime] | None = None,
) -> BatchInputs:
    """Sort events into BatchInputs; other event types are ignored. `brand_signers` names
    the brand that signed each event a brand signed; `shop_brands` the brand of the shop
    that signed an order, refund or click, where its key sells for one brand only
    (shared.runtime.trust): one that names no brand is that brand's. A cancellation ends its
    deal no earlier than its event's `not_before` (contract: cancellation_time).

    Raises EventRejected when one deal_id arrives with two different sets of terms, or one
    order_id or click_id with two different orders or clicks.
    """
    inputs = BatchInputs()
    shops = shop_brands or {}
    for event in events:
        kind, shop = event.type, shops.get(event.identity)
        if kind == EventType.DEAL_SIGNED:
            _add_deal(inputs, deal_terms(event))
        elif kind == EventType.DEAL_AMENDED:
            inputs.amendments.append(deal_terms(event))
        elif kind == EventType.DEAL_CANCELLED:
            ended: DealCancelled = event.data
            at = cancellation_time(event.time, (not_before or {}).get(event.identity))
            inputs.cancellations.append(Cancellation(ended.deal_id, ended.brand_id, at))
        elif kind == EventType.POST_METRICS_OBSERVED:
            inputs.posts.append(post_snapshot(event))
        elif kind == EventType.ORDER_REDEEMED:
            order = order_of(event.data, shop)
            _once(inputs.orders, order.order_id, order, conflicting_order)
        elif kind == EventType.LINK_CLICKED:
            click = click_of(event.data, shop)
            _once(inputs.clicks, click.click_id, click, conflicting_click)
        elif kind == EventType.ATTRIBUTION_MODEL_SET:
            inputs.models.append(model_setting(event))
        elif kind == EventType.ORDER_REFUNDED:
            inputs.refunds.add(refund_of(event.data, shop))
        elif kind == EventType.FX_RATES_PUBLISHED:
            rates: FxRatesPublished = event.data
            inputs.fx.append((snapshot_from_event(rates), event.id))
        elif kind == EventType.DELIVERABLE_CONFIRMED:
            signer = "" if brand_signers is None else brand_signers.get(event.identity, "")
            _add_confirmation(inputs, event.data, signer)
    return inputs


def _add_deal(inputs: BatchInputs, terms: DealTerms) -> None:
    """Keep one set of terms per deal (the earliest signed of equal ones); two different
    sets under one deal id are refused."""
    known = inputs.deals.get(terms.deal_id)
    if known is None:
        inputs.deals[terms.deal_id] = terms
    elif not known.same_terms(terms):
        raise EventRejected(conflicting_terms(terms.deal_id))
    elif terms.signed_at < known.signed_at:
        inputs.deals[terms.deal_id] = terms


def _add_confirmation(inputs: BatchInputs, confirmed: DeliverableConfirmed, signer: str) -> None:
    """Keep the first confirmation of each (deal, deliverable) by each signer ('' if none)."""
    inputs.confirmations.setdefault(
        (confirmed.deal_id, confirmed.deliverable_id, signer),
        Confirmation(
            confirmed.deal_id,
            confirmed.deliverable_id,
            () if confirmed.post_id is None else (confirmed.post_id,),
            confirmed.confirmed_by,
            confirmed.confirmed_at,
        ),
    )


def click_of(clicked: LinkClicked, shop_brand: str | None = None) -> Click:
    """A click as tracking keeps it; `shop_brand` its one-brand shop's brand, if it names none."""
    return Click(
        clicked.click_id,
        clicked.deal_id,
        clicked.visitor_id,
        clicked.clicked_at,
        clicked.brand_id or shop_brand,
    )


def refund_of(refunded: OrderRefunded, shop_brand: str | None = None) -> Refund:
    """A refund as tracking keeps it; `shop_brand` as for `click_of`."""
    return Refund(
        refunded.order_id,
        refunded.amount,
        refunded.occurred_at,
        refunded.brand_id or shop_brand,
    )


def order_of(paid: OrderRedeemed, shop_brand: str | None = None) -> Order:
    """An order as tracking keeps it; `shop_brand` as for `click_of`."""
    return Order(
        paid.order_id,
        paid.promo_code,
        paid.amount,
        paid.occurred_at,
        paid.brand_id or shop_brand,
        paid.visitor_id,
        paid.click_id,
        paid.shipping_country,
        kept_referrer(paid.referrer),
    )


def model_setting(event: CloudEvent[Any]) -> ModelSetting:
    data: AttributionModelSet = event.data
    return ModelSetting(
        campaign_id=data.campaign_id,
        brand_id=data.brand_id,
        model=Model(data.model),
        lookback_days=data.lookback_days,
        half_life_days=data.half_life_days,
        set_at=event.time,
        event_id=event.id,
        leaked_orders=LeakedOrders(data.leaked_orders),
    )


def _once(kept: dict[str, T], key: str, value: T, conflict: Callable[[str], str]) -> None:
    """Keep `value` under `key`; the same again is a duplicate, another is refused."""
    if kept.setdefault(key, value) != value:
        raise EventRejected(conflict(key))


def conflicting_order(order_id: str) -> str:
    # Which of two orders under one id arrives first is up to the partitions: the second
    # must not silently replace, or be replaced by, the first.
    return (
        f"order.redeemed {order_id!r} was already received with other details: an order id "
        "names one order; send each order under an id of its own"
    )


def conflicting_click(click_id: str) -> str:
    return (
        f"link.clicked {click_id!r} was already received with another deal, visitor or time: "
        "a click id names one click; send each click under an id of its own"
    )


def conflicting_terms(deal_id: str) -> str:
    return (
        f"deal.signed {deal_id!r} was already received with different terms: send "
        "deal.amended with a higher version to change your deal's terms; a deal id names one "
        "deal of one brand, so choose ids of your own (your brand id as a prefix)"
    )


def attribution_event(attribution: DealAttribution, *, now: datetime) -> CloudEvent[Any]:
    """`attribution.updated` for one deal, stamped `now`. Its id derives from (deal,
    sequence): each published version has one id (a random one before it is numbered).

    Built without re-validation: every id in it was validated when its input was consumed
    and the figures come from the domain's exact arithmetic. Validating ~1,000 of these per
    batch would cost more than the rest of the batch; the unit tests decode what is built
    here with the consumers' own codec.
    """
    performance, ratios = attribution.performance, attribution.ratios
    engagement = performance.engagement
    assert performance.as_of is not None
    data = AttributionUpdated.model_construct(
        deal_id=attribution.deal_id,
        campaign_id=attribution.campaign_id,
        creator_id=attribution.creator_id,
        posts=engagement.posts,
        likes=engagement.likes,
        comments=engagement.comments,
        shares=engagement.shares,
        views=engagement.views,
        impressions=engagement.impressions,
        reach=engagement.reach,
        engagement_rate=ratios.engagement_rate,
        orders=performance.orders,
        revenue=performance.revenue,
        spend=performance.spend,
        cpm=ratios.cpm,
        cpe=ratios.cpe,
        cpa=ratios.cpa,
        roas=ratios.roas,
        roi_pct=ratios.roi_pct,
        saves=engagement.saves,
        as_of=performance.as_of,
        attribution_model=attribution.model.value,
        leak_suspected=attribution.leaks.suspected,
        suspected_orders=attribution.leaks.suspected_orders,
        withheld_orders=attribution.leaks.withheld_orders,
        withheld_revenue=Money(attribution.leaks.withheld_revenue, performance.revenue.currency),
        sequence=attribution.sequence,
    )
    sequence = attribution.sequence
    named = f"{attribution.deal_id}/{sequence}"
    return _ATTRIBUTION_ENVELOPE.model_construct(
        specversion=SPEC_VERSION,
        id=str(uuid.uuid4() if sequence is None else uuid.uuid5(_ATTRIBUTION_IDS, named)),
        source=SOURCE,
        type=EventType.ATTRIBUTION_UPDATED.value,
        time=now,
        subject=attribution.deal_id,
        datacontenttype=JSON_CONTENT_TYPE,
        data=data,
    )


def campaign_attribution_event(campaign: CampaignAttribution, *, now: datetime) -> CloudEvent[Any]:
    """`campaign.attribution.updated` for one campaign, stamped `now`. Its id derives from
    (campaign, brand, sequence): each published version has one id. At most one per
    campaign per batch, so it is validated like any event."""
    engagement, ratios, reporting = campaign.engagement, campaign.ratios, campaign.reporting
    fx = campaign.fx
    return _derived_event(
        _CAMPAIGN_IDS,
        f"{campaign.campaign_id}/{campaign.brand_id}/{campaign.sequence}",
        CampaignAttributionUpdated(
            campaign_id=campaign.campaign_id,
            brand_id=campaign.brand_id,
            sequence=campaign.sequence,
            deals=campaign.deals,
            posts=engagement.posts,
            likes=engagement.likes,
            comments=engagement.comments,
            shares=engagement.shares,
            saves=engagement.saves,
            engagements=engagement.engagements,
            views=engagement.views,
            impressions=engagement.impressions,
            reach=engagement.reach,
            engagement_rate=ratios.engagement_rate,
            orders=sum(t.performance.orders for t in campaign.totals),
            pending_fx_orders=sum(t.performance.pending_fx_orders for t in campaign.totals),
            totals=tuple(
                CampaignCurrencyTotals(
                    deals=t.deals,
                    orders=t.performance.orders,
                    pending_fx_orders=t.performance.pending_fx_orders,
                    revenue=t.performance.revenue,
                    fees=t.fees,
                    spend=t.performance.spend,
                )
                for t in campaign.totals
            ),
            reporting_currency=campaign.reporting_currency,
            fx_pending=campaign.fx_pending,
            revenue=None if reporting is None else reporting.revenue,
            fees=campaign.reporting_fees,
            spend=None if reporting is None else reporting.spend,
            fx=None
            if fx is None
            else CampaignFx(as_of=fx.as_of, source=fx.source, rates=dict(fx.rates)),
            cpm=ratios.cpm,
            cpe=ratios.cpe,
            cpa=ratios.cpa,
            roas=ratios.roas,
            roi_pct=ratios.roi_pct,
            unattributed_orders=campaign.unattributed.orders,
            unattributed_revenue=campaign.unattributed.revenue,
            as_of=campaign.as_of,
        ),
        time=now,
    )


def confirmation_event(confirmation: Confirmation) -> CloudEvent[Any]:
    """`deliverable.confirmed`; its id derives from (deal_id, deliverable_id), so a
    deliverable can only ever be announced under one id."""
    return _derived_event(
        _CONFIRMATION_IDS,
        f"{confirmation.deal_id}/{confirmation.deliverable_id}",
        DeliverableConfirmed(
            deal_id=confirmation.deal_id,
            deliverable_id=confirmation.deliverable_id,
            post_id=confirmation.post_id,
            confirmed_by=confirmation.confirmed_by,
            confirmed_at=confirmation.confirmed_at,
            post_received_at=confirmation.post_received_at,
        ),
        time=confirmation.confirmed_at,
    )


def leak_event(
    deal: DealTerms,
    promo_code: str,
    rule: LeakRule,
    verdict: CodeVerdict,
    policy: LeakedOrders,
    thresholds: LeakThresholds,
    *,
    now: datetime,
) -> CloudEvent[Any]:
    """`promo-code.leak-suspected`: `rule` fired for the first time on `promo_code` of
    `deal`, with the evidence of every rule firing on it now (`verdict`), stamped `now`. Its id
    derives from (deal, code, rule), so it can only ever be announced under one id."""
    since = verdict.suspected_since
    assert since is not None, "an alert for a code no rule fired on"
    return _derived_event(
        _LEAK_ALERT_IDS,
        f"{deal.deal_id}/{promo_code}/{rule.value}",
        PromoCodeLeakSuspected(
            deal_id=deal.deal_id,
            campaign_id=deal.campaign_id,
            brand_id=deal.brand_id,
            creator_id=deal.creator_id,
            promo_code=promo_code,
            rule=rule.value,
            rules=tuple(r.value for r in verdict.rules),
            evidence=tuple(_evidence(e) for e in verdict.evidence),
            suspected_since=since,
            leaked_orders=policy.value,
            window_days=thresholds.window.days,
        ),
        time=now,
    )


def _derived_event(
    ids: uuid.UUID, name: str, data: BaseModel, *, time: datetime
) -> CloudEvent[Any]:
    """Our event of `data`, stamped `time`, whose id derives from `name` among `ids`: sent
    again, it keeps its id."""
    return make_event(data, source=SOURCE, id=str(uuid.uuid5(ids, name)), time=time)


def _evidence(e: Evidence) -> LeakEvidence:
    return LeakEvidence(
        rule=e.rule.value,
        order_id=e.order_id,
        window_start=e.window_start,
        window_end=e.window_end,
        orders=e.orders,
        considered=e.considered,
        share=e.share,
        threshold=e.threshold,
        reach=e.reach,
    )
