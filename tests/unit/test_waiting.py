"""tests.support.waiting.eventually: polls a coroutine function or a plain one, and names
what was awaited when it gives up."""

from __future__ import annotations

import pytest

from tests.support.waiting import eventually


async def test_a_plain_check_is_polled_until_it_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    await eventually(third_time, 10, what="the third call")
    assert len(calls) == 3


async def test_a_coroutine_check_is_awaited_until_it_holds() -> None:
    calls: list[int] = []

    async def second_time() -> bool:
        calls.append(1)
        return len(calls) == 2

    await eventually(second_time, 10, what="the second call")
    assert len(calls) == 2


async def test_a_check_that_never_holds_fails_naming_it() -> None:
    with pytest.raises(AssertionError, match=r"the impossible not met within 0\.1s"):
        await eventually(lambda: False, 0.1, what="the impossible")
