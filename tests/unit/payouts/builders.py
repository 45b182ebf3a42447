"""Events and values for payouts tests, each tagged with unique ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from services.payouts.destinations import DestinationCipher
from services.payouts.domain.accounts import SealedDestination
from services.payouts.domain.escrow import Funding
from services.payouts.domain.ledger import TransferKind, escrow_of
from services.payouts.domain.ledger_check import PostedTransfer
from shared.contract.events import (
    BrandFunded,
    CloudEvent,
    DealAmended,
    DealCancelled,
    DealSigned,
    Deliverable,
    DeliverableConfirmed,
    FxRatesPublished,
    PayoutAccountUpserted,
    PayoutFallback,
    TaxForm,
    make_event,
)
from shared.contract.events.tracking import AttributionUpdated
from shared.contract.money import Money

T0 = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
SOURCE = "tests/payouts"
# The key of the in-memory tests; the services in integration tests use their settings' key.
DESTINATIONS = DestinationCipher(bytes(range(32)))


def sealed(creator_id: str, token: str) -> SealedDestination:
    return DESTINATIONS.seal(creator_id, SecretStr(token))


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def deal_signed(
    deal_id: str,
    creator_id: str,
    *,
    fee: Money | None = None,
    deliverables: tuple[tuple[str, int], ...] = (("dl-1", 1), ("dl-2", 3)),
    commission_rate: str = "0.10",
    ends_at: datetime = T0 + timedelta(days=30),
    window_days: int = 30,
    brand_id: str = "br-1",
) -> CloudEvent[Any]:
    data = DealSigned(
        deal_id=deal_id,
        campaign_id="cmp-1",
        brand_id=brand_id,
        creator_id=creator_id,
        fee=fee or Money(Decimal("450.00"), "USD"),
        commission_rate=Decimal(commission_rate),
        promo_codes=(),
        deliverables=tuple(
            Deliverable(deliverable_id=d, kind="post", count=c, due_by=T0 + timedelta(days=10))
            for d, c in deliverables
        ),
        required_tags=(),
        starts_at=ends_at - timedelta(days=30),
        ends_at=ends_at,
        attribution_window_days=window_days,
    )
    return make_event(data, source=SOURCE, time=T0)


def deal_amended(
    signed: CloudEvent[Any],
    version: int,
    *,
    at: datetime = T0 + timedelta(hours=1),
    event_id: str | None = None,
    **changes: Any,
) -> CloudEvent[Any]:
    """Version `version` of the deal `signed` states, with `changes` to its data (e.g.
    `fee=...`, `brand_id=...`, `deliverables=(("dl-1", 1),)`), sent at `at`."""
    if "deliverables" in changes:
        changes["deliverables"] = tuple(
            Deliverable(deliverable_id=d, kind="post", count=c, due_by=T0 + timedelta(days=10))
            for d, c in changes["deliverables"]
        )
    data = DealAmended(**{**dict(signed.data), **changes, "version": version})
    return make_event(data, source=SOURCE, time=at, id=event_id)


def deal_cancelled(
    deal_id: str, *, at: datetime = T0 + timedelta(hours=2), brand_id: str = "br-1"
) -> CloudEvent[Any]:
    data = DealCancelled(deal_id=deal_id, brand_id=brand_id, reason="campaign withdrawn")
    return make_event(data, source=SOURCE, time=at)


def funded(
    brand_id: str,
    amount: Money,
    *,
    funding_id: str | None = None,
    at: datetime = T0,
) -> CloudEvent[Any]:
    """`brand.funded`: `amount` paid into the brand's escrow."""
    data = BrandFunded(
        brand_id=brand_id,
        funding_id=funding_id or uid("fund"),
        amount=amount,
        funded_at=at,
    )
    return make_event(data, source=SOURCE, time=at)


def funded_deal(
    deal_id: str, creator_id: str, *, funds: Money | None = None, **terms: Any
) -> tuple[CloudEvent[Any], CloudEvent[Any]]:
    """The brand's funding of a deal (its fee, or `funds`), then the `deal.signed` itself
    (`terms` as `deal_signed` takes them): what a brand sends for its deal to be paid."""
    deal = deal_signed(deal_id, creator_id, **terms)
    funding = funded(deal.data.brand_id, funds or deal.data.fee, funding_id=f"fund-{deal_id}")
    return funding, deal


# What a harness pays into a brand's escrow before its first deal (`Harness(fund_brands=True)`):
# more than any test's payouts draw.
PLENTY = Decimal("10000000")


def with_fundings(history: list[PostedTransfer]) -> list[PostedTransfer]:
    """`history` after a funding of exactly what each of its accruals draws from a brand's
    escrow: the ledger of payouts whose brand paid for them."""
    fundings = []
    for transfer in history:
        if transfer.kind != TransferKind.ACCRUAL.value:
            continue
        for n, posting in enumerate(transfer.postings):
            brand_id = escrow_of(posting.account)
            if brand_id is not None:
                funding_id = f"fund-{transfer.transfer_id}-{n}"
                t = Funding(funding_id, brand_id, -posting.amount, T0).transfer()
                fundings.append(PostedTransfer(t.transfer_id, t.payout_id, t.kind, t.postings))
    return [*fundings, *history]


def confirmed(
    deal_id: str,
    deliverable_id: str,
    *,
    event_id: str | None = None,
    at: datetime = T0,
    post_received_at: datetime | None = None,
) -> CloudEvent[Any]:
    data = DeliverableConfirmed(
        deal_id=deal_id,
        deliverable_id=deliverable_id,
        confirmed_by="auto",
        confirmed_at=at,
        post_received_at=post_received_at,
    )
    return make_event(data, source=SOURCE, time=at, id=event_id)


def account(
    creator_id: str,
    *,
    currency: str = "EUR",
    form: str = "W-8BEN",
    status: str = "verified",
    destination: str = "acct_test_destination_1",
    time: datetime = T0,
    method: str = "stripe",
    fallback: tuple[str, str] | None = None,  # (method, destination)
    email: str | None = None,
) -> CloudEvent[Any]:
    data = PayoutAccountUpserted(
        creator_id=creator_id,
        email=None if email is None else SecretStr(email),
        fallback=None
        if fallback is None
        else PayoutFallback(
            method=fallback[0],  # type: ignore[arg-type]
            destination=SecretStr(fallback[1]),
        ),
        method=method,  # type: ignore[arg-type]
        destination=SecretStr(destination),
        currency=currency,
        tax_form=TaxForm(type=form, status=status),  # type: ignore[arg-type]
    )
    return make_event(data, source=SOURCE, time=time)


def fx(rates: dict[str, str], *, base: str = "USD", as_of: datetime = T0) -> CloudEvent[Any]:
    data = FxRatesPublished(
        base=base, rates={c: Decimal(r) for c, r in rates.items()}, as_of=as_of, source="test-feed"
    )
    return make_event(data, source=SOURCE, time=as_of)


def attribution(deal_id: str, creator_id: str, revenue: Money, as_of: datetime) -> CloudEvent[Any]:
    data = AttributionUpdated(
        deal_id=deal_id,
        campaign_id="cmp-1",
        creator_id=creator_id,
        posts=1,
        likes=0,
        comments=0,
        shares=0,
        views=0,
        impressions=0,
        reach=0,
        engagement_rate=None,
        orders=1,
        revenue=revenue,
        spend=Money(Decimal("0.00"), revenue.currency),
        cpm=None,
        cpe=None,
        cpa=None,
        roas=None,
        roi_pct=None,
        as_of=as_of,
    )
    return make_event(data, source=SOURCE, time=as_of)
