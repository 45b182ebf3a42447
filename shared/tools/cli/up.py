"""`creatorflow up` and `creatorflow serve`: the platform running, for operators."""

from __future__ import annotations

import asyncio
import contextlib
import runpy
import signal
from collections.abc import Callable

import typer
from rich.panel import Panel

from shared.runtime.config import KafkaKind
from shared.tools.cli.console import console, fail
from shared.tools.cli.infra import BROKERS_OPTION, kafka_option, settings_with_kafka_options
from shared.tools.infra import EmbeddedInfra, InfraError, InfraUrls, redact, running_urls
from shared.tools.infra.service_processes import (
    SERVICES,
    ServiceProcesses,
    available_services,
    member_suffix,
)

_COLOURS = {"matching": "cyan", "tracking": "magenta", "payouts": "green"}


def serve(name: str = typer.Argument(help="matching, tracking or payouts")) -> None:
    """Run one service against the configured servers until SIGINT/SIGTERM (what compose runs)."""
    if name not in SERVICES:
        fail(f"unknown service {name!r}", hint="one of: " + ", ".join(SERVICES))
    if name not in available_services():
        fail(f"the {name} service is not part of this version yet")
    runpy.run_module(f"services.{name}", run_name="__main__", alter_sys=True)


def up(
    only: list[str] | None = typer.Option(
        None, "--service", "-s", help="Run only this service (repeatable); default: all."
    ),
    kafka: KafkaKind | None = kafka_option("When it starts the servers: "),
    brokers: int | None = BROKERS_OPTION,
) -> None:
    """Start the infrastructure (embedded unless configured) and every service, with their
    logs interleaved, until Ctrl-C; data stays in CREATORFLOW_DATA_DIR for the next run."""
    settings = settings_with_kafka_options(kafka, brokers)
    names = available_services()
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        fail(
            f"unknown or unavailable service(s): {', '.join(unknown)}",
            hint="available: " + ", ".join(names),
        )
    names = [n for n in names if not only or n in only]
    if not names:
        fail("no service is part of this version yet", hint="run `creatorflow infra up` instead")
    infra: EmbeddedInfra | None = None
    urls = running_urls(settings)
    if urls is not None and (kafka or brokers):
        console.print(
            "[yellow]Using the servers already running (creatorflow infra up): --kafka and "
            "--brokers apply only when `up` starts them.[/]"
        )
    if urls is None:
        infra = EmbeddedInfra(settings.data_dir.resolve(), settings, announce=True)
        with console.status("Starting embedded Kafka, PostgreSQL and Redis..."):
            try:
                urls = infra.start()
            except InfraError as error:
                fail(str(error), hint=f"server logs are under {settings.data_dir}/")
    try:
        asyncio.run(_run(urls, names, member_suffix(settings.data_dir.resolve())))
    except InfraError as error:
        fail(str(error))
    finally:
        if infra is not None:
            with console.status("Stopping the servers..."):
                infra.stop()
    console.print(f"Stopped. Data stays in {settings.data_dir}/ for the next `creatorflow up`.")


async def _run(urls: InfraUrls, names: list[str], suffix: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def show(name: str, line: str) -> None:
        console.print(f"[{_COLOURS.get(name, 'white')}]{name:>8} |[/] {line}", highlight=False)

    services = ServiceProcesses(names, urls.as_env(), show, instance_suffix=suffix)
    try:
        # Ctrl-C while the services start stops them: it does not wait for them to be ready.
        with console.status(f"Starting {', '.join(names)}..."):
            if not await _started(services, stop):
                return
        lines = [
            f"{name}: http://127.0.0.1:{s.http_port}/readyz" for name, s in services.running.items()
        ]
        lines += [f"{k}={redact(v)}" for k, v in urls.as_env().items()]
        console.print(Panel("\n".join(lines), title="CreatorFlow is up (Ctrl-C stops)"))
        await supervise(services, stop, lambda text: console.print(text, highlight=False))
    finally:
        with console.status("Stopping the services..."):
            await services.stop()


async def _started(services: ServiceProcesses, stop: asyncio.Event) -> bool:
    """Start `services`; False if `stop` is set first (the start is then cancelled)."""
    starting = asyncio.ensure_future(services.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return False
    starting.result()  # the InfraError of a service that did not start, if any
    return True


# A service that stops on its own is started again, as compose's restart policy does (the
# embedded broker keeps its topics only while `up` runs); one that stops again this soon
# after being started again would only go round: `up` stops.
CRASH_LOOP_SECONDS = 30.0


async def supervise(
    services: ServiceProcesses,
    stop: asyncio.Event,
    say: Callable[[str], None],
    *,
    poll_seconds: float = 0.5,
    crash_loop_seconds: float = CRASH_LOOP_SECONDS,
) -> None:
    """Until `stop` is set: start again each service that stopped on its own, unless it
    stopped again within `crash_loop_seconds` of being started again; then return."""
    clock = asyncio.get_running_loop().time
    restarted: dict[str, float] = {}  # label -> when it was started again
    while not stop.is_set():
        for label, code in services.exited().items():
            name = services.running[label].name
            if label in restarted and clock() - restarted[label] < crash_loop_seconds:
                say(
                    f"[red]{label} stopped on its own again (exit code {code}) "
                    f"{clock() - restarted[label]:.0f} s after it was started again: "
                    "stopping everything[/]"
                )
                return
            say(f"[yellow]{label} stopped on its own (exit code {code}): starting it again[/]")
            await services.kill(label)  # already ended: forgotten
            await services.launch(name, label)
            restarted[label] = clock()
        await asyncio.sleep(poll_seconds)
