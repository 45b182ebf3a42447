"""`creatorflow up` starts again a service that stopped on its own, as compose's restart
policy does, and stops everything when one stops again right after starting."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from shared.tools.cli.up import _started, supervise
from shared.tools.infra import InfraError
from shared.tools.infra.service_processes import ServiceProcesses, member_suffix


@dataclass
class _Instance:
    name: str
    returncode: int | None = None


@dataclass
class _Services:
    """The part of ServiceProcesses `supervise` uses; `crash` ends an instance."""

    running: dict[str, _Instance] = field(default_factory=dict)
    launched: list[str] = field(default_factory=list)

    def exited(self) -> dict[str, int]:
        return {k: i.returncode for k, i in self.running.items() if i.returncode is not None}

    async def kill(self, label: str) -> None:
        self.running.pop(label)

    async def launch(self, name: str, label: str | None = None) -> Any:
        self.launched.append(label or name)
        self.running[label or name] = _Instance(name)


async def _supervised(
    services: _Services, crash_loop_seconds: float
) -> tuple[asyncio.Task[None], list[str]]:
    said: list[str] = []
    task = asyncio.create_task(
        supervise(
            cast(ServiceProcesses, services),
            asyncio.Event(),
            said.append,
            poll_seconds=0.01,
            crash_loop_seconds=crash_loop_seconds,
        )
    )
    await asyncio.sleep(0.05)
    return task, said


async def test_a_service_that_stops_on_its_own_is_started_again() -> None:
    services = _Services({"payouts": _Instance("payouts"), "tracking": _Instance("tracking")})
    task, said = await _supervised(services, crash_loop_seconds=0.0)
    services.running["payouts"].returncode = -9
    await asyncio.sleep(0.05)
    assert services.launched == ["payouts"] and not task.done()
    assert services.running["payouts"].returncode is None  # the new instance
    assert "payouts stopped on its own (exit code -9): starting it again" in said[0]
    task.cancel()


async def test_a_service_that_stops_again_right_after_starting_again_stops_everything() -> None:
    services = _Services({"payouts": _Instance("payouts")})
    task, said = await _supervised(services, crash_loop_seconds=60.0)
    services.running["payouts"].returncode = -9  # however soon: started again
    await asyncio.sleep(0.05)
    services.running["payouts"].returncode = 3  # again, within the minute: stop
    await asyncio.wait_for(task, 1.0)
    assert services.launched == ["payouts"]
    assert "stopped on its own again (exit code 3)" in said[1]
    assert "stopping everything" in said[1]


class _SlowStart:
    """Services whose start waits until it is cancelled (never ready)."""

    def __init__(self) -> None:
        self.cancelled = False

    async def start(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def test_ctrl_c_while_starting_stops_the_start() -> None:
    async def main() -> tuple[bool, bool]:
        services, stop = _SlowStart(), asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        started = await _started(cast(ServiceProcesses, services), stop)
        return started, services.cancelled

    assert asyncio.run(main()) == (False, True)


def test_a_start_that_fails_says_why() -> None:
    class _Failing:
        async def start(self) -> None:
            raise InfraError("service matching was not ready after 120s")

    with pytest.raises(InfraError, match="not ready"):
        asyncio.run(_started(cast(ServiceProcesses, _Failing()), asyncio.Event()))


def test_each_run_on_one_data_dir_gives_its_members_the_same_ids(tmp_path: Path) -> None:
    first = member_suffix(tmp_path / "data")
    assert member_suffix(tmp_path / "data") == first
    assert member_suffix(tmp_path / "other") != first  # another checkout: other members
    processes = ServiceProcesses(["payouts"], {}, lambda *_: None, instance_suffix=first)
    assert processes.instance_suffix == first
