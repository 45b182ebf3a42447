"""Faults injected while the workload flows, and the supervisor that restarts what they kill.

The supervisor plays the part of compose's `restart: unless-stopped`: any instance that is
not running (killed, or exited on its own) is started again and waited for until ready.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared.contract.events import TOPICS, dlq_topic
from shared.runtime.kafka import client_options, partitions_of
from shared.tools.infra import EmbeddedInfra
from shared.tools.infra.apache_kafka import ApacheKafkaCluster
from shared.tools.infra.process import InfraError
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses, service_metrics
from tests.chaos.rails import ChaosRails

Say = Callable[[str], None]

FEE_SCHEDULE_AFTER_CHANGE: Final = "per_deliverable"


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class FaultPlan:
    """What to break, within `window_seconds` of the workload's start."""

    window_seconds: float
    seed: int = 5
    kills_per_service: int = 3
    postgres_down_seconds: float = 10.0
    redis_down_seconds: float = 2.0
    second_instance_seconds: float = 12.0
    # On a 3-node Apache Kafka: kill -9 a busy partition's leader, kill -9 the active
    # controller, one broker down this long, then a rolling restart of all three.
    broker_down_seconds: float = 30.0
    broker_restart_delay_seconds: float = 5.0
    # The rails (tests/chaos/rails.py): Wise answers this many fundings after the client gave
    # up; this many settled Stripe and Wise payouts each come back 3 simulated days later,
    # told by duplicated, reordered and replayed webhooks; PayPal is down this long.
    rail_timeouts: int = 3
    returns_per_rail: int = 3
    rail_down_seconds: float = 60.0


@dataclass(frozen=True)
class Fault:
    what: str
    began: float  # monotonic
    ended: float
    detail: str = ""

    @property
    def outage(self) -> bool:
        """A server the services need (PostgreSQL, a broker) was down: nothing restarted
        meanwhile can be ready before it is back."""
        return self.what.startswith(OUTAGES)


# The faults that take down a server every service needs (Redis is not one: payouts, its one
# user, goes on without it).
OUTAGES: Final = (
    "PostgreSQL down",
    "kill -9 the leader",
    "kill -9 the active controller",
    "one broker down",
    "rolling restart",
)


@dataclass(frozen=True)
class Restart:
    label: str
    began: float  # monotonic: when the instance was found gone
    seconds: float  # to ready

    def during(self, fault: Fault) -> bool:
        return fault.began < self.began + self.seconds and self.began < fault.ended


async def consumed(http_port: int) -> float:
    """Events an instance has applied so far, from its `/metrics` (0 if it does not answer)."""
    try:
        families = await service_metrics(http_port, request_seconds=2.0)
    except httpx.HTTPError:
        return 0.0
    return sum(
        sample.value
        for family in families
        if family.name == "creatorflow_events_consumed"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def until_busy(http_port: int, seconds: float = 10.0) -> bool:
    """Wait until the instance is applying events (its count moves within 50 ms), so a kill
    lands mid-batch; False if it stayed idle for `seconds`."""
    deadline = time.monotonic() + seconds
    before = await consumed(http_port)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = await consumed(http_port)
        if now > before:
            return True
        before = now
    return False


@dataclass
class Supervisor:
    processes: ServiceProcesses
    say: Say
    restart_delay: float = 0.5
    desired: dict[str, str] = field(default_factory=dict)  # label -> service
    unexpected_exits: list[str] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    # First starts of instances added while the run goes on (a second instance joining):
    # timed like restarts but told apart, since nothing was killed.
    additions: list[Restart] = field(default_factory=list)
    _starting: set[str] = field(default_factory=set)
    _ever_up: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.desired.update({label: label for label in self.processes.running})
        self._ever_up.update(self.processes.running)

    async def run(self) -> None:
        while True:
            for label, code in self.processes.exited().items():
                if label not in self._starting:
                    self.unexpected_exits.append(f"{label} exited with code {code}")
                    self.say(f"{label} exited on its own with code {code}")
                    await self.processes.kill(label)
            for label, service in self.desired.items():
                if label not in self.processes.running and label not in self._starting:
                    self._starting.add(label)
                    task = asyncio.create_task(self._bring_up(label, service))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.1)

    async def _bring_up(self, label: str, service: str) -> None:
        began = time.monotonic()
        try:
            await asyncio.sleep(self.restart_delay)
            while label in self.desired:
                await self.processes.launch(service, label)
                try:
                    await self.processes.wait_ready(label, seconds=120)
                except InfraError:
                    self.say(f"{label} stopped during start-up; starting it again")
                    if label in self.processes.running:
                        await self.processes.kill(label)
                    await asyncio.sleep(1.0)
                    continue
                start = Restart(label, began, time.monotonic() - began)
                if label in self._ever_up:
                    self.restarts.append(start)
                    self.say(f"{label} ready again {start.seconds:.1f} s after it was found gone")
                else:
                    self._ever_up.add(label)
                    self.additions.append(start)
                    self.say(f"{label} ready {start.seconds:.1f} s after it was asked for")
                return
        finally:
            self._starting.discard(label)

    def starting(self, label: str) -> bool:
        return label in self._starting

    def up_but(self, label: str, service: str) -> bool:
        """Every desired instance of `service` other than `label` is running and ready."""
        return all(
            other in self.processes.running and not self.starting(other)
            for other, of in self.desired.items()
            if of == service and other != label
        )

    async def running(self, label: str) -> None:
        """Wait until `label` is up (it may be restarting after an earlier fault)."""
        await until(lambda: not self.starting(label) and label in self.processes.running)

    async def settled(self) -> None:
        """Wait until every desired instance is up and nothing is starting."""
        await until(lambda: not self._starting and set(self.desired) <= set(self.processes.running))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Injector:
    plan: FaultPlan
    infra: EmbeddedInfra
    supervisor: Supervisor
    redis_url: str
    say: Say
    rails: ChaosRails | None = None
    database_url: str = ""
    faults: list[Fault] = field(default_factory=list)

    async def run(self, started: float) -> None:
        """Run every fault of the plan at its seeded moment after `started` (monotonic)."""
        rng = random.Random(self.plan.seed)
        window = self.plan.window_seconds
        moments: list[tuple[float, Callable[[], asyncio.Future[None] | object]]] = []
        payouts_restarts = []
        for service in SERVICES:
            for _ in range(self.plan.kills_per_service):
                at = rng.uniform(0.05, 0.95) * window
                moments.append((at, self._killer(service)))
                if service == "payouts":
                    payouts_restarts.append(at)
            moments.append((rng.uniform(0.05, 0.6) * window, self._second_instance(service)))
        moments.append((rng.uniform(0.2, 0.6) * window, self._postgres_outage))
        moments.append((rng.uniform(0.1, 0.9) * window, self._redis_flush_and_restart))
        # The new setting takes effect at payouts' next restart: at least one follows it.
        change = min(rng.uniform(0.2, 0.5) * window, max(payouts_restarts, default=0) - 1.0)
        moments.append((max(change, 0.0), self._fee_schedule_change))
        if self.broker_drills is not None:
            moments.append((rng.uniform(0.05, 0.2) * window, self._broker_faults))
        if self.rails is not None:
            moments.append((rng.uniform(0.1, 0.5) * window, self._rail_timeouts))
            moments.append((rng.uniform(0.2, 0.5) * window, self._rail_down))
            moments.append((rng.uniform(0.6, 0.9) * window, self._returns))
        await asyncio.gather(*(self._at(started + at, act) for at, act in moments))

    @property
    def broker_drills(self) -> BrokerDrills | None:
        """Broker faults need a replicated cluster this run controls: 3 Apache Kafka nodes."""
        cluster = self.infra.apache_kafka
        if cluster is None or len(cluster.nodes) < 3:
            return None
        return BrokerDrills(self.infra, cluster, self.plan, self._record, self.say)

    async def _broker_faults(self) -> None:
        drills = self.broker_drills
        assert drills is not None
        await drills.run()

    @staticmethod
    async def _at(moment: float, act: Callable[[], object]) -> None:
        await asyncio.sleep(max(0.0, moment - time.monotonic()))
        result = act()
        if asyncio.iscoroutine(result):
            await result

    def _record(self, what: str, began: float, detail: str = "") -> None:
        self.faults.append(Fault(what, began, time.monotonic(), detail))
        self.say(f"fault: {what}" + (f" ({detail})" if detail else ""))

    def _killer(self, service: str) -> Callable[[], object]:
        async def kill() -> None:
            processes = self.supervisor.processes
            while True:
                await self.supervisor.running(service)
                instance = processes.running[service]
                busy = await until_busy(instance.http_port)
                # Meanwhile another fault may have killed it, and a new one may be starting.
                if processes.running.get(service) is instance and not self.supervisor.starting(
                    service
                ):
                    break
            began = time.monotonic()
            await processes.kill(service)
            self._record(f"kill -9 {service}", began, "while applying events" if busy else "idle")

        return kill

    def _second_instance(self, service: str) -> Callable[[], object]:
        async def join_and_leave() -> None:
            label = f"{service}-2"
            began = time.monotonic()
            self.supervisor.desired[label] = service
            self.say(f"fault: a second {service} instance joins the group")
            await asyncio.sleep(self.plan.second_instance_seconds)
            del self.supervisor.desired[label]
            await until(lambda: not self.supervisor.starting(label))
            if self.infra.apache_kafka is None:
                # The embedded broker (Tansu 0.6) keeps a member that leaves the group while
                # another one's join has started a rebalance as the group's leader for good:
                # nobody is assigned partitions again, and each restarted instance of the
                # service waits for them for ever (docs/apache-kafka.md). So the instance
                # leaves once the others are up, with no join of theirs under way.
                await until(lambda: self.supervisor.up_but(label, service))
            if label in self.supervisor.processes.running:
                await self.supervisor.processes.terminate(label)
            self._record(f"second {service} instance joined and left", began)

        return join_and_leave

    async def _fee_schedule_change(self) -> None:
        """The fee schedule setting changes: every payouts instance (re)started from now on
        runs the other one, while instances already running keep the first (a rolling deploy
        with mixed settings). Deals stored before keep theirs; none is paid twice.

        It rides on the planned restarts rather than adding one: an extra SIGTERM restart,
        landing as the second instance left the group, kept the new instance from being
        assigned partitions for minutes on the embedded broker (seen in the small suite)."""
        began = time.monotonic()
        processes = self.supervisor.processes
        processes.env = {**processes.env, "PAYOUTS_FEE_SCHEDULE": FEE_SCHEDULE_AFTER_CHANGE}
        self._record(
            f"payouts redeployed with PAYOUTS_FEE_SCHEDULE={FEE_SCHEDULE_AFTER_CHANGE}", began
        )

    async def _rail_timeouts(self) -> None:
        assert self.rails is not None
        began = time.monotonic()
        stalled = await self.rails.time_out_after_paying(self.plan.rail_timeouts, self.say)
        self._record("Wise timed out after paying", began, f"{stalled} fundings")

    async def _rail_down(self) -> None:
        assert self.rails is not None
        began = time.monotonic()
        await self.rails.down(self.plan.rail_down_seconds, self.say)
        self._record(f"PayPal down {time.monotonic() - began:.1f} s", began)

    async def _returns(self) -> None:
        assert self.rails is not None
        began = time.monotonic()
        back = await self.rails.return_settled(
            self.database_url, self.supervisor.processes, self.plan.returns_per_rail, self.say
        )
        hooks = self.rails.webhooks
        self._record(
            "payouts returned 3 simulated days after paid",
            began,
            f"{len(back)} returns; webhooks: {hooks.deliveries} deliveries, "
            f"{hooks.duplicates} duplicated, {hooks.reordered} reordered, {hooks.replays} replayed",
        )

    async def _postgres_outage(self) -> None:
        began = time.monotonic()
        self.say(f"fault: PostgreSQL stops for {self.plan.postgres_down_seconds:.0f} s")
        self.infra.stop_server("postgres")
        await asyncio.sleep(self.plan.postgres_down_seconds)
        self.infra.start_server("postgres")
        self._record(f"PostgreSQL down {time.monotonic() - began:.1f} s", began)

    async def _redis_flush_and_restart(self) -> None:
        began = time.monotonic()
        client = redis.Redis.from_url(self.redis_url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        self.infra.stop_server("redis")
        await asyncio.sleep(self.plan.redis_down_seconds)
        self.infra.start_server("redis")
        self._record("Redis flushed and restarted", began)


@dataclass
class BrokerDrills:
    """Broker faults on a 3-node cluster, one at a time, each once every partition has all its
    replicas in sync again (as an operator's rolling restart waits): with
    min.insync.replicas=2, two nodes down together would stop writes rather than test them."""

    infra: EmbeddedInfra
    cluster: ApacheKafkaCluster
    plan: FaultPlan
    record: Callable[[str, float, str], None]
    say: Say

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap_servers

    async def run(self) -> None:
        await self._kill_busiest_leader()
        await self._kill_active_controller()
        await self._one_broker_down()
        await self._rolling_restart()

    async def _kill_busiest_leader(self) -> None:
        await until_in_sync(self.bootstrap)
        topic, partition, leader = await busiest_partition(self.bootstrap)
        name = self.cluster.node_by_id(leader).name
        began = time.monotonic()
        self.infra.kill_server(name)
        self.say(f"fault: kill -9 {name}, leader of {topic}[{partition}]")
        await asyncio.sleep(self.plan.broker_restart_delay_seconds)
        await asyncio.to_thread(self.infra.start_server, name)
        where = f"{name}, {topic}[{partition}]"
        self.record("kill -9 the leader of a busy partition", began, where)

    async def _kill_active_controller(self) -> None:
        await until_in_sync(self.bootstrap)
        controller = self.cluster.active_controller()
        assert controller is not None, "no node names a quorum leader"
        began = time.monotonic()
        self.infra.kill_server(controller.name)
        self.say(f"fault: kill -9 {controller.name}, the active controller")
        await asyncio.sleep(self.plan.broker_restart_delay_seconds)
        await asyncio.to_thread(self.infra.start_server, controller.name)
        self.record("kill -9 the active controller", began, controller.name)

    async def _one_broker_down(self) -> None:
        await until_in_sync(self.bootstrap)
        name = self.cluster.nodes[1].name
        began = time.monotonic()
        self.say(f"fault: {name} stops for {self.plan.broker_down_seconds:.0f} s")
        await asyncio.to_thread(self.infra.stop_server, name)
        await asyncio.sleep(self.plan.broker_down_seconds)
        await asyncio.to_thread(self.infra.start_server, name)
        self.record(f"one broker down {time.monotonic() - began:.1f} s", began, name)

    async def _rolling_restart(self) -> None:
        began = time.monotonic()
        self.say("fault: rolling restart of every broker")
        for node in self.cluster.nodes:
            await until_in_sync(self.bootstrap)
            await asyncio.to_thread(self.infra.stop_server, node.name)
            await asyncio.to_thread(self.infra.start_server, node.name)
        await until_in_sync(self.bootstrap)
        self.record("rolling restart of every broker", began, "")


async def until_in_sync(bootstrap: str, seconds: float = 300.0) -> None:
    """Wait until every partition of every topic has a leader and all its replicas in sync."""
    deadline = time.monotonic() + seconds
    lagging: list[str] = []
    while time.monotonic() < deadline:
        lagging = [
            f"{t['topic']}[{p['partition']}]"
            for t in await _described_topics(bootstrap)
            for p in t["partitions"]
            if p["leader"] < 0 or len(p["isr"]) < len(p["replicas"])
        ]
        if not lagging:
            return
        await asyncio.sleep(0.5)
    raise InfraError(f"partitions still under-replicated after {seconds:.0f} s: {lagging[:5]}")


async def busiest_partition(bootstrap: str) -> tuple[str, int, int]:
    """(topic, partition, leader node id) of the input partition with the most records."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap))
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, TOPICS)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    busiest = max(partitions, key=lambda tp: ends[tp])
    leaders = {
        (t["topic"], p["partition"]): p["leader"]
        for t in await _described_topics(bootstrap)
        for p in t["partitions"]
    }
    return busiest.topic, busiest.partition, leaders[(busiest.topic, busiest.partition)]


async def _described_topics(bootstrap: str) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(**client_options(bootstrap), request_timeout_ms=5000)
    try:
        await admin.start()
        described: list[dict[str, Any]] = await admin.describe_topics(
            [*TOPICS, *(dlq_topic(t) for t in TOPICS)]
        )
        return described
    except KafkaError:
        return [{"topic": "(cluster unreachable)", "partitions": [_UNKNOWN_PARTITION]}]
    finally:
        await admin.close()


_UNKNOWN_PARTITION: Final = {"partition": -1, "leader": -1, "isr": [], "replicas": [0]}
