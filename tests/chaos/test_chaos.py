"""The fault suite at a small scale: 100 deals (200 confirmations) through the three services
while each is killed twice, a second instance of each joins and leaves, PostgreSQL is down
for 10 s and Redis is flushed and restarted; on the rails, Wise times out after paying twice,
two settled Stripe and two settled Wise payouts come back 3 simulated days later (told by
duplicated, reordered and replayed webhooks) and PayPal is down for 12 s; on a 3-broker
Apache Kafka (`make test-kafka`), a busy partition's leader and the active controller are
killed, a broker stops for 15 s and all three restart in turn. `make chaos` runs the same at
full scale."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.runtime.config import KafkaKind, Settings
from tests.chaos.faults import FaultPlan
from tests.chaos.run import chaos
from tests.chaos.workload import ChaosConfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILLS = 2
BROKER_DOWN_SECONDS = 15.0  # `make chaos KAFKA=apache`: 30 s
RETURNS_PER_RAIL = 2
RAIL_DOWN_SECONDS = 12.0  # `make chaos`: 60 s


@pytest.mark.timeout(900)
async def test_nothing_is_lost_or_paid_twice_under_faults(tmp_path: Path) -> None:
    lines: list[str] = []
    report = await chaos(
        ChaosConfig(deals=100, seed=3, invalid_per_topic=2),
        lambda window: FaultPlan(
            window,
            seed=3,
            kills_per_service=KILLS,
            broker_down_seconds=BROKER_DOWN_SECONDS,
            broker_restart_delay_seconds=2.0,
            rail_timeouts=2,
            returns_per_rail=RETURNS_PER_RAIL,
            rail_down_seconds=RAIL_DOWN_SECONDS,
        ),
        publish_seconds=30,
        say=lines.append,
        root=tmp_path,
    )
    log = "\n".join(lines + report.chaos.log_tail)
    assert report.clean.converged, log
    assert report.chaos.converged, log
    failed = [f"{c.name}: {c.value}" for c in report.checks if not c.ok]
    assert not failed, f"{failed}\n{log}"

    # The faults did happen, as planned.
    faults = Counter(f.what for f in report.chaos.faults)
    for service in ("matching", "tracking", "payouts"):
        assert faults[f"kill -9 {service}"] == KILLS, faults
        assert faults[f"second {service} instance joined and left"] == 1, faults
    assert faults["Redis flushed and restarted"] == 1, faults
    assert faults["payouts redeployed with PAYOUTS_FEE_SCHEDULE=per_deliverable"] == 1, faults
    kills = [f for f in report.chaos.faults if f.what.startswith("kill -9")]
    busy = [f for f in kills if f.detail == "while applying events"]
    assert len(busy) * 2 >= len(kills), "most kills must land while a service is at work"
    outage = [f for f in report.chaos.faults if f.what.startswith("PostgreSQL down")]
    assert len(outage) == 1 and outage[0].ended - outage[0].began >= 10, faults
    assert len(report.chaos.restarts) >= 3 * KILLS, report.chaos.restarts
    [timeouts] = [f for f in report.chaos.faults if f.what == "Wise timed out after paying"]
    assert timeouts.detail != "0 fundings", timeouts
    [paypal_down] = [f for f in report.chaos.faults if f.what.startswith("PayPal down")]
    assert paypal_down.ended - paypal_down.began >= RAIL_DOWN_SECONDS, paypal_down
    outcome = report.chaos.outcome
    assert {rail for rail, _ in outcome.returns} == {"stripe", "wise"}, outcome.returns
    assert len(outcome.returns) == 2 * RETURNS_PER_RAIL, outcome.returns
    assert outcome.webhook_replays == len(outcome.returns), outcome.webhook_replays
    settings = Settings()
    if settings.kafka is KafkaKind.APACHE and settings.kafka_brokers == 3:
        for drill in (
            "kill -9 the leader of a busy partition",
            "kill -9 the active controller",
            "rolling restart of every broker",
        ):
            assert faults[drill] == 1, faults
        down = [f for f in report.chaos.faults if f.what.startswith("one broker down")]
        assert len(down) == 1 and down[0].ended - down[0].began >= BROKER_DOWN_SECONDS, faults
