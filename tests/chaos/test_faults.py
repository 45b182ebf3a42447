"""The fault injector itself, without servers: faults land as planned and avoid the one the
embedded broker never recovers from."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from shared.tools.infra import EmbeddedInfra
from shared.tools.infra.service_processes import ServiceProcess, ServiceProcesses
from tests.chaos.faults import FaultPlan, Injector, Supervisor


class Instances(ServiceProcesses):
    """Instances that are only labels: terminating one records it."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(["matching"], {}, lambda label, line: None)
        self.running = {label: cast(ServiceProcess, object()) for label in labels}
        self.terminated: list[str] = []

    async def terminate(self, label: str, grace_seconds: float = 20.0) -> None:
        self.running.pop(label)
        self.terminated.append(label)


async def test_a_second_instance_leaves_only_once_the_first_is_back(tmp_path: Path) -> None:
    """On the embedded broker, a member leaving the group while a restarted one joins it leaves
    the group without a leader that can assign partitions: nobody gets any again. The second
    instance waits until the first is up again before it leaves."""
    instances = Instances(["matching", "matching-2"])
    said: list[str] = []
    supervisor = Supervisor(instances, said.append)
    infra = EmbeddedInfra(tmp_path)  # never started: the embedded broker, as in `make chaos`
    plan = FaultPlan(10.0, second_instance_seconds=0.1)
    injector = Injector(plan, infra, supervisor, "redis://unused", said.append)

    supervisor._starting.add("matching")  # killed a moment ago, joining the group again
    leaving: asyncio.Task[Any] = asyncio.ensure_future(injector._second_instance("matching")())
    await asyncio.sleep(0.5)
    assert instances.terminated == [], "left while the first instance was joining"

    supervisor._starting.discard("matching")  # ready: it holds partitions
    await asyncio.wait_for(leaving, 2.0)
    assert instances.terminated == ["matching-2"]
    assert [f.what for f in injector.faults] == ["second matching instance joined and left"]
