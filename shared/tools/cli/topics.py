"""`creatorflow topics create`: every topic of the event contract and its DLQ."""

from __future__ import annotations

import asyncio

import typer

from shared.contract.events import TOPICS, dlq_topic
from shared.runtime.kafka import ensure_topics, settings_not_applied
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import kafka_client, load_settings

app = typer.Typer(help="Kafka topics of the event contract.", no_args_is_help=True)


@app.command()
def create(
    partitions: int | None = typer.Option(
        None, min=1, help="Partitions per topic (default: KAFKA_PARTITIONS, 3). DLQs get 1."
    ),
) -> None:
    """Create every contract topic and its `.dlq` if missing (safe to run again)."""
    settings = load_settings()
    bootstrap, security = kafka_client()
    count = partitions or settings.kafka_partitions
    try:
        created = asyncio.run(
            ensure_topics(
                bootstrap,
                partitions=count,
                replication_factor=settings.kafka_replication_factor,
                security=security,
            )
        )
        lacking = asyncio.run(settings_not_applied(bootstrap, security))
    except Exception as error:
        fail(f"could not create topics on {bootstrap}: {error}")
    total = len(TOPICS) * 2
    console.print(f"{len(created)} created, {total - len(created)} already there ({total} in all).")
    for topic in TOPICS:
        mark = "[green]+[/]" if topic in created else " "
        console.print(f" {mark} {topic}  ({dlq_topic(topic)})")
    for topic, key, wanted, found in lacking:
        # An existing topic keeps its settings: a newer release's must be added by hand.
        console.print(
            f"[yellow]{topic} has {key}={found}, not {wanted}: it was created before this "
            f"release set it. Add it: kafka-configs.sh --bootstrap-server {bootstrap} --alter "
            f"--entity-type topics --entity-name {topic} --add-config {key}={wanted}[/]"
        )
