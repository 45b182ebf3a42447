"""`creatorflow demo`: the main job on embedded infrastructure.

Until the matching, tracking and payouts services exist this runs the infrastructure smoke
flow (shared.infra.smoke) and says so.
"""

from __future__ import annotations

import asyncio
import uuid

from rich.panel import Panel
from rich.table import Table

from shared.cli.console import console, fail
from shared.cli.settings import load_settings
from shared.events import spec_for_type
from shared.infra import EmbeddedInfra, InfraError, redact
from shared.infra.smoke import SmokeReport, run_smoke


def demo() -> None:
    """Run the demo end to end on embedded Kafka, PostgreSQL and Redis, then stop them."""
    settings = load_settings()
    root = (settings.data_dir / "demo").resolve()
    run_id = uuid.uuid4().hex[:8]
    console.print(
        Panel(
            "The matching, tracking and payouts services are not built yet.\n"
            "This demo runs the [bold]infrastructure smoke flow[/]: every v1 event type through\n"
            "embedded Kafka → consumer → PostgreSQL → Redis, and two broken messages to the DLQ.",
            title="CreatorFlow demo",
            border_style="yellow",
        )
    )
    infra = EmbeddedInfra(root, settings)
    with console.status("Starting embedded Kafka, PostgreSQL and Redis...") as status:
        try:
            urls = infra.start()
        except InfraError as error:
            fail(str(error), hint=f"server logs are under {root}/")
        try:
            for name, url in urls.as_env().items():
                console.print(f"  [dim]{name}[/] {redact(url)}")
            report = asyncio.run(
                run_smoke(urls, settings, run_id=run_id, step=lambda s: status.update(s + "..."))
            )
        finally:
            status.update("Stopping the servers...")
            infra.stop()
    _print_report(report)
    console.print(f"[dim]PostgreSQL data and server logs: {root}/ (Kafka is memory only)[/]")
    if not report.ok:
        fail("the smoke flow did not account for every event (see the tables above)")
    console.print(
        f"[bold green]OK[/] {sum(report.produced.values())} events stored and counted, "
        f"{len(report.dead_letters)} broken messages in the DLQ with their reasons, "
        f"{report.seconds:.1f}s. All servers stopped."
    )


def _print_report(report: SmokeReport) -> None:
    table = Table(title=f"Events of run {report.run_id}", title_justify="left")
    table.add_column("event type")
    table.add_column("topic")
    table.add_column("published", justify="right")
    table.add_column("stored + counted", justify="right")
    for event_type, produced in report.produced.items():
        consumed = report.consumed.get(event_type, 0)
        style = "green" if consumed == produced else "red"
        table.add_row(
            event_type,
            spec_for_type(event_type).topic,
            str(produced),
            f"[{style}]{consumed}[/]",
        )
    console.print(table)
    dlq = Table(title="Dead-lettered (what a broken event looks like)", title_justify="left")
    dlq.add_column("dlq topic")
    dlq.add_column("error class")
    dlq.add_column("reason", overflow="fold")
    for letter in report.dead_letters:
        dlq.add_row(letter.topic, letter.error_class, letter.reason)
    console.print(dlq)
