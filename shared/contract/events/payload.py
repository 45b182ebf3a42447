"""Base classes of event payloads (the CloudEvent `data`).

Inputs from outside (brands, collectors, shops, onboarding, the FX feed) reject unknown
fields so a typo fails loudly at the edge. Events between our own services tolerate unknown
fields so a producer can add an optional field in a newer minor version before every
consumer is upgraded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ExternalPayload(BaseModel):
    """Data produced outside CreatorFlow: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class InternalPayload(BaseModel):
    """Data produced by CreatorFlow services: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
