"""The store contract against the in-memory adapter."""

from __future__ import annotations

import pytest

from services.payouts.store.memory import MemoryPayoutsStore
from tests.unit.payouts.store_contract import PayoutStoreContract


class TestMemoryStore(PayoutStoreContract):
    @pytest.fixture
    def db(self) -> MemoryPayoutsStore:
        return MemoryPayoutsStore()
