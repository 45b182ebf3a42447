"""`creatorflow seed creators --count N`: publish a generated creator population.

(`creatorflow matching models ...`, the rankers of each brand, lives in `models_cli.py`.)

The profiles come from `shared.tools.synthetic.population` (latent niches, audiences, a share of
fake accounts) and go to `creator.profiles` as `creator.profile.upserted` events, exactly as a
data collector would send them; `creatorflow seed fx` publishes FX rates for their currencies.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import typer
from aiokafka import AIOKafkaProducer
from faststream.security import BaseSecurity

from services.matching import models_cli
from services.matching.translate import profile_payload
from shared.contract.events import (
    CloudEvent,
    FxRatesPublished,
    encode,
    event_key,
    make_event,
    spec_for_type,
)
from shared.runtime.kafka import AUTHORIZATION_ERRORS, client_options
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import kafka_client, kafka_refusals
from shared.tools.synthetic.population import generate_population, reference_fx

COMMAND_NAME = "seed"
SOURCE = "creatorflow/seed"

app = typer.Typer(help="Publish generated test data (creators, FX rates).", no_args_is_help=True)
matching = typer.Typer(help="The matching service: each brand's rankers.", no_args_is_help=True)
matching.add_typer(models_cli.app, name="models")
COMMAND_GROUPS = {COMMAND_NAME: app, "matching": matching}


async def _publish(
    bootstrap: str, security: BaseSecurity | None, events: list[CloudEvent[Any]]
) -> None:
    producer = AIOKafkaProducer(**client_options(bootstrap, security), linger_ms=20)
    await producer.start()
    try:
        pending = []
        for event in events:
            topic = spec_for_type(event.type).topic
            pending.append(await producer.send(topic, encode(event), key=event_key(event)))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _fx_event() -> CloudEvent[Any]:
    snapshot = reference_fx(datetime.now(UTC), source="creatorflow-seed")
    data = FxRatesPublished(
        base=snapshot.base, rates=dict(snapshot.rates), as_of=snapshot.as_of, source=snapshot.source
    )
    return make_event(data, source=SOURCE)


@app.command()
def creators(
    count: int = typer.Option(1000, min=1, max=2_000_000, help="How many creators."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same population."),
    fake_share: float = typer.Option(0.1, min=0.0, max=1.0, help="Share of fake accounts."),
    id_prefix: str = typer.Option("cr", help="Creator ids are <prefix>-<n>."),
    with_fx: bool = typer.Option(True, "--fx/--no-fx", help="Also publish FX rates."),
) -> None:
    """Publish COUNT generated creator profiles to creator.profiles."""
    bootstrap, security = kafka_client()
    started = time.perf_counter()
    population = generate_population(count, seed=seed, fake_share=fake_share, id_prefix=id_prefix)
    events: list[CloudEvent[Any]] = [
        make_event(profile_payload(population.profiles, i), source=SOURCE) for i in range(count)
    ]
    if with_fx:
        events.append(_fx_event())
    with kafka_refusals():
        try:
            asyncio.run(_publish(bootstrap, security, events))
        except AUTHORIZATION_ERRORS:
            raise
        except Exception as error:
            fail(f"could not publish to {bootstrap}: {error}")
    console.print(
        f"published {count} creator profiles ({int(population.is_fake.sum())} fake) "
        f"{'and FX rates ' if with_fx else ''}in {time.perf_counter() - started:.1f}s"
    )


@app.command()
def fx() -> None:
    """Publish FX rates (base USD) for every currency the generated creators use."""
    bootstrap, security = kafka_client()
    with kafka_refusals():
        try:
            asyncio.run(_publish(bootstrap, security, [_fx_event()]))
        except AUTHORIZATION_ERRORS:
            raise
        except Exception as error:
            fail(f"could not publish to {bootstrap}: {error}")
    console.print("published FX rates")
