"""The in-memory fake passes the store contract."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from services.matching.store.postgres import InMemoryMatchingStore
from tests.unit.matching.store_contract import MatchingStoreContract


class TestInMemoryMatchingStore(MatchingStoreContract):
    def setup_method(self) -> None:
        self.store = InMemoryMatchingStore()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None
