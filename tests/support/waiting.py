"""Waiting for what asynchronous services do, without sleeping a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], seconds: float = 45.0, *, what: str = "condition"
) -> None:
    """Poll `check` until it returns True; AssertionError naming `what` after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {seconds}s")
        await asyncio.sleep(0.05)
