"""`creatorflow demo`: the whole platform on embedded infrastructure, one campaign end to end.

brand → match → deals → posts/orders → attribution → confirmation → payout, through events
only, with the three services as separate processes. `--smoke` runs the infrastructure smoke
flow instead (every v1 event type through Kafka → consumer → PostgreSQL → Redis, and the DLQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path

import typer
from aiokafka.errors import KafkaError
from faststream.security import BaseSecurity
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from shared.contract.events import spec_for_type
from shared.tools.cli.console import console, fail
from shared.tools.cli.demo_report import (
    latency_line,
    leak_showcase,
    post_latency_line,
    print_report,
    rails_showcase,
    summary,
)
from shared.tools.cli.settings import kafka_security, load_settings
from shared.tools.demo.flow import DemoError, DemoReport, Observed, Player, awaits_funds
from shared.tools.demo.page import creator_to_show, demo_link, page_settings, serve_page
from shared.tools.demo.scenario import SERVICE_SETTINGS, DemoConfig
from shared.tools.infra import EmbeddedInfra, InfraError, InfraUrls, redact
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses, available_services
from shared.tools.infra.smoke import SmokeReport, run_smoke
from shared.tools.latency_floor import chained_floor, post_to_payout_hops


def demo(
    creators: int = typer.Option(3000, min=200, max=200_000, help="Creators in the population."),
    hires: int = typer.Option(25, min=3, max=40, help="Micro-creators the brand hires."),
    seed: int = typer.Option(7, help="Seed of the generated campaign."),
    summary_json: Path | None = typer.Option(
        None, help="Also write the figures and checks to this JSON file."
    ),
    smoke: bool = typer.Option(False, help="Run only the infrastructure smoke flow."),
    open_page: bool = typer.Option(
        False,
        "--open",
        help="After the campaign, serve one creator's payout page (its link is printed) "
        "until Ctrl-C.",
    ),
) -> None:
    """Run one campaign end to end on embedded Kafka, PostgreSQL and Redis, then stop."""
    settings = load_settings()
    root = (settings.data_dir / "demo").resolve()
    if smoke:
        _smoke(settings, root)
        return
    missing = sorted(set(SERVICES) - set(available_services()))
    if missing:
        fail(f"services missing from this version: {', '.join(missing)}", hint="try --smoke")
    # A fresh directory each run: the demo's figures must not mix with an earlier run's.
    shutil.rmtree(root, ignore_errors=True)
    logs = root / "logs"
    logs.mkdir(parents=True)
    config = DemoConfig(seed=seed, creators=creators, hires=hires)
    console.print(
        Panel(
            f"A bakery brand looks for {hires} micro-creators among {creators:,}, signs deals, "
            "watches posts and promo-code orders come in, and pays every creator in their own "
            "currency once their deliverables are confirmed. Everything goes through Kafka "
            "events between three separate service processes.",
            title="CreatorFlow demo",
        )
    )
    security = kafka_security()
    infra = EmbeddedInfra(root, settings)
    began = time.monotonic()
    try:
        with console.status("Starting embedded Kafka, PostgreSQL and Redis..."):
            urls = infra.start()
        report = asyncio.run(_play(urls, security, config, logs))
        page = page_settings()
        creator = creator_to_show(report.observed)
        link = None if creator is None else asyncio.run(demo_link(urls, creator, page))
    except (InfraError, DemoError) as error:
        infra.stop()
        fail(str(error), hint=f"service logs: {logs}/")
    except BaseException:
        infra.stop()
        raise
    if not open_page:
        infra.stop()
    fee_bps = 0  # the payouts service's default PAYOUTS_PLATFORM_FEE_BPS
    result = print_report(console, report, fee_bps)
    console.print(latency_line(report))
    console.print(post_latency_line(report))
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary(report, result, fee_bps), indent=2, default=str))
    _print_summary(report, result.passed, time.monotonic() - began, root, fee_bps, open_page)
    _print_link(creator, link, open_page)
    if open_page:
        # Ctrl-C is how the page is meant to stop: uvicorn stops, then raises it again.
        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve_page(urls, page))
        finally:
            infra.stop()
        console.print("[dim]Page stopped; every process stopped.[/]")
    if not result.passed:
        fail(
            f"{len(result.attribution_wrong)} attribution(s), {len(result.payouts_wrong)} "
            f"payout(s) and {len(result.leak_wrong)} leaked-code flag(s) differ from the ground "
            "truth (marked ✗ above)",
            hint=f"service logs: {logs}/",
        )


async def _play(
    urls: InfraUrls, security: BaseSecurity | None, config: DemoConfig, logs: Path
) -> DemoReport:
    files = {name: (logs / f"{name}.log").open("a") for name in SERVICES}

    def write(name: str, line: str) -> None:
        files[name].write(line + "\n")
        files[name].flush()

    services = ServiceProcesses(SERVICES, {**urls.as_env(), **SERVICE_SETTINGS}, write)
    try:
        with console.status("Starting matching, tracking and payouts (one process each)..."):
            await services.start()
        ports = {name: s.http_port for name, s in services.running.items()}
        with _LiveProgress(config) as live:
            player = Player(
                urls.kafka_bootstrap_servers, ports, config, live.step, live.tick, security
            )
            report = await player.play()
        with console.status("Measuring the raw floor of the same Kafka hops..."):
            await _measure_floor(urls, security, report)
        return report
    finally:
        with console.status("Stopping the services..."):
            await services.stop()
        for handle in files.values():
            handle.close()


async def _measure_floor(
    urls: InfraUrls, security: BaseSecurity | None, report: DemoReport
) -> None:
    """The three hops of post -> payout done by bare clients, 200 messages at 200/s, for the
    summary's post -> payout.sent line. Only a yardstick: if the cluster refuses it (the
    demo's principal may not create topics), the summary says why and the demo goes on."""
    try:
        latencies = await chained_floor(
            urls.kafka_bootstrap_servers,
            post_to_payout_hops(),
            rate=200,
            count=200,
            security=security,
        )
    except (KafkaError, OSError, TimeoutError) as error:
        report.floor_error = f"{type(error).__name__}: {error}"
        return
    report.floor_ms = sorted(seconds * 1000 for seconds in latencies)


class _LiveProgress:
    """The campaign as it happens: a line per step and bars for what has come back."""

    def __init__(self, config: DemoConfig) -> None:
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        )
        self._deliverables = self._progress.add_task("deliverables confirmed", total=None)
        self._attributed = self._progress.add_task("deals with attribution", total=None)
        self._paid = self._progress.add_task("creators paid (fee sent)", total=None)

    def __enter__(self) -> _LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def step(self, message: str) -> None:
        self._progress.console.print(f"[dim]{time.monotonic() - self._started:6.1f}s[/] {message}")

    def tick(self, seen: Observed, deals: int) -> None:
        if not deals:
            return
        confirmed = sum(len(c) for c in seen.confirmations.values())
        paid = sum(1 for h in seen.fee_payouts().values() if h[-1][0].status in ("sent", "settled"))
        update = self._progress.update
        update(self._deliverables, completed=confirmed, total=deals * 2)
        update(self._attributed, completed=len(seen.attribution), total=deals)
        update(self._paid, completed=paid, total=deals)


def _print_summary(
    report: DemoReport,
    passed: bool,
    seconds: float,
    root: Path,
    fee_bps: int,
    serving: bool = False,
) -> None:
    sent = [
        h[-1][0]
        for h in report.observed.fee_payouts().values()
        if h[-1][0].status in ("sent", "settled")
    ]
    held = [
        h
        for h in report.observed.fee_payouts().values()
        if h[0][0].status == "held" and not awaits_funds(h[0][0])
    ]
    waited = [
        h for h in report.observed.fee_payouts().values() if any(awaits_funds(p) for p, _ in h)
    ]
    currencies = sorted({p.net.currency for p in sent if p.net is not None})
    auto = sum(
        1
        for items in report.observed.confirmations.values()
        for c, _ in items
        if c.confirmed_by == "auto"
    )
    manual = sum(len(items) for items in report.observed.confirmations.values()) - auto
    lines = [
        f"{report.events_published:,} events published by the brand, shops, collectors, onboarding",
        f"{len(report.shortlist.suggestions)} creators suggested, {len(report.hires)} hired",
        f"{auto} deliverables confirmed automatically, {manual} by the brand",
        f"{report.observed.attribution_updates} attribution updates (coalesced per batch)",
        f"{len(sent)} fee payouts sent in {len(currencies)} currencies ({', '.join(currencies)}); "
        f"{len(held)} held for a tax form, then released; {len(waited)} waited for the "
        "brand's funds, then released when they arrived",
        *_rails_lines(report, fee_bps),
        _leak_line(report),
        latency_line(report),
        post_latency_line(report),
        (
            "[green]every figure matches the ground truth[/]"
            if passed
            else "[red]mismatches: see ✗ above[/]"
        )
        + f"; {seconds:.0f}s in all; "
        + (
            "the services stopped, the servers kept for the page"
            if serving
            else "every process stopped"
        ),
        f"data and service logs: {root}/",
    ]
    console.print(
        Panel("\n".join(lines), title="Summary", border_style="green" if passed else "red")
    )


def _print_link(creator: str | None, link: str | None, open_page: bool) -> None:
    if creator is None or link is None:
        console.print("[yellow]No creator was paid: no payout page to show.[/]")
        return
    console.print(f"Creator {creator}'s payout page (the link works once, for 15 minutes):")
    # Plain print: rich would wrap a long URL.
    print(link)
    if open_page:
        console.print("[dim]Serving the page until Ctrl-C...[/]")
    else:
        console.print(
            "[dim]The servers have stopped: `creatorflow demo --open` runs the campaign again "
            "and serves the page until Ctrl-C. Operators print links with `creatorflow creators "
            "link <creator_id>`.[/]"
        )


def _smoke(settings: object, root: Path) -> None:
    from shared.runtime.config import Settings

    assert isinstance(settings, Settings)
    run_id = uuid.uuid4().hex[:8]
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
    _print_smoke(report)
    console.print(f"[dim]PostgreSQL data and server logs: {root}/ (Kafka is memory only)[/]")
    if not report.ok:
        fail("the smoke flow did not account for every event (see the tables above)")
    console.print(
        f"[bold green]OK[/] {sum(report.produced.values())} events stored and counted, "
        f"{len(report.dead_letters)} broken messages in the DLQ with their reasons, "
        f"{report.seconds:.1f}s. All servers stopped."
    )


def _print_smoke(report: SmokeReport) -> None:
    table = Table(title=f"Events of run {report.run_id}", title_justify="left")
    for column in ("event type", "topic", "published", "stored + counted"):
        table.add_column(column)
    for event_type, produced in report.produced.items():
        consumed = report.consumed.get(event_type, 0)
        style = "green" if consumed == produced else "red"
        table.add_row(
            event_type, spec_for_type(event_type).topic, str(produced), f"[{style}]{consumed}[/]"
        )
    console.print(table)
    dlq = Table(title="Dead-lettered (what a broken event looks like)", title_justify="left")
    for column in ("dlq topic", "error class", "reason"):
        dlq.add_column(column, overflow="fold")
    for letter in report.dead_letters:
        dlq.add_row(letter.topic, letter.error_class, letter.reason)
    console.print(dlq)


def _leak_line(report: DemoReport) -> str:
    """The leaked promo code as tracking flagged it, checked against the scenario's truth."""
    seen, good = leak_showcase(report)
    return f"leaked code: {seen} {'[green]✓[/]' if good else '[bold red]✗[/]'}"


def _rails_lines(report: DemoReport, fee_bps: int) -> list[str]:
    """One PayPal payout, one Wise payout and one returned payout sent again, each checked
    against the scenario's truth."""
    return [
        f"{what}: {seen} {'[green]✓[/]' if good else '[bold red]✗[/]'}"
        for what, seen, good in rails_showcase(report, fee_bps)
    ]
