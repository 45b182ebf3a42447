"""`creatorflow produce` and `creatorflow tail`: events in and out, as outside clients see them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.security import BaseSecurity
from rich.json import JSON
from rich.progress import Progress

from shared.contract.events import (
    RECORD_HEADERS,
    TOPICS,
    CloudEvent,
    EventDecodeError,
    check_key,
    check_not_future,
    decode,
    event_key,
    mask_secrets,
    spec_for_type,
)
from shared.contract.signing import sign_json
from shared.runtime.kafka import client_options, partitions_of
from shared.runtime.trust import Trust, Untrusted
from shared.tools.cli.console import console, errors, fail
from shared.tools.cli.keys import load_private_key, read_registry
from shared.tools.cli.settings import kafka_client, kafka_refusals, load_settings


def check_topic(topic: str, *, allow_dlq: bool = False) -> None:
    base = topic.removesuffix(".dlq") if allow_dlq else topic
    if base not in TOPICS:
        source = topic.removesuffix(".dlq")
        if source in TOPICS:
            fail(f"unknown topic {topic!r}", hint=f"name the source topic: {source}")
        fail(f"unknown topic {topic!r}", hint="topics: " + ", ".join(TOPICS))


def produce(
    topic: str = typer.Argument(help="Contract topic, e.g. brand.match-requests."),
    file: Path = typer.Argument(
        exists=True, dir_okay=False, help="JSON Lines: one CloudEvent per line."
    ),
    skip_invalid: bool = typer.Option(
        False, help="Send the valid lines even if some are invalid (default: send nothing)."
    ),
    sign_with: Path | None = typer.Option(
        None, help="Sign each event with this private key (`keys new` writes one)."
    ),
) -> None:
    """Validate and publish CloudEvents from a JSON Lines file, keyed by their entity id."""
    check_topic(topic)
    signing = load_private_key(sign_with) if sign_with is not None else None
    skew = timedelta(seconds=load_settings().max_clock_skew_seconds)
    lines: list[tuple[int, CloudEvent[Any], bytes]] = []
    invalid = 0
    for number, line in enumerate(file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = decode(topic, line)
            # What every consumer refuses without reading its state: caught here, nothing
            # is sent that would only be dead-lettered.
            check_key(event, event_key(event))
            check_not_future(event, datetime.now(UTC), skew)
        except EventDecodeError as error:
            invalid += 1
            errors.print(f"[red]{file}:{number}[/] {error.error_class}: {error.reason}")
            continue
        lines.append((number, event, line if signing is None else sign_json(line, signing)))
    refused: dict[int, Untrusted] = {}
    if signing is not None and lines:
        bootstrap, security = kafka_client()
        # Signed here: the key must be one every consumer accepts for these events (registered,
        # not revoked, of the right party and owner). Checked even when other lines are
        # invalid, so one run names every problem.
        with kafka_refusals():
            refused = asyncio.run(_untrusted(bootstrap, security, lines))
        for number, refusal in refused.items():
            errors.print(f"[red]{file}:{number}[/] Untrusted: {refusal.reason}")
        lines = [line for line in lines if line[0] not in refused]
    if (invalid or refused) and not skip_invalid:
        fail(
            f"{invalid + len(refused)} invalid line(s); nothing sent",
            hint="fix them (an Untrusted line: sign with a key registered for the events' "
            "owner), or pass --skip-invalid",
        )
    invalid += len(refused)
    bootstrap, security = kafka_client()
    valid = [(event_key(event), value) for _, event, value in lines]
    with kafka_refusals():
        asyncio.run(_send(bootstrap, security, topic, valid))
    console.print(
        f"Sent {len(valid)} event(s) to {topic}" + (f"; skipped {invalid}." if invalid else ".")
    )


async def _untrusted(
    bootstrap: str, security: BaseSecurity | None, lines: list[tuple[int, CloudEvent[Any], bytes]]
) -> dict[int, Untrusted]:
    """The lines whose signature the services would refuse, by line number."""
    trust = Trust(await read_registry(bootstrap, security), None, require_signatures=False)
    refused = {}
    for number, event, raw in lines:
        try:
            await trust.check(decode(spec_for_type(event.type).topic, raw), raw)
        except Untrusted as error:
            refused[number] = error
    return refused


async def _send(
    bootstrap: str,
    security: BaseSecurity | None,
    topic: str,
    messages: list[tuple[bytes, bytes]],
) -> None:
    # Acknowledged by every in-sync replica: "Sent" must not be said of a write a dying
    # leader alone had.
    producer = AIOKafkaProducer(**client_options(bootstrap, security), acks="all")
    await producer.start()
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"sending to {topic}", total=len(messages))
            sent = []
            for key, value in messages:
                sent.append(await producer.send(topic, value, key=key, headers=RECORD_HEADERS))
                progress.advance(task)
            # Each delivery's outcome: a refused write fails its own future, not the flush.
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


def tail(
    topic: str = typer.Argument(help="Topic to read, e.g. match.suggestions or a .dlq topic."),
    from_beginning: bool = typer.Option(False, help="Start at the oldest message."),
    limit: int = typer.Option(0, min=0, help="Stop after this many messages (0: no limit)."),
    follow: bool = typer.Option(True, help="Keep waiting for new messages (Ctrl-C stops)."),
) -> None:
    """Print a topic's messages as pretty CloudEvents (without joining any consumer group)."""
    check_topic(topic, allow_dlq=True)
    bootstrap, security = kafka_client()
    with contextlib.suppress(KeyboardInterrupt), kafka_refusals():
        asyncio.run(_tail(bootstrap, security, topic, from_beginning, limit, follow))


async def _tail(
    bootstrap: str,
    security: BaseSecurity | None,
    topic: str,
    from_beginning: bool,
    limit: int,
    follow: bool,
) -> None:
    consumer = AIOKafkaConsumer(**client_options(bootstrap, security), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [topic])
        if not partitions:
            fail(f"topic {topic} does not exist", hint="creatorflow topics create")
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        shown = 0
        while not limit or shown < limit:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and not follow:
                break
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
                    key = record.key.decode("utf-8", "replace") if record.key else "-"
                    console.rule(f"{record.topic}[{record.partition}]@{record.offset}  key={key}")
                    for name, value in headers.items():
                        if value:  # FastStream sends raw bytes with an empty content-type
                            console.print(f"[dim]{name}:[/] {value}", soft_wrap=True)
                    # Payout destinations are never shown, here as in dead letters.
                    value, masked = mask_secrets(record.topic, record.value or b"")
                    if masked:
                        console.print(f"[dim]masked:[/] {', '.join(masked)}")
                    _print_value(value)
                    shown += 1
                    if limit and shown >= limit:
                        return
    finally:
        await consumer.stop()


def _print_value(value: bytes) -> None:
    try:
        # Never folded at the terminal's width: a long value (a signature) stays on its line,
        # so the JSON can be copied or piped (creatorflow verify) as it is.
        console.print(JSON.from_data(json.loads(value)), soft_wrap=True)
    except (ValueError, UnicodeDecodeError):
        console.print(repr(value[:500]))
