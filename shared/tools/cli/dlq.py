"""`creatorflow dlq list|replay <topic>`: look at dead letters, re-inject them after a fix.

Replay keeps its position as the committed offset of `creatorflow-dlq-replay.<topic>`, so
a message is replayed once however often the command runs; the offset is committed only
after the messages were written back to the source topic. Dead letters whose secret fields
were masked (`dlq.masked.fields`) are not replayed: their producer must send them again, and
those an operator leaves out (`--skip`, wrong for good) stay in the DLQ, passed like the rest.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream.security import BaseSecurity
from rich.table import Table

from shared.contract.events import dlq_topic
from shared.runtime.kafka import (
    DLQ_HEADER_PREFIX,
    MASKED_FIELDS_HEADER,
    client_options,
    partitions_of,
)
from shared.tools.cli.console import console, fail
from shared.tools.cli.events import check_topic
from shared.tools.cli.settings import kafka_client, kafka_refusals

app = typer.Typer(help="Dead-letter queues: inspect and replay.", no_args_is_help=True)


def replay_group(topic: str) -> str:
    return f"creatorflow-dlq-replay.{topic}"


@app.command("list")
def list_command(
    topic: str = typer.Argument(help="Source topic, e.g. tracking.orders (not the .dlq name)."),
    limit: int = typer.Option(50, min=1, help="Show at most this many (newest last)."),
) -> None:
    """Show what is in `<topic>.dlq` and whether it was replayed already."""
    check_topic(topic)
    with kafka_refusals():
        records, replayed_up_to = asyncio.run(_read_all(*kafka_client(), topic))
    # Each service that refused a record dead-letters its own copy of it.
    sources = {_source(r) for r in records}
    title = f"{dlq_topic(topic)}: {len(records)} message(s) from {len(sources)} record(s)"
    if len(records) > limit:
        title += f", the newest {limit} shown (--limit N for more)"
    rows = [_row(r, replayed_up_to) for r in records[-limit:]]
    if console.width < WIDE_ENOUGH:
        # Ten columns on a narrow terminal fold every id over lines: one block per message.
        console.print(title, highlight=False)
        for row in rows:
            console.print(_block(row), highlight=False, soft_wrap=True, markup=False)
        return
    table = Table(title=title, title_justify="left")
    # The reason is what a reader came for: it keeps a readable width on a narrow terminal.
    # An id folded over two lines is copied wrong: ids keep their whole width (up to 48).
    whole = {n: min(48, max((len(row[n]) for row in rows), default=0)) for n in (3, 4)}
    for n, column in enumerate(COLUMNS[:6]):
        table.add_column(column, overflow="fold", min_width=whole.get(n))
    table.add_column("reason", overflow="fold", min_width=32)
    for column in COLUMNS[7:]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# The table's columns, and the terminal width below which each message is a block instead.
COLUMNS = (
    "offset",
    "source",
    "service",
    "key",
    "event id",
    "error class",
    "reason",
    "failed at",
    "masked",
    "replayed",
)
WIDE_ENOUGH = 120


def _row(record: ConsumerRecord, replayed_up_to: dict[int, int]) -> tuple[str, ...]:
    headers = _headers(record)
    done = record.offset < replayed_up_to.get(record.partition, 0)
    return (
        str(record.offset),
        "{}[{}]@{}".format(*_source(record)),
        headers.get(f"{DLQ_HEADER_PREFIX}service", "?"),
        record.key.decode("utf-8", "replace") if record.key else "-",
        _event_id(record.value),
        headers.get(f"{DLQ_HEADER_PREFIX}error.class", "?"),
        headers.get(f"{DLQ_HEADER_PREFIX}error.message", ""),
        headers.get(f"{DLQ_HEADER_PREFIX}failed.at", ""),
        headers.get(MASKED_FIELDS_HEADER, ""),
        "yes" if done else "no",
    )


def _block(row: tuple[str, ...]) -> str:
    """One message of `dlq list` as lines: what identifies it, then why it was refused."""
    shown = dict(zip(COLUMNS, row, strict=True))
    masked = f", masked {shown['masked']}" if shown["masked"] else ""
    return (
        f"\noffset {shown['offset']}  service {shown['service']}  replayed {shown['replayed']}\n"
        f"  source {shown['source']}  key {shown['key']}  event id {shown['event id']}\n"
        f"  {shown['error class']}: {shown['reason']}\n"
        f"  failed at {shown['failed at']}{masked}"
    )


def _event_id(value: bytes | None) -> str:
    """The dead letter's event id, to match it with what was sent; "-" when its bytes are
    not a JSON object with a text id (the reason then says why)."""
    return _envelope_field(value, "id")


def _envelope_field(value: bytes | None, name: str) -> str:
    try:
        document = json.loads(value or b"")
    except ValueError:
        return "-"
    found = document.get(name) if isinstance(document, dict) else None
    return found if isinstance(found, str) and found else "-"


@app.command()
def replay(
    topic: str = typer.Argument(help="Source topic whose DLQ to replay, e.g. tracking.orders."),
    dry_run: bool = typer.Option(
        False, help="List what would be replayed (and left out), send nothing."
    ),
    skip: list[int] = typer.Option(
        [],
        "--skip",
        help="A dead letter's offset (`dlq list`) to leave out, wrong for good: it stays in the "
        "DLQ, is not written back, and later replays pass it too. Repeat for each.",
    ),
) -> None:
    """Write every not-yet-replayed message of `<topic>.dlq` back to `<topic>`."""
    check_topic(topic)
    with kafka_refusals():
        outcome = asyncio.run(_replay(*kafka_client(), topic, dry_run, set(skip)))
    if isinstance(outcome, str):
        fail(outcome, hint=f"creatorflow dlq list {topic}")
    if dry_run:
        for record in outcome.records:
            console.print(f"  would replay offset {record.offset}: {_summary(record)}")
        for record in outcome.left_out:
            console.print(f"  would leave out offset {record.offset}: {_summary(record)}")
    verb = "Would replay" if dry_run else "Replayed"
    count = len(outcome.records)
    console.print(f"{verb} {count} message(s) from {dlq_topic(topic)} to {topic}.")
    if outcome.left_out:
        console.print(
            f"{'Would leave' if dry_run else 'Left'} out {len(outcome.left_out)} message(s) "
            "(--skip): they stay in the DLQ, not written back."
        )
    if outcome.masked:
        console.print(
            f"[yellow]{'Would skip' if dry_run else 'Skipped'} {outcome.masked} message(s) whose "
            "secret fields were masked in the DLQ:[/] their producer must send them again."
        )
    cancellations = [
        r for r in outcome.records if _envelope_field(r.value, "type") == "deal.cancelled"
    ]
    if cancellations:
        # A new record on campaign.deals: the broker dates it now (LogAppendTime).
        console.print(
            f"[yellow]{len(cancellations)} deal.cancelled {'would be' if dry_run else 'were'} "
            "written back: each ends its deal no earlier than its replay, less "
            "MAX_CLOCK_SKEW_SECONDS, in the services that apply it now; a service that applied "
            "it when it was first sent keeps that time.[/]"
        )


def _summary(record: ConsumerRecord) -> str:
    headers = _headers(record)
    key = record.key.decode("utf-8", "replace") if record.key else "-"
    error = headers.get(f"{DLQ_HEADER_PREFIX}error.class", "?")
    return f"key {key}, event {_event_id(record.value)}, {error}"


def _source(record: ConsumerRecord) -> tuple[str, str, str]:
    """Where the dead-lettered record was read: (topic, partition, offset)."""
    headers = _headers(record)
    topic, partition, offset = (
        headers.get(f"{DLQ_HEADER_PREFIX}source.{name}", "?")
        for name in ("topic", "partition", "offset")
    )
    return topic, partition, offset


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}


async def _drain(consumer: AIOKafkaConsumer) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    while True:
        batch = await consumer.getmany(timeout_ms=1000)
        if not batch:
            return records
        for part in batch.values():
            records.extend(part)


async def _read_all(
    bootstrap: str, security: BaseSecurity | None, topic: str
) -> tuple[list[ConsumerRecord], dict[int, int]]:
    dlq = dlq_topic(topic)
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap, security),
        group_id=replay_group(topic),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [dlq])
        replayed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in partitions}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = await _drain(consumer)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset)), replayed


@dataclass
class _Replay:
    """What a replay writes back (one copy per source record), leaves out, and skips masked."""

    records: list[ConsumerRecord] = field(default_factory=list)
    left_out: list[ConsumerRecord] = field(default_factory=list)
    masked: int = 0


async def _replay(
    bootstrap: str, security: BaseSecurity | None, topic: str, dry_run: bool, skip: set[int]
) -> _Replay | str:
    """The records not replayed yet, written back unless `dry_run`; a reason if `skip` names
    an offset that is not one of them."""
    dlq = dlq_topic(topic)
    # Partitions are assigned, not subscribed: the group only stores the replay position, so
    # no group join (and its rebalance delay) is needed. One replay at a time is the operator's
    # contract; the position is committed only after the messages are back on the topic.
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap, security),
        group_id=replay_group(topic),
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(**client_options(bootstrap, security), acks="all")
    await consumer.start()
    await producer.start()
    try:
        partitions = await partitions_of(consumer, [dlq])
        consumer.assign(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        drained = await _drain(consumer)
        unknown = skip - {r.offset for r in drained}
        if unknown:
            return (
                f"--skip {min(unknown)}: no dead letter waiting for replay in {dlq} at that offset"
            )
        plan = _plan(drained, skip)
        if dry_run or not drained:
            return plan
        for record in plan.records:
            headers = [
                (k, v) for k, v in record.headers or () if not k.startswith(DLQ_HEADER_PREFIX)
            ]
            headers.append((f"{DLQ_HEADER_PREFIX}replayed.from", str(record.offset).encode()))
            await producer.send(topic, record.value, key=record.key, headers=headers)
        await producer.flush()
        # Only now: a crash before this line replays the same messages again, never loses one.
        await consumer.commit()
        return plan
    finally:
        await producer.stop()
        await consumer.stop()


def _plan(drained: list[ConsumerRecord], skip: set[int]) -> _Replay:
    """One copy of each source record (each consuming service dead-letters its own), except
    masked ones and those a skipped copy names."""
    plan = _Replay()
    records = [r for r in drained if MASKED_FIELDS_HEADER not in _headers(r)]
    plan.masked = len(drained) - len(records)
    skipped = {_origin(r) for r in records if r.offset in skip}
    unique: dict[tuple[str, str, str], ConsumerRecord] = {}
    for record in records:
        unique.setdefault(_origin(record), record)
    for origin, record in unique.items():
        (plan.left_out if origin in skipped else plan.records).append(record)
    return plan


def _origin(record: ConsumerRecord) -> tuple[str, str, str]:
    """The source record a copy is of; a copy whose source is unknown stands for itself."""
    source = _source(record)
    return source if "?" not in source else (str(record.offset), "", "")
