"""The store contract against the real PostgreSQL adapter."""

from __future__ import annotations

import asyncpg
import pytest

from services.tracking.store.port import TrackingStore
from services.tracking.store.postgres import PostgresTrackingStore
from tests.unit.tracking.store_contract import StoreContract, ids

pytestmark = pytest.mark.integration

__all__ = ["ids"]


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, db_pool: asyncpg.Pool) -> TrackingStore:
        return PostgresTrackingStore(db_pool, consumer="tracking-contract")
