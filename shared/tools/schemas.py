"""Every service's PostgreSQL schema, for the tools that migrate or read them all."""

from __future__ import annotations

from services.matching.schema import SCHEMA as MATCHING
from services.payouts.schema import SCHEMA as PAYOUTS
from services.tracking.schema import SCHEMA as TRACKING
from shared.runtime.db import ServiceSchema

SERVICE_SCHEMAS: tuple[ServiceSchema, ...] = (MATCHING, TRACKING, PAYOUTS)
