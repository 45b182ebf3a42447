"""The rails' HTTP client costs no more than it must on every request."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from httpcore._synchronization import current_async_library


class _Searches(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


async def test_each_request_finds_its_async_library_without_searching_for_a_module() -> None:
    """httpcore imports sniffio on every request to tell asyncio from trio. Without sniffio
    installed, each of those imports fails after searching sys.path: about 5 % of a payouts
    replica's time while it calls a rail (pyproject.toml lists sniffio for this)."""
    searches = _Searches()
    sys.meta_path.insert(0, searches)
    try:
        assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(searches)
    assert searches.names == []
