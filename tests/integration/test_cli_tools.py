"""Operator tools against the real broker: produce, tail, dlq list and replay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from typer.testing import CliRunner

from shared.contract.events import Topic, dlq_topic, encode
from shared.contract.events.examples import valid_example
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.kafka import DeadLetters, Delivery, RetryPolicy, make_broker, partitions_of
from shared.tools.cli.console import console
from shared.tools.cli.main import app
from shared.tools.infra import InfraUrls

FROM_START = ("--from-beginning", "--no-follow")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cli_env(infra: InfraUrls, topics: None) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers, "COLUMNS": "200"}


def _feedback(tag: str, n: int) -> bytes:
    event = valid_example("match.feedback")
    return encode(event.model_copy(update={"id": f"{tag}-{n}", "source": tag}))


def test_produce_validates_then_sends_and_tail_shows(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    tag = f"cli-{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(
        _feedback(tag, 1) + b"\n" + b'{"not": "an event"}\n' + _feedback(tag, 2) + b"\n"
    )
    refused = runner.invoke(app, ["produce", Topic.MATCH_FEEDBACK, str(lines)], env=cli_env)
    assert refused.exit_code == 1
    assert "events.jsonl:2" in refused.output and "nothing sent" in refused.output

    sent = runner.invoke(
        app, ["produce", Topic.MATCH_FEEDBACK, str(lines), "--skip-invalid"], env=cli_env
    )
    assert sent.exit_code == 0, sent.output
    assert "Sent 2 event(s)" in sent.output

    shown = runner.invoke(
        app,
        ["tail", Topic.MATCH_FEEDBACK, "--from-beginning", "--no-follow"],
        env=cli_env,
    )
    assert shown.exit_code == 0, shown.output
    assert f"{tag}-1" in shown.output and f"{tag}-2" in shown.output
    # On a narrow terminal (or a pipe) a value stays on its line: the JSON can be piped on.
    narrow = subprocess.run(
        [sys.executable, "-m", "shared.tools.cli", "tail", Topic.MATCH_FEEDBACK, *FROM_START],
        env={**os.environ, **cli_env, "COLUMNS": "20"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert f'"id": "{tag}-1"' in narrow.stdout, narrow.stdout

    unknown = runner.invoke(app, ["tail", "no.such.topic"], env=cli_env)
    assert unknown.exit_code == 1 and "unknown topic" in unknown.output


def test_tail_masks_payout_destinations(cli_env: dict[str, str], tmp_path: Path) -> None:
    destination = f"acct_tail_{uuid.uuid4().hex[:10]}"
    example = valid_example("creator.payout-account.upserted")
    data = example.data.model_copy(update={"destination": SecretStr(destination)})
    event = example.model_copy(update={"id": f"evt-{uuid.uuid4().hex[:10]}", "data": data})
    lines = tmp_path / "accounts.jsonl"
    lines.write_bytes(encode(event) + b"\n")
    runner = CliRunner()
    sent = runner.invoke(app, ["produce", Topic.CREATOR_PAYOUT_ACCOUNTS, str(lines)], env=cli_env)
    assert sent.exit_code == 0, sent.output
    shown = runner.invoke(
        app,
        ["tail", Topic.CREATOR_PAYOUT_ACCOUNTS, "--from-beginning", "--no-follow"],
        env=cli_env,
    )
    assert shown.exit_code == 0, shown.output
    assert event.data.creator_id in shown.output and "masked: data.destination" in shown.output
    assert destination not in shown.output


def test_dlq_list_and_replay_once(cli_env: dict[str, str], infra: InfraUrls) -> None:
    tag = f"dlq-{uuid.uuid4().hex[:8]}"
    original = _feedback(tag, 1)

    delivery = Delivery(Topic.MATCH_FEEDBACK, 0, 42, b"campaign-1", original, ())
    # Two services consume the topic: each dead-letters its own copy.
    _dead_letter(infra, delivery, "unknown campaign: fixed upstream since", tag, f"{tag}-other")
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", Topic.MATCH_FEEDBACK], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert "unknown campaign" in listed.output
    assert "service" in listed.output and "record(s)" in listed.output
    assert f"{tag}-1" in listed.output  # the event id, to match it with what was sent
    newest = runner.invoke(app, ["dlq", "list", Topic.MATCH_FEEDBACK, "--limit", "1"], env=cli_env)
    assert "the newest 1 shown (--limit N for more)" in newest.output, newest.output
    # On a terminal of 80 columns, one block per message: ids whole, on one line each.
    wide = console.width
    console.width = 80
    try:
        narrow = runner.invoke(app, ["dlq", "list", Topic.MATCH_FEEDBACK], env=cli_env)
    finally:
        console.width = wide
    assert narrow.exit_code == 0, narrow.output
    assert f"event id {tag}-1\n" in narrow.output
    assert "EventRejected: unknown campaign: fixed upstream since" in narrow.output
    assert f"service {tag}-other  replayed no" in narrow.output

    end_before = asyncio.run(_end_offsets(infra, Topic.MATCH_FEEDBACK))
    replayed = runner.invoke(app, ["dlq", "replay", Topic.MATCH_FEEDBACK], env=cli_env)
    assert replayed.exit_code == 0, replayed.output
    assert "Replayed" in replayed.output
    again = runner.invoke(app, ["dlq", "replay", Topic.MATCH_FEEDBACK], env=cli_env)
    assert "Replayed 0 message(s)" in again.output

    back = asyncio.run(_read_from(infra, Topic.MATCH_FEEDBACK, end_before))
    mine = [(value, headers) for value, headers in back if value == original]
    assert len(mine) == 1, "replayed exactly once, whatever the number of copies"
    headers = mine[0][1]
    assert "dlq.replayed.from" in headers
    assert not any(k.startswith("dlq.error") for k in headers)


def test_dlq_replay_skips_records_whose_secrets_were_masked(
    cli_env: dict[str, str], infra: InfraUrls
) -> None:
    """A masked payout account is not the event its producer sent: replaying it would store
    a destination of asterisks, so it stays in the DLQ and the operator is told."""
    event = valid_example("creator.payout-account.upserted")
    original = encode(event.model_copy(update={"id": f"masked-{uuid.uuid4().hex[:8]}"}))

    delivery = Delivery(Topic.CREATOR_PAYOUT_ACCOUNTS, 0, 7, b"cr-1", original, ())
    _dead_letter(infra, delivery, "refused upstream", "cli-test")
    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", Topic.CREATOR_PAYOUT_ACCOUNTS], env=cli_env)
    assert listed.exit_code == 0 and "data.destination" in listed.output, listed.output
    end_before = asyncio.run(_end_offsets(infra, Topic.CREATOR_PAYOUT_ACCOUNTS))
    replayed = runner.invoke(app, ["dlq", "replay", Topic.CREATOR_PAYOUT_ACCOUNTS], env=cli_env)
    assert replayed.exit_code == 0, replayed.output
    assert "Replayed 0 message(s)" in replayed.output
    assert "Skipped 1 message(s) whose secret fields were masked" in replayed.output
    assert asyncio.run(_read_from(infra, Topic.CREATOR_PAYOUT_ACCOUNTS, end_before)) == []


def test_dlq_replay_leaves_out_what_is_wrong_for_good(
    cli_env: dict[str, str], infra: InfraUrls
) -> None:
    """`--skip OFFSET` leaves a dead letter (every service's copy of its record) in the DLQ,
    unsent, and later replays pass it too; the dry run lists what would go and what not."""
    topic = Topic.BRAND_MATCH_REQUESTS
    tag = f"skip-{uuid.uuid4().hex[:8]}"
    event = valid_example("match.requested")
    fixed, broken = (
        encode(event.model_copy(update={"id": f"{tag}-{n}", "source": tag})) for n in (1, 2)
    )
    _dead_letter(infra, Delivery(topic, 0, 11, b"cmp-3", fixed, ()), "fixed since", tag)
    _dead_letter(infra, Delivery(topic, 0, 12, b"cmp-3", broken, ()), "wrong", tag, f"{tag}-b")
    dead = asyncio.run(_read_from(infra, dlq_topic(topic), {0: 0}, offsets=True))
    [kept] = [offset for value, _, offset in dead if value == fixed]
    wrong = [offset for value, _, offset in dead if value == broken]
    assert len(wrong) == 2  # one copy per service

    runner = CliRunner()
    unknown = runner.invoke(app, ["dlq", "replay", topic, "--skip", "999999"], env=cli_env)
    assert unknown.exit_code == 1
    assert "--skip 999999: no dead letter waiting for replay" in unknown.output
    planned = runner.invoke(
        app, ["dlq", "replay", topic, "--dry-run", "--skip", str(wrong[0])], env=cli_env
    )
    assert planned.exit_code == 0, planned.output
    assert f"would replay offset {kept}: key cmp-3, event {tag}-1, EventRejected" in planned.output
    assert f"would leave out offset {wrong[0]}: key cmp-3, event {tag}-2" in planned.output

    end_before = asyncio.run(_end_offsets(infra, topic))
    replayed = runner.invoke(app, ["dlq", "replay", topic, "--skip", str(wrong[0])], env=cli_env)
    assert replayed.exit_code == 0, replayed.output
    assert "Left out 1 message(s) (--skip)" in replayed.output
    back = [value for value, _ in asyncio.run(_read_from(infra, topic, end_before))]
    assert back.count(fixed) == 1 and broken not in back
    again = runner.invoke(app, ["dlq", "replay", topic, "--dry-run"], env=cli_env)
    assert f"event {tag}-2" not in again.output


def test_dlq_replay_says_a_cancellation_is_dated_by_its_replay(
    cli_env: dict[str, str], infra: InfraUrls
) -> None:
    tag = f"dlq-{uuid.uuid4().hex[:8]}"
    cancelled = valid_example("deal.cancelled").model_copy(update={"id": f"{tag}-1"})
    delivery = Delivery(
        Topic.CAMPAIGN_DEALS, 0, 7, cancelled.subject.encode(), encode(cancelled), ()
    )
    _dead_letter(infra, delivery, "not the deal's brand: key registry behind", f"{tag}-svc")
    shown = CliRunner().invoke(
        app, ["dlq", "replay", Topic.CAMPAIGN_DEALS, "--dry-run"], env=cli_env
    )
    assert shown.exit_code == 0, shown.output
    assert f"event {tag}-1" in shown.output
    assert "deal.cancelled would be written back: each ends its deal no earlier than its" in (
        " ".join(shown.output.split())
    )


def _dead_letter(infra: InfraUrls, delivery: Delivery, reason: str, *services: str) -> None:
    """Send `delivery` to its topic's DLQ as each of `services` would, rejected for `reason`."""

    async def send() -> None:
        broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
        await broker.connect()
        try:
            for service in services:
                await DeadLetters(broker, service=service, retry=RetryPolicy()).send(
                    delivery, "EventRejected", reason
                )
        finally:
            await broker.stop()

    asyncio.run(send())


async def _end_offsets(infra: InfraUrls, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [topic])
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _read_from(
    infra: InfraUrls, topic: str, start: dict[int, int], *, offsets: bool = False
) -> list[Any]:
    """(value, headers) of each record from `start` on; with `offsets`, its offset too."""
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in start]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp.partition])
        found: list[Any] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers or ()}
                    found.append(
                        (r.value or b"", headers, r.offset)
                        if offsets
                        else (r.value or b"", headers)
                    )
        return found
    finally:
        await consumer.stop()


@pytest.mark.skipif(
    Settings().kafka is not KafkaKind.EMBEDDED,
    reason="the embedded broker has no authorizer; Apache Kafka's ACLs are tested on their own",
)
def test_acls_applied_to_a_broker_without_acls_fail_in_one_line(
    cli_env: dict[str, str],
) -> None:
    done = CliRunner().invoke(app, ["kafka", "acls", "--apply"], env=cli_env)
    assert done.exit_code == 1
    assert "the cluster did not take the ACLs" in done.output
    assert "Traceback" not in done.output
