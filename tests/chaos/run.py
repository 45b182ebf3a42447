"""One chaos run: fresh embedded servers, the three services as processes, the payment rails
(Stripe, PayPal, Wise: local servers that keep their own records, tests/chaos/rails.py), the
workload sent with a plain producer, faults, then the checks.

`python -m tests.chaos` (what `make chaos` runs) plays the workload twice: once without faults
(the clean run) and once with them, and prints how the chaos run compares with the ground truth
and with the clean run.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from aiokafka import AIOKafkaProducer

from shared.runtime.config import Settings
from shared.tools.infra import EmbeddedInfra, InfraUrls
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses
from tests.chaos.faults import Fault, FaultPlan, Injector, Restart, Supervisor
from tests.chaos.observe import (
    Check,
    Outcome,
    checks,
    converged,
    progress,
    read_database,
    read_dead_letters,
    read_provider,
)
from tests.chaos.rails import PROVIDER_TIMEOUT_SECONDS, ChaosRails
from tests.chaos.workload import ChaosConfig, Workload, generate

Say = Callable[[str], None]
CONVERGE_SECONDS = 300.0


@dataclass
class RunReport:
    name: str
    outcome: Outcome
    published: int = 0
    publish_seconds: float = 0.0
    started: float = 0.0  # monotonic: when the first record was sent
    faults: list[Fault] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    additions: list[Restart] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    converged: bool = False
    converge_seconds: float = 0.0  # after the last fault ended (or the last record was sent)
    total_seconds: float = 0.0
    log_tail: list[str] = field(default_factory=list)


def service_env(urls: InfraUrls, rails: ChaosRails, data_dir: Path) -> dict[str, str]:
    return {
        **urls.as_env(),
        "CREATORFLOW_DATA_DIR": str(data_dir),
        **rails.env(),
        # A payout claimed by an instance that is then killed waits out its lease before
        # another instance may send it again (looked up first, with the same idempotency key).
        # The shortest lease the service takes: a lookup and a send, each up to the timeout.
        "PAYOUTS_DISPATCH_LEASE_SECONDS": str(2 * PROVIDER_TIMEOUT_SECONDS + 2),
        "PAYOUTS_SANDBOX_SETTLE_AFTER_SECONDS": "0",
        # The fake rails have no limit of their own: every call still goes through the rate
        # limiter and its Redis (flushed and stopped by the faults), at a pace that is not
        # the suite's bottleneck. Up to two payouts processes run at once (one joins, leaves).
        "PAYOUTS_STRIPE_RATE_LIMIT": "1000",
        "PAYOUTS_PAYPAL_RATE_LIMIT": "1000",
        "PAYOUTS_WISE_RATE_LIMIT": "3000",
        "PAYOUTS_EXPECTED_REPLICAS": "2",
    }


async def publish(
    bootstrap: str, workload: Workload, seconds: float, say: Say
) -> tuple[int, float]:
    """Send every record, spread evenly over `seconds` (0: as fast as possible)."""
    # acks=all, as the services publish: on replicated Kafka, acks=1 may lose a record.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    began = time.monotonic()
    records = workload.records
    step = max(1, len(records) // max(1, int(seconds * 10)))
    try:
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            acks = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in chunk
            ]
            await asyncio.gather(*acks)
            if seconds:
                due = began + seconds * (start + len(chunk)) / len(records)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()
    elapsed = time.monotonic() - began
    say(f"sent {len(records):,} records in {elapsed:.1f} s")
    return len(records), elapsed


async def execute(
    name: str,
    workload: Workload,
    *,
    root: Path,
    publish_seconds: float,
    plan: FaultPlan | None,
    say: Say,
) -> RunReport:
    began = time.monotonic()
    lines: list[str] = []
    report = RunReport(name, Outcome())
    shutil.rmtree(root, ignore_errors=True)
    infra = EmbeddedInfra(root, _embedded_only(), durable=True)
    urls = infra.start()
    log = (root / "services.log").open("a", encoding="utf-8")

    def keep(label: str, line: str) -> None:
        lines.append(f"{label} | {line}")
        log.write(f"{time.monotonic() - began:8.2f} {label} | {line}\n")

    try:
        async with ChaosRails(workload) as rails:
            processes = ServiceProcesses(
                SERVICES,
                service_env(urls, rails, root / "data"),
                keep,
            )
            async with processes:
                say(f"{name}: services ready after {time.monotonic() - began:.1f} s")
                stage = Stage(infra, urls, processes, rails)
                await _drive(report, workload, stage, publish_seconds, plan, say)
            report.log_tail = lines[-60:]
    finally:
        log.close()
        infra.stop()
    report.total_seconds = time.monotonic() - began
    return report


@dataclass(frozen=True)
class Stage:
    infra: EmbeddedInfra
    urls: InfraUrls
    processes: ServiceProcesses
    rails: ChaosRails


async def _drive(
    report: RunReport,
    workload: Workload,
    stage: Stage,
    publish_seconds: float,
    plan: FaultPlan | None,
    say: Say,
) -> None:
    infra, urls, processes, rails = stage.infra, stage.urls, stage.processes, stage.rails
    supervisor = Supervisor(processes, say)
    watching = asyncio.create_task(supervisor.run())
    try:
        started = report.started = time.monotonic()
        injector = None
        faulting: asyncio.Future[None] | None = None
        if plan is not None:
            injector = Injector(
                plan,
                infra,
                supervisor,
                urls.redis_url,
                say,
                rails=rails,
                database_url=urls.database_url or "",
            )
            faulting = asyncio.ensure_future(injector.run(started))
        report.published, report.publish_seconds = await publish(
            urls.kafka_bootstrap_servers, workload, publish_seconds, say
        )
        if faulting is not None:
            await faulting
        await supervisor.settled()
        calm = time.monotonic()
        if injector is not None and injector.faults:
            report.faults = injector.faults
            calm = max(f.ended for f in injector.faults)
        report.converged = await _converge(workload, urls, rails, report.outcome, say)
        report.converge_seconds = time.monotonic() - calm
        report.restarts = supervisor.restarts
        report.additions = supervisor.additions
        report.unexpected_exits = supervisor.unexpected_exits
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await supervisor.stop()
    await read_dead_letters(urls.kafka_bootstrap_servers, report.outcome)


async def _converge(
    workload: Workload, urls: InfraUrls, rails: ChaosRails, outcome: Outcome, say: Say
) -> bool:
    """Wait until the end state is what the workload implies, saying how far it got."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    next_note = time.monotonic() + 5.0
    deals, confirmations = len(workload.payouts), len(workload.confirmations)
    while time.monotonic() < deadline:
        paid, confirmed = await progress(urls.database_url)
        if paid >= deals and confirmed >= confirmations:
            read_provider(rails, outcome)
            await read_database(urls.database_url, outcome)
            if converged(workload, outcome):
                return True
        if time.monotonic() >= next_note:
            next_note += 5.0
            say(
                f"waiting: {paid:,}/{deals:,} fee payouts sent, "
                f"{confirmed:,}/{confirmations:,} deliverables confirmed, "
                f"{sum(map(len, rails.transfers().values())):,} transfers at the rails"
            )
        await asyncio.sleep(0.5)
    read_provider(rails, outcome)
    await read_database(urls.database_url, outcome)
    return False


def _embedded_only() -> Settings:
    """Settings that start all three servers here (the Kafka CREATORFLOW_KAFKA names):
    outages need servers this run controls."""
    return Settings().model_copy(
        update={"kafka_bootstrap_servers": None, "database_url": None, "redis_url": None}
    )


@dataclass
class ChaosReport:
    workload: Workload
    clean: RunReport
    chaos: RunReport
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return self.clean.converged and self.chaos.converged and all(c.ok for c in self.checks)


async def chaos(
    config: ChaosConfig,
    plan_for: Callable[[float], FaultPlan],
    publish_seconds: float,
    say: Say,
    root: Path,
) -> ChaosReport:
    """Both runs, under `root`/clean and `root`/chaos (servers' data, `services.log`)."""
    workload = generate(config, datetime.now(UTC))
    counts = workload.counts()
    say(
        f"workload: {counts['deals']:,} deals, {counts['confirmations']:,} confirmations, "
        f"{counts['records']:,} records ({counts['sent twice']:,} sent twice, "
        f"{counts['invalid']} invalid; {counts['amended']} deals amended, "
        f"{counts['cancelled']} cancelled)"
    )
    say("clean run: no faults")
    clean = await execute(
        "clean", workload, root=root / "clean", publish_seconds=0, plan=None, say=say
    )
    say("chaos run: the same records, with faults")
    faulty = await execute(
        "chaos",
        workload,
        root=root / "chaos",
        publish_seconds=publish_seconds,
        plan=plan_for(publish_seconds),
        say=say,
    )
    return ChaosReport(workload, clean, faulty, checks(workload, faulty.outcome, clean.outcome))


def _restarts(restarts: list[Restart]) -> str:
    if not restarts:
        return "0"
    seconds = [r.seconds for r in restarts]
    return f"{len(seconds)}, median {median(seconds):.1f} s, max {max(seconds):.1f} s"


def summary(report: RunReport) -> dict[str, str]:
    outages = [f for f in report.faults if f.outage]
    alone = [r for r in report.restarts if not any(r.during(f) for f in outages)]
    return {
        "sent": f"{report.published:,} records in {report.publish_seconds:.1f} s",
        "faults": str(len(report.faults)),
        "restarts → ready": _restarts(report.restarts),
        # A restart overlapping a PostgreSQL or broker outage waits for the server, not for itself.
        "  of them with every server up": _restarts(alone),
        "instances added → ready": _restarts(report.additions),
        "exits nobody asked for": str(len(report.unexpected_exits)),
        "converged": (
            f"{report.converge_seconds:.1f} s after the last fault"
            if report.converged
            else f"NO (gave up after {CONVERGE_SECONDS:.0f} s)"
        ),
        "wall time": f"{report.total_seconds:.0f} s",
    }
