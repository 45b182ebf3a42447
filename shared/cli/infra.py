"""`creatorflow infra up|down|status`: the embedded servers, left running in the background."""

from __future__ import annotations

import asyncio

import typer
from faststream.security import BaseSecurity
from rich.table import Table

from shared.cli.console import console, fail
from shared.cli.settings import kafka_security, load_settings
from shared.config import Settings
from shared.db import create_pool, migrate
from shared.infra import EmbeddedInfra, InfraError, InfraUrls, read_state, redact
from shared.infra.files import shell_exports, write_private
from shared.infra.stack import stop_detached
from shared.kafka import ensure_topics

app = typer.Typer(
    help="Embedded Kafka, PostgreSQL and Redis for development.", no_args_is_help=True
)

ENV_FILE = "infra.env"


@app.command()
def up() -> None:
    """Start the embedded servers in the background, create topics and migrate the database."""
    settings = load_settings()
    state = read_state(settings.data_dir)
    if state is not None and all(state.alive().values()):
        console.print("[yellow]Already running.[/]")
        _print_urls(state.urls, settings.data_dir)
        return
    stop_detached(settings.data_dir)  # a half-dead earlier start
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
    console.print("[green]Embedded infrastructure is up.[/]")
    _print_urls(urls, settings.data_dir)
    console.print(
        f"Use it from a shell: [bold]source {env_file}[/]; stop it: creatorflow infra down"
    )


async def _prepare(urls: InfraUrls, settings: Settings, security: BaseSecurity | None) -> None:
    await ensure_topics(
        urls.kafka_bootstrap_servers,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        security=security,
    )
    pool = await create_pool(urls.database_url)
    try:
        await migrate(pool)
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
    _print_urls(state.urls, settings.data_dir, alive)
    if not all(alive.values()):
        fail("some servers have stopped", hint="creatorflow infra down && creatorflow infra up")


def _print_urls(urls: InfraUrls, data_dir: object, alive: dict[str, bool] | None = None) -> None:
    table = Table(title="CreatorFlow infrastructure", title_justify="left")
    table.add_column("server")
    table.add_column("url (env var)", no_wrap=True)
    table.add_column("state")
    rows = [
        ("kafka", urls.kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS"),
        ("postgres", redact(urls.database_url), "DATABASE_URL"),
        ("redis", redact(urls.redis_url), "REDIS_URL"),
    ]
    for name, url, var in rows:
        running = alive is None or alive.get(name, True)
        table.add_row(
            name, f"{url}\n[dim]{var}[/]", "[green]running[/]" if running else "[red]stopped[/]"
        )
    console.print(table)
    console.print(
        "[dim]Kafka keeps topics in memory only; PostgreSQL and Redis (append-only file) persist "
        f"in {data_dir}/, with the logs.[/]"
    )
