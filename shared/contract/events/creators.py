"""Creator events from onboarding and data collectors: profiles and payout accounts."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    field_serializer,
    model_validator,
)

from shared.contract.events.payload import ExternalPayload
from shared.contract.events.types import (
    AgeShares,
    Count,
    CountryCode,
    CountryShares,
    CurrencyCode,
    Estimate,
    Id,
    LanguageCode,
    LongText,
    Name,
    Share,
    Topics,
    UtcDatetime,
    shares_at_most_one,
)
from shared.contract.events.vocabulary import (
    DeliverableKind,
    PayoutMethod,
    Platform,
    TaxFormStatus,
    TaxFormType,
)
from shared.contract.money import NonNegativeMoney


def _characters(low: int, high: int, what: str) -> BeforeValidator:
    """Checks a secret's length first, in characters: pydantic's own message for a
    `SecretStr` counts "items". The schema keeps its minLength and maxLength."""

    def check(value: object) -> object:
        if isinstance(value, str) and not low <= len(value) <= high:
            raise ValueError(f"{what} must have {low} to {high} characters, not {len(value)}")
        return value

    return BeforeValidator(check)


# A payout destination: a provider token or an encrypted reference, never logged.
Destination = Annotated[
    SecretStr, Field(min_length=1, max_length=512), _characters(1, 512, "a destination")
]


class GenderSplit(ExternalPayload):
    """Audience shares by gender; they sum to at most 1 (the rest is unknown)."""

    female: Share = Field(description="Share of the audience that is female.", examples=[0.62])
    male: Share = Field(description="Share of the audience that is male.", examples=[0.35])
    other: Share = Field(description="Share of the audience of another gender.", examples=[0.03])

    @model_validator(mode="after")
    def _at_most_whole_audience(self) -> GenderSplit:
        shares_at_most_one({"female": self.female, "male": self.male, "other": self.other})
        return self


class Audience(ExternalPayload):
    """Who follows the creator, as shares of the audience."""

    countries: CountryShares = Field(
        description="Share of the audience per ISO 3166-1 alpha-2 country.",
        examples=[{"US": 0.55, "CA": 0.12}],
    )
    age: AgeShares = Field(
        description="Share of the audience per age bucket.",
        examples=[{"18-24": 0.41, "25-34": 0.37}],
    )
    gender: GenderSplit = Field(description="Share of the audience per gender.")


class CreatorProfileUpserted(ExternalPayload):
    """`creator.profile.upserted`: the current profile of one creator on one platform."""

    creator_id: Id = Field(description="Creator id; the Kafka key.", examples=["cr-1001"])
    handle: Name = Field(description="Public handle on the platform.", examples=["@jane.bakes"])
    platform: Platform = Field(description="Platform of this profile.", examples=["instagram"])
    followers: Count = Field(description="Followers now.", examples=[48_200])
    avg_likes: Estimate = Field(description="Mean likes per recent post.", examples=[2_150.5])
    avg_comments: Estimate = Field(description="Mean comments per recent post.", examples=[87.0])
    avg_shares: Estimate = Field(description="Mean shares per recent post.", examples=[41.2])
    avg_views: Estimate = Field(description="Mean views per recent post.", examples=[19_400.0])
    posts_last_30d: Count = Field(description="Posts in the last 30 days.", examples=[14])
    bio: LongText = Field(description="Profile bio text.", examples=["Sourdough every Sunday."])
    topics: Topics = Field(
        description="Topics the creator posts about (at most 50).",
        examples=[["baking", "food"]],
    )
    country: CountryCode = Field(
        description="Creator's country (ISO 3166-1 alpha-2).", examples=["US"]
    )
    language: LanguageCode = Field(
        description="Main content language (ISO 639-1).", examples=["en"]
    )
    audience: Audience = Field(description="Audience demographics as shares.")
    rate_card: dict[DeliverableKind, NonNegativeMoney] = Field(
        description="Asking price per deliverable kind.",
        examples=[{"post": {"amount": "450.00", "currency": "USD"}}],
    )
    payout_currency: CurrencyCode = Field(
        description="Currency the creator is paid in (ISO 4217).", examples=["USD"]
    )


class TaxForm(ExternalPayload):
    """The tax form on file for a creator."""

    type: TaxFormType = Field(description="Which form is on file.", examples=["W-9"])
    status: TaxFormStatus = Field(description="Review status of the form.", examples=["verified"])
    verified_at: UtcDatetime | None = Field(
        default=None,
        description="When the form was verified, if it is.",
        examples=["2025-02-01T09:30:00Z"],
    )


class PayoutFallback(ExternalPayload):
    """Where a creator is paid when the main rail refuses a payout before executing it."""

    method: PayoutMethod = Field(description="Fallback payout rail.", examples=["paypal"])
    destination: Destination = Field(
        description="Provider token on the fallback rail (sensitive: never logged).",
        examples=["creator@example.com"],
    )

    @field_serializer("destination", when_used="json")
    def _destination_on_the_wire(self, destination: SecretStr) -> str:
        return destination.get_secret_value()


# One address, as a mail server takes it: a local part, an @ and a domain with a dot, no
# spaces, angle brackets or second @ (nothing that could add a recipient or a header).
_EMAIL_SHAPE: Final = re.compile(r"[^@\s<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _one_address(email: SecretStr) -> SecretStr:
    if _EMAIL_SHAPE.fullmatch(email.get_secret_value()) is None:
        # The value itself is personal data: never quoted in an error.
        raise ValueError("not one e-mail address (local@domain.tld)")
    return email


Email = Annotated[
    SecretStr,
    Field(min_length=3, max_length=254),
    _characters(3, 254, "an e-mail address"),
    AfterValidator(_one_address),
]
"""A creator's e-mail address: personal data, kept out of logs, errors and dead letters."""


class PayoutAccountUpserted(ExternalPayload):
    """`creator.payout-account.upserted`: where and how a creator is paid.

    `destination` is a `SecretStr`: it shows as `'**********'` in `repr`, logs and Python-mode
    dumps, and is written in clear only in the JSON wire format (`model_dump_json`, `encode`).
    Producers should send a provider token or an encrypted value, never a raw account number.
    """

    creator_id: Id = Field(description="Creator id; the Kafka key.", examples=["cr-1001"])
    method: PayoutMethod = Field(description="Payout rail.", examples=["wise"])
    destination: Destination = Field(
        description="Provider token or encrypted account reference (sensitive: never logged).",
        examples=["tok_wise_8f2c1a"],
    )
    currency: CurrencyCode = Field(description="Currency of the account.", examples=["EUR"])
    tax_form: TaxForm = Field(description="Tax form on file and its status.")
    fallback: PayoutFallback | None = Field(
        default=None,
        description=(
            "Optional second rail, in the same currency: used only when the main rail "
            "refuses a payout with an error that proves nothing was executed."
        ),
    )
    # Optional since v1.6: where the creator hears of each payout status change.
    email: Email | None = Field(
        default=None,
        description=(
            "Optional address the creator's payout notifications go to (personal data: "
            "never logged). Absent: no e-mail is sent."
        ),
        examples=["jane@example.com"],
    )

    @field_serializer("destination", when_used="json")
    def _destination_on_the_wire(self, destination: SecretStr) -> str:
        return destination.get_secret_value()

    @field_serializer("email", when_used="json")
    def _email_on_the_wire(self, email: SecretStr | None) -> str | None:
        return None if email is None else email.get_secret_value()
