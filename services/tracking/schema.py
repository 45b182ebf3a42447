"""The PostgreSQL schema tracking owns: its tables, inbox, outbox and FX snapshots
(docs/architecture.md §7). Migrations: `migrations/` beside this file, after the runtime's."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from shared.runtime.db import ServiceSchema

SCHEMA: Final = ServiceSchema(
    "tracking", Path(__file__).resolve().parent / "migrations", legacy_prefix="tracking_"
)
