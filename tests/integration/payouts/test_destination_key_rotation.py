"""PAYOUTS_DESTINATION_KEY rotates while payouts flow (real Kafka and PostgreSQL).

Creators' accounts are stored under key A and the first deals paid. The service restarts with
key B, A as its previous key; once its first payouts are sent, the rotation re-encrypts every
destination in small batches while new deals are confirmed and paid and some creators send
their account again. Every payout reaches its creator's own destination, no account is put
in a cool-off, every row ends under key B, and then key B alone opens them all while key A
alone is refused. (That a destination re-sent under the new key is not taken for a changed
one is shown without timing in tests/unit/payouts/test_destinations.py.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from services.payouts.app import open_destinations
from services.payouts.destinations import DestinationCipher, new_key
from services.payouts.key_rotation import RotationProgress, rotate_destination_key
from services.payouts.providers.base import TransferAccepted, TransferRequest
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.runtime.service import ServiceConfigurationError, ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.unit.payouts.builders import account, confirmed, funded_deal, fx, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY_A, KEY_B = new_key(), new_key()
CREATORS = 30
PAID_BEFORE = 10


class RecordingProvider(SandboxProvider):
    """The sandbox, remembering where each transfer was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.destinations: dict[str, str] = {}  # by idempotency key (the payout id)

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.destinations[request.idempotency_key] = request.destination.get_secret_value()
        return await super().send(request)


def settings(key: str, previous: str | None = None) -> PayoutsSettings:
    return PayoutsSettings(
        destination_key=SecretStr(key),
        destination_key_previous=None if previous is None else SecretStr(previous),
        settle_check_seconds=0.2,
        dispatch_idle_seconds=0.2,
    )


async def test_the_destination_key_rotates_while_payouts_flow(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    creators = [uid("cr") for _ in range(CREATORS)]
    destination = {c: f"acct_{c.replace('-', '_')}" for c in creators}
    deals = {c: uid("deal") for c in creators}
    recorded: dict[str, str] = {}

    def deal_events(batch: list[str]) -> list[Any]:
        return [
            event
            for c in batch
            for event in (
                *funded_deal(deals[c], c),
                confirmed(deals[c], "dl-1"),
                confirmed(deals[c], "dl-2"),
            )
        ]

    def sent(batch: list[str]) -> bool:
        paid = {e.data.deal_id for e in watcher.of({deals[c] for c in batch})}
        types = {e.data.deal_id for e in watcher.events if e.type == "payout.sent"}
        return paid >= {deals[c] for c in batch} and {deals[c] for c in batch} <= types

    accounts = [
        account(c, currency="USD", form="W-9", destination=destination[c]) for c in creators
    ]
    before, during = creators[:PAID_BEFORE], creators[PAID_BEFORE:]
    first = ObservedPayouts(settings(KEY_A), RecordingProvider(), group_id=f"rot-a-{_run()}")
    async with ServiceRuntime("payouts", first, schema=SCHEMA, urls=infra):
        await produce_events(bootstrap, [fx({"EUR": "0.92"}), *accounts, *deal_events(before)])
        await watcher.wait_for(lambda: sent(before), what="the first deals paid under key A")
        assert first.service is not None
        recorded |= _destinations(first)
    key_a = DestinationCipher.from_setting(SecretStr(KEY_A)).key_id
    key_b = DestinationCipher.from_setting(SecretStr(KEY_B)).key_id
    assert await _rows_under(db_pool) == {key_a: CREATORS}

    steps: list[RotationProgress] = []
    second = ObservedPayouts(
        settings(KEY_B, KEY_A), RecordingProvider(), group_id=f"rot-b-{_run()}"
    )
    async with ServiceRuntime("payouts", second, schema=SCHEMA, urls=infra):

        async def flow() -> None:
            for n in range(0, len(during), 4):
                wave = during[n : n + 4]
                again = [account(c, currency="USD", form="W-9", destination=destination[c])
                         for c in creators[n : n + 2]]  # fmt: skip
                await produce_events(bootstrap, [*again, *deal_events(wave)])
                await asyncio.sleep(0.15)

        async def rotation() -> int:
            # Once payouts flow under the new service: the first wave is paid.
            await watcher.wait_for(lambda: sent(during[:4]), what="the first wave paid")
            cipher = DestinationCipher.from_setting(SecretStr(KEY_B), SecretStr(KEY_A))
            return await rotate_destination_key(
                PostgresPayoutsStore(db_pool), cipher, batch=3, progress=steps.append
            )

        resealed, _ = await asyncio.gather(rotation(), flow())
        await watcher.wait_for(lambda: sent(creators), what="every deal paid", seconds=60.0)
        assert second.service is not None
        recorded |= _destinations(second)

    print(f"destination key rotation: {resealed} re-encrypted in {len(steps)} batches")
    assert steps[-1].left == 0 and len(steps) > 1, steps
    assert await _rows_under(db_pool) == {key_b: CREATORS}
    rows = await db_pool.fetch(
        "SELECT payout_id, creator_id FROM payouts_payouts WHERE creator_id = ANY($1::text[])",
        creators,
    )
    assert len(rows) == CREATORS
    wrong = [
        (r["creator_id"], recorded.get(r["payout_id"]))
        for r in rows
        if recorded.get(r["payout_id"]) != destination[r["creator_id"]]
    ]
    assert wrong == [], "payouts sent elsewhere than their creator's destination"
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM payouts_accounts WHERE cooling_off_until IS NOT NULL"
    ), "a destination sent again under the new key was taken for a changed one"

    # Rotated: the new key alone opens every destination, the old one alone none.
    db = PostgresPayoutsStore(db_pool)
    await open_destinations(db, settings(KEY_B))
    with pytest.raises(ServiceConfigurationError, match="another PAYOUTS_DESTINATION_KEY"):
        await open_destinations(db, settings(KEY_A))


def _run() -> str:
    return uuid.uuid4().hex[:8]


def _destinations(setup: ObservedPayouts) -> dict[str, str]:
    assert setup.service is not None and isinstance(setup.service.provider, RecordingProvider)
    return setup.service.provider.destinations


async def _rows_under(pool: asyncpg.Pool) -> dict[bytes, int]:
    rows = await pool.fetch(
        "SELECT destination_key_id, count(*) AS n FROM payouts_accounts GROUP BY 1"
    )
    return {bytes(r["destination_key_id"]): r["n"] for r in rows}
