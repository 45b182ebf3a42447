"""The store contract against the in-memory store (services/tracking/store/memory.py)."""

from __future__ import annotations

import pytest

from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.store.port import TrackingStore
from tests.unit.tracking.store_contract import StoreContract, ids

__all__ = ["ids"]


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> TrackingStore:
        return MemoryTrackingStore()
