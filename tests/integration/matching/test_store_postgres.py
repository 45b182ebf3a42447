"""The Postgres store passes the same contract as the fake."""

from __future__ import annotations

import asyncpg
import pytest

from services.matching.store.postgres import PostgresMatchingStore
from tests.unit.matching.store_contract import MatchingStoreContract

pytestmark = pytest.mark.integration


class TestPostgresMatchingStore(MatchingStoreContract):
    @pytest.fixture(autouse=True)
    def _store(self, db_pool: asyncpg.Pool) -> None:
        self.store = PostgresMatchingStore(db_pool, consumer="matching")
