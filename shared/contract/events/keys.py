"""The signing-key registry: operators register and revoke the public keys that sign events
(`creatorflow keys`; shared/contract/signing.py says what a signature covers)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from shared.contract.events.payload import ExternalPayload
from shared.contract.events.types import Id, ShortText
from shared.contract.signing import Party, key_id, public_key_from_text


class SigningKeyRegistered(ExternalPayload):
    """`signing-key.registered`: from now on, `public_key` signs on behalf of `owner_id`."""

    key_id: Id = Field(
        description="The key's id: `ed25519:` and 32 hex digits of its public key's SHA-256; "
        "the Kafka key.",
        examples=["ed25519:56475aa75463474c0285df5dbf2bcab7"],
    )
    party: Party = Field(description="What kind of party owns the key.", examples=["brand"])
    owner_id: Id = Field(
        description="Who owns it: a brand id, a shop id, an onboarding party or a service.",
        examples=["br-12"],
    )
    public_key: Id = Field(
        description="The raw Ed25519 public key (32 bytes), base64url without padding.",
        examples=["A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"],
    )
    # Optional since v1.9: a shop key bound to the brands it sells for.
    brands: list[Id] | None = Field(
        default=None,
        min_length=1,
        description=(
            "A shop key only: the brands the shop sells for. Its orders, refunds and clicks "
            "count only for these brands: one naming another `brand_id` is refused, and one "
            "naming none is the brand's when there is one (the shop must name it when there "
            "are several). Absent: they count for any brand."
        ),
        examples=[["br-12"]],
    )

    @model_validator(mode="after")
    def _brands_are_a_shops(self) -> Self:
        if self.brands is not None:
            if self.party is not Party.SHOP:
                raise ValueError(
                    f"brands: only a shop key names brands, not a {self.party.value}'s"
                )
            if len(set(self.brands)) != len(self.brands):
                raise ValueError("brands: each brand once")
        return self

    @model_validator(mode="after")
    def _id_is_the_keys_own(self) -> Self:
        try:
            derived = key_id(public_key_from_text(self.public_key))
        except ValueError as error:
            raise ValueError(f"public_key: {error}") from None
        if derived != self.key_id:
            raise ValueError(f"key_id is not this public key's id ({derived})")
        return self


class SigningKeyRevoked(ExternalPayload):
    """`signing-key.revoked`: events signed by the key from now on are refused."""

    key_id: Id = Field(
        description="The key revoked; the Kafka key.",
        examples=["ed25519:56475aa75463474c0285df5dbf2bcab7"],
    )
    reason: ShortText = Field(
        default="", description="Why, for the audit trail.", examples=["laptop stolen"]
    )
