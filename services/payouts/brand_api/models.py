"""The brand API's JSON: pydantic models of every answer, built from the pure brand view
(services/payouts/domain/brand_view.py), and the OpenAPI document generated from them.

Money is the contract's `{"amount": "450.00", "currency": "USD"}`: a decimal string with the
currency's own minor unit, never a JSON number; ratios are decimal strings too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from services.payouts.domain.brand_view import (
    AttributionFigures,
    CampaignSummary,
    DealLine,
    PayoutLine,
    Totals,
)
from shared.contract.events.types import Count, Ratio, SignedRatio, UtcDatetime
from shared.contract.money import Money

VERSION: Final = "1.0.0"
PREFIX: Final = "/brand/v1"
OPENAPI_PATH: Final = PREFIX + "/openapi.json"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def same_named(cls, source: object) -> Self:
        """One of these whose every field is `source`'s attribute of the same name."""
        return cls(**{name: getattr(source, name) for name in cls.model_fields})


class Attribution(_Model):
    """Tracking's latest attribution of the deal, as payouts received it."""

    as_of: UtcDatetime = Field(description="Latest input reflected in these figures.")
    posts: Count
    likes: Count
    comments: Count
    shares: Count
    saves: Count | None = None
    views: Count
    impressions: Count
    reach: Count
    orders: Count = Field(description="Net orders attributed.")
    revenue: Money = Field(description="Attributed revenue net of refunds, deal currency.")
    spend: Money = Field(
        description="The agreed fee plus commission on the revenue so far (as tracking counts "
        "it), deal currency; `paid` and `pending` say what payouts drew."
    )
    engagement_rate: Ratio | None = None
    cpm: Ratio | None = Field(None, description="spend / impressions x 1000.")
    cpe: Ratio | None = Field(None, description="spend / engagements.")
    cpa: Ratio | None = Field(None, description="spend / orders.")
    roas: Ratio | None = Field(None, description="revenue / spend.")
    roi_pct: SignedRatio | None = Field(None, description="(revenue - spend) / spend x 100.")
    attribution_model: str | None = Field(None, description="The campaign's model.")
    leak_suspected: bool | None = Field(None, description="A promo code is suspected leaked.")
    suspected_orders: Count | None = None
    withheld_orders: Count | None = None
    withheld_revenue: Money | None = None

    @classmethod
    def of(cls, figures: AttributionFigures) -> Attribution:
        return cls.same_named(figures)


class PayoutItem(_Model):
    payout_id: str
    kind: Literal["fee", "commission", "clawback"]
    status: Literal["scheduled", "held", "sent", "settled", "failed", "clawed_back"] = Field(
        description=(
            "Where the payout stands: `sent` has left, `settled` arrived; `clawed_back` is "
            "commission taken back after refunds."
        )
    )
    gross: Money = Field(
        description="What it costs the brand, platform fee included; for a clawback, what "
        "returned to the brand's escrow (the creator repays it from later payouts)."
    )
    platform_fee: Money
    awaiting_funds: bool = Field(
        description="Held until the brand's escrow in this currency covers it (`brand.funded`)."
    )

    @classmethod
    def of(cls, line: PayoutLine) -> PayoutItem:
        return cls.same_named(line)


class CurrencyTotals(_Model):
    """Sums over deals in one currency."""

    currency: str
    fees: Money = Field(description="Fees agreed in the deals.")
    paid: Money = Field(description="Gross of payouts sent or settled.")
    pending: Money = Field(description="Gross of payouts scheduled, held or failed.")
    clawed_back: Money = Field(description="Commission taken back after refunds.")
    revenue: Money = Field(description="Attributed revenue net of refunds.")
    spend: Money = Field(
        description="The agreed fees plus commission on the revenue so far, as tracking counts it."
    )

    @classmethod
    def of(cls, totals: Totals) -> CurrencyTotals:
        return cls.same_named(totals)


class Deal(_Model):
    deal_id: str
    campaign_id: str
    creator_id: str
    fee: Money
    commission_rate: Ratio
    attribution: Attribution | None = Field(description="None until tracking reported one.")
    payouts: list[PayoutItem] = Field(description="Oldest first.")

    @classmethod
    def of(cls, line: DealLine) -> Deal:
        return cls(
            deal_id=line.deal_id,
            campaign_id=line.campaign_id,
            creator_id=line.creator_id,
            fee=line.fee,
            commission_rate=Decimal(line.commission_rate),
            attribution=None if line.attribution is None else Attribution.of(line.attribution),
            payouts=[PayoutItem.of(p) for p in line.payouts],
        )


class Campaign(_Model):
    campaign_id: str
    deals: int = Field(ge=0)
    creators: int = Field(ge=0)
    orders: int = Field(ge=0, description="Net orders attributed to its deals.")
    totals: list[CurrencyTotals]

    @classmethod
    def of(cls, summary: CampaignSummary) -> Campaign:
        return cls(
            campaign_id=summary.campaign_id,
            deals=summary.deals,
            creators=summary.creators,
            orders=summary.orders,
            totals=[CurrencyTotals.of(t) for t in summary.totals],
        )


class CampaignList(_Model):
    brand_id: str
    campaigns: list[Campaign]


class CampaignDetail(_Model):
    brand_id: str
    campaign: Campaign
    deals: list[Deal] = Field(description="The campaign's deals, one per creator and deal.")


class CreatorDetail(_Model):
    brand_id: str
    creator_id: str
    totals: list[CurrencyTotals]
    deals: list[Deal] = Field(description="The brand's deals with this creator.")


ProblemKind = Literal["unauthorized", "not_found", "not_allowed", "rate_limited", "unavailable"]


class Problem(_Model):
    error: ProblemKind
    message: str


# The OpenAPI document -----------------------------------------------------------------------

_RATE_HEADERS: Final = {
    "RateLimit-Limit": "Requests allowed per window for this key.",
    "RateLimit-Remaining": "Requests left in the current window.",
    "RateLimit-Reset": "Seconds until the window ends.",
}
_ERRORS: Final = {
    "401": "Missing, malformed, unknown or revoked key (`WWW-Authenticate: Bearer`).",
    "429": "Over the key's rate limit; `Retry-After` says when to come back.",
    "503": "The rate limiter is unreachable; `Retry-After` says when to try again.",
}
_ROUTES: Final[tuple[tuple[str, str, str, type[BaseModel], str | None], ...]] = (
    ("/campaigns", "listCampaigns", "The brand's campaigns with totals", CampaignList, None),
    (
        "/campaigns/{campaign_id}",
        "getCampaign",
        "One campaign: per deal, the attribution, fee and payouts",
        CampaignDetail,
        "campaign_id",
    ),
    (
        "/creators/{creator_id}",
        "getCreator",
        "The brand's deals with one creator",
        CreatorDetail,
        "creator_id",
    ),
)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, generated from the models above."""
    models: list[type[BaseModel]] = [CampaignList, CampaignDetail, CreatorDetail, Problem]
    _, schemas = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CreatorFlow brand API",
            "version": VERSION,
            "description": (
                "Read-only figures of a brand's campaigns: attribution, fees and payout "
                "statuses. Every request carries `Authorization: Bearer <key>` "
                "(`creatorflow brands api-key add`). Another brand's campaign or creator "
                "answers 404, as an unknown one does."
            ),
        },
        "paths": {
            PREFIX + path: _path_item(operation_id, summary, model, parameter)
            for path, operation_id, summary, model, parameter in _ROUTES
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"brandKey": {"type": "http", "scheme": "bearer"}},
            "headers": {
                name: {"description": text, "schema": {"type": "integer", "minimum": 0}}
                for name, text in _RATE_HEADERS.items()
            },
        },
        "security": [{"brandKey": []}],
    }


def _path_item(
    operation_id: str, summary: str, model: type[BaseModel], parameter: str | None
) -> dict[str, Any]:
    rate_headers = {name: {"$ref": f"#/components/headers/{name}"} for name in _RATE_HEADERS}
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    retry_after = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
    responses: dict[str, Any] = {
        "200": {
            "description": summary,
            "headers": rate_headers,
            "content": {"application/json": {"schema": {"$ref": _ref(model)}}},
        },
        "401": {
            "description": _ERRORS["401"],
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": problem,
        },
        "429": {
            "description": _ERRORS["429"],
            "headers": {**rate_headers, **retry_after},
            "content": problem,
        },
        "503": {"description": _ERRORS["503"], "headers": retry_after, "content": problem},
    }
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if parameter is not None:
        operation["parameters"] = [
            {
                "name": parameter,
                "in": "path",
                "required": True,
                "description": "The id as in the events, percent-encoded (a '/' as %2F).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            }
        ]
        responses["404"] = {
            "description": "No such one of the brand's (another brand's is not told apart).",
            "headers": rate_headers,
            "content": problem,
        }
    operation["responses"] = responses
    return {"get": operation}


def _ref(model: type[BaseModel]) -> str:
    return f"#/components/schemas/{model.__name__}"
