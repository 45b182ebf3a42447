"""`deal.signed`, `deal.amended`, `deal.cancelled`: the contract between a brand and a creator
for one campaign, its later versions and its end."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from shared.contract.events.payload import ExternalPayload
from shared.contract.events.types import (
    MAX_DELIVERABLES,
    MAX_TARGET_COUNTRIES,
    CountryCode,
    Id,
    PromoCodes,
    Rate,
    ShortText,
    Tags,
    UtcDatetime,
)
from shared.contract.events.vocabulary import AttributionModel, DeliverableKind, LeakedOrdersPolicy
from shared.contract.money import NonNegativeMoney

MAX_ATTRIBUTION_WINDOW_DAYS = 365
MAX_DELIVERABLE_COUNT = 1000


class Deliverable(ExternalPayload):
    """Something the creator must publish, and by when."""

    deliverable_id: Id = Field(
        description="Deliverable id, unique within the deal.", examples=["dl-1"]
    )
    kind: DeliverableKind = Field(description="What to publish.", examples=["reel"])
    count: Annotated[int, Field(strict=True, ge=1, le=MAX_DELIVERABLE_COUNT)] = Field(
        description="How many of this kind.", examples=[2]
    )
    due_by: UtcDatetime = Field(
        description="Deadline, RFC 3339 with a zone.", examples=["2025-04-15T23:59:59Z"]
    )


class DealSigned(ExternalPayload):
    """`deal.signed`: fee, commission, promo codes and deliverables agreed for one creator.

    `promo_codes` are kept exactly as sent (case included) and must be unique; the deal needs
    at least one deliverable, since payouts are released when deliverables are confirmed.
    """

    deal_id: Id = Field(description="Deal id; the Kafka key.", examples=["deal-42"])
    campaign_id: Id = Field(description="Campaign the deal belongs to.", examples=["cmp-3"])
    brand_id: Id = Field(description="Brand paying.", examples=["br-12"])
    creator_id: Id = Field(description="Creator delivering.", examples=["cr-1001"])
    fee: NonNegativeMoney = Field(
        description="Fixed fee for all deliverables.",
        examples=[{"amount": "450.00", "currency": "USD"}],
    )
    commission_rate: Rate = Field(
        description="Share of attributed revenue paid as commission, decimal string in [0, 1].",
        examples=["0.10"],
    )
    promo_codes: PromoCodes = Field(
        description="Promo codes attributed to this deal (unique, at most 50).",
        examples=[["JANE10"]],
    )
    deliverables: Annotated[
        tuple[Deliverable, ...], Field(min_length=1, max_length=MAX_DELIVERABLES)
    ] = Field(description="What the creator publishes (1-50 items, unique ids).")
    required_tags: Tags = Field(
        description="Tags each post must carry (e.g. #ad).", examples=[["#ad", "#bakeco"]]
    )
    starts_at: UtcDatetime = Field(
        description="Start of the deal period.", examples=["2025-04-01T00:00:00Z"]
    )
    ends_at: UtcDatetime = Field(
        description="End of the deal period; after starts_at.", examples=["2025-04-30T23:59:59Z"]
    )
    attribution_window_days: Annotated[
        int, Field(strict=True, ge=0, le=MAX_ATTRIBUTION_WINDOW_DAYS)
    ] = Field(description="Days after ends_at that orders still count (0-365).", examples=[30])
    # Optional since v1.6: what the leaked-code rule on shipping countries compares with.
    audience_countries: (
        Annotated[tuple[CountryCode, ...], Field(min_length=1, max_length=MAX_TARGET_COUNTRIES)]
        | None
    ) = Field(
        default=None,
        description=(
            "Where the creator's audience lives (ISO 3166-1 alpha-2, unique), e.g. the main "
            "countries of the creator's profile (`audience.countries`); orders mostly shipped "
            "elsewhere make the code suspected leaked. "
            "Without it that rule does not apply."
        ),
        examples=[["US", "CA"]],
    )

    @field_validator("audience_countries")
    @classmethod
    def _unique_countries(cls, countries: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if countries is not None and len(set(countries)) != len(countries):
            raise ValueError("each country may appear once")
        return countries

    @field_validator("deliverables")
    @classmethod
    def _unique_deliverable_ids(
        cls, deliverables: tuple[Deliverable, ...]
    ) -> tuple[Deliverable, ...]:
        seen: set[str] = set()
        for deliverable in deliverables:
            if deliverable.deliverable_id in seen:
                raise ValueError(
                    f"deliverable_id {deliverable.deliverable_id!r} appears twice; ids must be "
                    "unique within the deal"
                )
            seen.add(deliverable.deliverable_id)
        return deliverables

    @field_validator("ends_at")
    @classmethod
    def _period_is_not_empty(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and ends_at <= starts_at:
            raise ValueError(f"must be after starts_at ({starts_at.isoformat()})")
        return ends_at


# `deal.signed` is version 1 of a deal's terms; each `deal.amended` states a later one.
FIRST_VERSION = 1


class DealAmended(DealSigned):
    """`deal.amended`: the deal's complete new terms, as `deal.signed` states them, under a
    version above 1. Only the highest version received counts; one at or below the version in
    force is stale and ignored. The campaign, creator, brand and fee currency never change.
    """

    version: Annotated[int, Field(strict=True, ge=FIRST_VERSION + 1)] = Field(
        description="Version of the terms: 2 for the first amendment, higher for each after.",
        examples=[2],
    )


class DealCancelled(ExternalPayload):
    """`deal.cancelled`: the brand ends the deal at the event's `time` (final), or, if that
    is earlier, when the event reached the broker less MAX_CLOCK_SKEW_SECONDS. Orders and
    posts after it no longer count; deliverables confirmed after it are not paid."""

    deal_id: Id = Field(description="Deal id; the Kafka key.", examples=["deal-42"])
    brand_id: Id = Field(description="The deal's brand (it signs).", examples=["br-12"])
    reason: ShortText = Field(
        description="Why the deal ends, for the creator.", examples=["Campaign withdrawn"]
    )


DEFAULT_LOOKBACK_DAYS = 30
DEFAULT_HALF_LIFE_DAYS = 7
MAX_LOOKBACK_DAYS = 90


class AttributionModelSet(ExternalPayload):
    """`campaign.attribution-model.set`: how the brand's campaign splits an order's credit.

    The newest by the envelope's `time` counts; every deal of the campaign is recomputed.
    Defaults: a 30-day lookback (the usual affiliate cookie window) and, for `time_decay`, a
    7-day half-life (docs/architecture.md §10).
    """

    campaign_id: Id = Field(description="Campaign; the Kafka key.", examples=["cmp-3"])
    brand_id: Id = Field(description="The campaign's brand (it signs).", examples=["br-12"])
    model: AttributionModel = Field(
        description="promo_code (the default), last_click, first_click, linear, "
        "position_based (40/20/40) or time_decay.",
        examples=["position_based"],
    )
    lookback_days: Annotated[int, Field(strict=True, ge=1, le=MAX_LOOKBACK_DAYS)] = Field(
        default=DEFAULT_LOOKBACK_DAYS,
        description="Clicks this many days before an order count as its touches.",
        examples=[30],
    )
    half_life_days: Annotated[int, Field(strict=True, ge=1, le=MAX_LOOKBACK_DAYS)] = Field(
        default=DEFAULT_HALF_LIFE_DAYS,
        description="time_decay: a click this many days older than another earns half as much.",
        examples=[7],
    )
    # Optional since v1.6.
    leaked_orders: LeakedOrdersPolicy = Field(
        default="credit",
        description=(
            "Orders placed with one of the campaign's codes once it is suspected leaked "
            "(`promo-code.leak-suspected`): `credit` counts them as any order; `withhold` "
            "keeps them out of the revenue commission is paid on (`withheld_revenue` in "
            "`attribution.updated`)."
        ),
        examples=["withhold"],
    )


def cancellation_time(sent_at: datetime, not_before: datetime | None) -> datetime:
    """When a `deal.cancelled` sent at `sent_at` ends its deal: then, but never before
    `not_before`, its arrival at the broker less the clock skew allowed (Delivery.not_before),
    so a brand cannot date a cancellation back before orders that already earned commission."""
    return sent_at if not_before is None else max(sent_at, not_before)
