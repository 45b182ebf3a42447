"""Waiting for what asynchronous services do, without sleeping a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], seconds: float = 45.0, *, what: str = "condition"
) -> None:
    """Poll `check` (a coroutine function or a plain one) until it returns True;
    AssertionError naming `what` after `seconds`."""

    async def met() -> bool:
        result = check()
        return await result if inspect.isawaitable(result) else result

    deadline = asyncio.get_running_loop().time() + seconds
    while not await met():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {seconds}s")
        await asyncio.sleep(0.05)
