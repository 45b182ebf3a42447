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
