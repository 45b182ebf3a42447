"""The in-memory fake passes the store contract."""

from __future__ import annotations

from services.matching.store.memory import MemoryMatchingStore
from tests.unit.matching.store_contract import MatchingStoreContract


class TestInMemoryMatchingStore(MatchingStoreContract):
    def setup_method(self) -> None:
        self.store = MemoryMatchingStore()
