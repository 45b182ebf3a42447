"""`brand.funded`: money a brand paid in to fund its campaigns (its escrow)."""

from __future__ import annotations

from pydantic import Field, field_validator

from shared.contract.events.payload import ExternalPayload
from shared.contract.events.types import Id, UtcDatetime
from shared.contract.money import Money


class BrandFunded(ExternalPayload):
    """`brand.funded`: `amount` arrived from the brand and funds its escrow in that currency.

    `funding_id` is the idempotency key: a funding is credited once, however often it is sent;
    the same id sent again with another brand, amount or time is refused.
    """

    brand_id: Id = Field(description="Brand that paid; the Kafka key.", examples=["br-12"])
    funding_id: Id = Field(
        description="Id of this funding, unique across brands; credited once.",
        examples=["fund-2025-04-0001"],
    )
    amount: Money = Field(
        description=(
            "What arrived, more than zero, exact to the currency's minor unit (ISO 4217); "
            "payouts in this currency draw on it."
        ),
        examples=[{"amount": "5000.00", "currency": "USD"}],
    )
    funded_at: UtcDatetime = Field(
        description="When the money arrived, RFC 3339 with a zone.",
        examples=["2025-04-01T09:30:00Z"],
    )

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: Money) -> Money:
        if amount.is_zero() or amount.is_negative():
            what = "zero" if amount.is_zero() else "negative"
            raise ValueError(f"{amount} is {what}; a funding must be more than zero")
        return amount
