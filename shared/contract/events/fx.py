"""`fx.rates.published`: a snapshot of exchange rates from an FX feed."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from shared.contract.events.payload import ExternalPayload
from shared.contract.events.types import CurrencyCode, Name, PositiveDecimal, UtcDatetime

MAX_RATES = 300


class FxRatesPublished(ExternalPayload):
    """`fx.rates.published`: 1 unit of `base` buys `rates[code]` units of `code`.

    `rates` may list `base` itself only with the rate exactly 1.
    """

    base: CurrencyCode = Field(description="Base currency; the Kafka key.", examples=["USD"])
    rates: Annotated[
        dict[CurrencyCode, PositiveDecimal], Field(min_length=1, max_length=MAX_RATES)
    ] = Field(
        description="Units of each currency per unit of base, as decimal strings.",
        examples=[{"EUR": "0.9215", "JPY": "151.32"}],
    )
    as_of: UtcDatetime = Field(
        description=(
            "When the rates were fixed. Never in the future: consumers dead-letter a later "
            "time than their clock plus MAX_CLOCK_SKEW_SECONDS (FutureDated), since the "
            "snapshot in force is the latest one by as_of."
        ),
        examples=["2025-04-01T16:00:00Z"],
    )
    source: Name = Field(description="Feed that published them.", examples=["ecb"])

    @field_validator("rates")
    @classmethod
    def _base_rate_is_one(
        cls, rates: dict[str, Decimal], info: ValidationInfo
    ) -> dict[str, Decimal]:
        base = info.data.get("base")
        if base is not None and base in rates and rates[base] != Decimal(1):
            raise ValueError(f"{base} is the base; it may only appear with rate 1")
        return rates
