"""`creatorflow infra up|down|status`: the embedded servers, left running in the background."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from faststream.security import BaseSecurity
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from shared.runtime.config import KafkaKind, Settings, settings_problems
from shared.runtime.db import create_pool, migrate
from shared.runtime.kafka import ensure_topics
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import kafka_security, load_settings
from shared.tools.infra import EmbeddedInfra, InfraError, InfraUrls, read_state, redact
from shared.tools.infra.files import shell_exports, write_private
from shared.tools.infra.stack import DetachedState, start_stopped, stop_detached
from shared.tools.schemas import SERVICE_SCHEMAS

app = typer.Typer(
    help="Embedded Kafka, PostgreSQL and Redis for development.", no_args_is_help=True
)

ENV_FILE = "infra.env"


# `infra up` and `up` take the same --brokers.
def kafka_option(when: str = "") -> Any:
    """The `--kafka` option; `when` says when it applies, if not always."""
    return typer.Option(
        None,
        "--kafka",
        help=f"{when}embedded (Tansu, memory only) or apache (Apache Kafka, needs Java and "
        "Maven); default: CREATORFLOW_KAFKA, else embedded.",
    )


BROKERS_OPTION = typer.Option(
    None,
    "--brokers",
    help="Apache Kafka nodes, 1 or 3 (default: CREATORFLOW_KAFKA_BROKERS, else 1).",
)


@app.command()
def up(
    kafka: KafkaKind | None = kafka_option(),
    brokers: int | None = BROKERS_OPTION,
) -> None:
    """Start the embedded servers in the background, create topics and migrate the database."""
    settings = settings_with_kafka_options(kafka, brokers)
    state = read_state(settings.data_dir)
    if state is not None and all(state.alive().values()):
        console.print("[yellow]Already running.[/]")
        print_urls(state.urls, settings.data_dir, state.alive())
        return
    if state is not None and any(state.alive().values()) and _start_stopped(settings, state):
        return
    stop_detached(settings.data_dir)  # nothing of an earlier start left running
    security = kafka_security()
    infra = EmbeddedInfra(settings.data_dir.resolve(), settings, detached=True)
    with console.status("Starting Kafka, PostgreSQL and Redis..."):
        try:
            urls = infra.start()
            asyncio.run(_prepare(urls, settings, security))
        except InfraError as error:
            fail(str(error), hint=f"logs are under {settings.data_dir}/")
        except BaseException:
            infra.stop()
            raise
    env_file = settings.data_dir / ENV_FILE
    write_private(env_file, shell_exports(urls.as_env()))
    console.print("[green]The infrastructure is up.[/]")
    print_urls(urls, settings.data_dir, {name: True for name in infra.processes})
    console.print(
        f"Use it from a shell: [bold]source {env_file}[/]; stop it: creatorflow infra down"
    )


def _start_stopped(settings: Settings, state: DetachedState) -> bool:
    """Start the servers of an earlier `infra up` that stopped, leaving the running ones (and
    the services connected to them) alone; False if that cannot be done here."""
    try:
        with console.status("Starting the stopped servers again..."):
            started = start_stopped(settings.data_dir.resolve(), settings, state)
            asyncio.run(_prepare(state.urls, settings, kafka_security()))
    except InfraError as error:
        console.print(f"[yellow]{escape(str(error))}: starting everything again[/]")
        return False
    kept = sorted(name for name, alive in state.alive().items() if alive)
    console.print(
        f"[green]Started again: {', '.join(started)}[/], on the same ports; "
        f"kept running: {', '.join(kept)}."
    )
    if "kafka" in started:
        console.print(
            "[yellow]The embedded Kafka keeps its data in memory: it started empty (topics "
            "created again). Register the signing keys again (creatorflow keys add).[/]"
        )
    print_urls(state.urls, settings.data_dir, {name: True for name in state.processes})
    return True


def settings_with_kafka_options(kind: KafkaKind | None, brokers: int | None) -> Settings:
    """The settings of the environment with the command line's --kafka and --brokers on top,
    validated together: `KAFKA_REPLICATION_FACTOR=3` with `--brokers 3` is fine."""
    if kind is None and brokers is None:
        return load_settings()
    update: dict[str, object] = {}
    if kind is not None:
        update["CREATORFLOW_KAFKA"] = kind
    if brokers is not None:
        update["CREATORFLOW_KAFKA_BROKERS"] = brokers
    try:
        settings = Settings(**update)  # type: ignore[arg-type]  # by alias, over the variables
    except ValidationError as error:
        fail(
            f"invalid settings: {settings_problems(error)}",
            hint="--kafka sets CREATORFLOW_KAFKA and --brokers CREATORFLOW_KAFKA_BROKERS",
        )
    if brokers is not None and settings.kafka is not KafkaKind.APACHE:
        fail("--brokers applies to Apache Kafka", hint="add --kafka apache")
    return settings


async def _prepare(urls: InfraUrls, settings: Settings, security: BaseSecurity | None) -> None:
    await ensure_topics(
        urls.kafka_bootstrap_servers,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        security=security,
    )
    for schema in SERVICE_SCHEMAS:
        url = settings.database_url_of(schema.name) or urls.database_url
        pool = await create_pool(url, schema=schema.name)
        try:
            await migrate(pool, schema)
        finally:
            await pool.close()


@app.command()
def down() -> None:
    """Stop the servers `creatorflow infra up` started."""
    settings = load_settings()
    stopped = stop_detached(settings.data_dir)
    (settings.data_dir / ENV_FILE).unlink(missing_ok=True)
    if stopped:
        console.print(f"Stopped: {', '.join(stopped)}. Data stays in {settings.data_dir}/.")
    else:
        console.print("Nothing was running.")


@app.command()
def status() -> None:
    """Show whether the embedded servers are running and where (exit 1 if not)."""
    settings = load_settings()
    state = read_state(settings.data_dir)
    if state is None:
        fail("the embedded infrastructure is not running", hint="start it: creatorflow infra up")
    alive = state.alive()
    print_urls(state.urls, settings.data_dir, alive)
    if not all(alive.values()):
        fail(
            "some servers have stopped",
            hint="creatorflow infra up starts them again on the same ports (the others keep "
            "running)",
        )


def print_urls(urls: InfraUrls, data_dir: object, alive: dict[str, bool]) -> None:
    """The servers' URLs and whether each is `alive` (by process name: Apache Kafka's nodes
    are kafka-1, kafka-2, ...; a server started elsewhere has no process here)."""
    table = Table(title="CreatorFlow infrastructure", title_justify="left")
    table.add_column("server")
    table.add_column("url (env var)", no_wrap=True)
    table.add_column("state")
    rows = [
        ("kafka", urls.kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS"),
        ("postgres", redact(urls.database_url), "DATABASE_URL"),
        ("redis", redact(urls.redis_url) if urls.redis_url else "not configured", "REDIS_URL"),
    ]
    for name, url, var in rows:
        # Apache Kafka runs as nodes kafka-1, kafka-2, ...: all must be up.
        down = sorted(
            server for server, up in alive.items() if server.split("-")[0] == name and not up
        )
        if not down:
            state = "[green]running[/]"
        elif down == [name]:
            state = "[red]stopped[/]"
        else:  # some nodes of a cluster
            state = f"[red]stopped: {', '.join(down)}[/]"
        table.add_row(name, f"{url.replace(',', chr(10))}\n[dim]{var}[/]", state)
    console.print(table)
    if "kafka" in alive:
        where = "The embedded Kafka keeps topics in memory only; PostgreSQL and Redis"
    else:
        where = "Kafka, PostgreSQL and Redis"
    console.print(f"[dim]{where} (append-only file) persist in {data_dir}/, with the logs.[/]")
