"""A service asked to stop stops: each step of stopping is bounded in time and named in the
log when it is given up, and one that hangs or fails does not keep the others from running."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from shared.runtime.service import stop_step


async def test_a_step_that_hangs_is_given_up_forced_and_named() -> None:
    forced: list[str] = []
    with capture_logs() as logs:
        await stop_step(
            "payouts", "closing the database pool", lambda: asyncio.sleep(3600),
            lambda: forced.append("terminated"), 0.05,
        )  # fmt: skip
    assert forced == ["terminated"]
    [entry] = logs
    assert entry["log_level"] == "error"
    assert entry["step"] == "closing the database pool"
    assert entry["service"] == "payouts"


async def test_a_step_that_fails_is_logged_and_the_later_steps_still_run() -> None:
    ran: list[str] = []

    async def broken() -> None:
        raise ConnectionResetError("broker gone")

    async def later() -> None:
        ran.append("later")

    with capture_logs() as logs:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(stop_step, "tracking", "later", later, None, 1.0)
            stack.push_async_callback(stop_step, "tracking", "broken", broken, None, 1.0)
    assert ran == ["later"]
    assert [(e["step"], e["log_level"]) for e in logs] == [("broken", "warning")]
    assert "broker gone" in logs[0]["error"]


async def test_a_step_that_finishes_in_time_is_silent_and_not_forced() -> None:
    forced: list[str] = []
    with capture_logs() as logs:
        await stop_step("matching", "quick", lambda: asyncio.sleep(0), forced.clear, 1.0)
    assert logs == [] and forced == []


async def test_a_client_cancelling_its_own_task_inside_close_is_a_failed_step() -> None:
    ran: list[str] = []

    async def close_with_a_cancelled_fetch() -> None:
        fetch = asyncio.ensure_future(asyncio.sleep(3600))
        fetch.cancel()
        await fetch  # raises CancelledError, as aiokafka's fetcher.close does

    async def later() -> None:
        ran.append("later")

    with capture_logs() as logs:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(stop_step, "payouts", "later", later, None, 1.0)
            stack.push_async_callback(
                stop_step, "payouts", "the key reader", close_with_a_cancelled_fetch, None, 1.0
            )
    assert ran == ["later"]
    assert [(e["step"], e["log_level"]) for e in logs] == [("the key reader", "warning")]


async def test_cancelling_the_stop_itself_still_cancels_it() -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    stopping = asyncio.ensure_future(stop_step("tracking", "slow", slow, None, 3600))
    await started.wait()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
