"""The CloudEvents 1.0 structured-mode envelope every Kafka value is wrapped in."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.contract.events.types import Id, UtcDatetime

DataT = TypeVar("DataT", bound=BaseModel)

SPEC_VERSION: Final = "1.0"
JSON_CONTENT_TYPE: Final = "application/json"


# The value of a CloudEvents attribute that names something (a type, a key, a signature):
# 1-128 characters.
_Attribute = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]

# (source, id), see `CloudEvent.identity`.
EventIdentity = tuple[str, str]


class CloudEvent(BaseModel, Generic[DataT]):
    """One event: CloudEvents 1.0 attributes plus the typed `data` payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = Field(
        description="CloudEvents specification version.", examples=[SPEC_VERSION]
    )
    id: Id = Field(
        description=(
            "Event id, unique per `source` (a UUID when we produce it); consumers dedupe on "
            "(source, id)."
        ),
        examples=["6f1c2b1e-6d0a-4f57-9d3c-2b8f8f0f6a11"],
    )
    source: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)] = Field(
        description="Who produced the event (service name or URI reference).",
        examples=["creatorflow/tracking", "https://shop.example.com"],
    )
    type: _Attribute = Field(
        description="Event type; decides the schema of `data` (see the registry).",
        examples=["deal.signed"],
    )
    time: UtcDatetime = Field(
        description="When the fact happened, RFC 3339 with a zone; normalised to UTC.",
        examples=["2025-03-01T12:00:00Z"],
    )
    subject: Id | None = Field(
        default=None,
        description="Id of the entity the event is about; equals the Kafka key.",
        examples=["deal-42"],
    )
    datacontenttype: Literal["application/json"] = Field(
        default=JSON_CONTENT_TYPE,
        description="Media type of `data`; always JSON.",
        examples=[JSON_CONTENT_TYPE],
    )
    data: DataT = Field(description="The payload; its schema is given by `type`.")
    # Extension attributes of signed events (shared/contract/signing.py); absent otherwise.
    sigkeyid: _Attribute | None = Field(
        default=None,
        description=(
            "Extension attribute: id of the key that signed the event, `ed25519:` and 32 hex "
            "digits of the SHA-256 of its public key. Required on money events in production."
        ),
        examples=["ed25519:56475aa75463474c0285df5dbf2bcab7"],
    )
    signature: _Attribute | None = Field(
        default=None,
        description=(
            "Extension attribute: Ed25519 signature (base64url, no padding) over the event "
            "without `signature`, canonicalised by RFC 8785 (JSON Canonicalization Scheme)."
        ),
    )

    @property
    def identity(self) -> EventIdentity:
        """(source, id): what makes an event unique. CloudEvents ids are unique per source
        only, and outside producers choose theirs, so consumers dedupe on both."""
        return (self.source, self.id)


@cache
def envelope_for(data_model: type[BaseModel]) -> type[CloudEvent[Any]]:
    """The CloudEvent class whose `data` is validated as `data_model`."""
    return cast("type[CloudEvent[Any]]", CloudEvent.__class_getitem__(data_model))
