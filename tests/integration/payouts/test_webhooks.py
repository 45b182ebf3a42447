"""The rails' webhooks on the real servers (PostgreSQL, Redis, Kafka) and the payouts service's
HTTP server: a signed event is applied; a wrong signature, a 301 s old one and a replayed event
id are refused with no effect; duplicated and reordered deliveries are harmless, also after
Redis forgot them; a return days after a payout settled reverses the ledger once and emits one
`payout.failed` with the rail's reason.

One service for the module. Its settlement poller waits an hour between rounds, so what moves
a sent payout here is the webhooks alone."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from pydantic import SecretStr

from services.payouts.app import make_setup
from services.payouts.reports import check_ledger
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from services.payouts.store.postgres import PostgresPayoutsStore
from services.payouts.webhook_signatures import signature_header
from services.payouts.webhooks import Nonces
from shared.contract.events import PayoutStatusChanged
from shared.runtime.config import Settings
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.rails_setup import DESTINATIONS, owed, rails_of, statuses
from tests.integration.payouts.stripe_server import FakeStripe
from tests.integration.payouts.wise_server import FakeWise

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STRIPE_SECRET = "whsec_local_test"
WISE_SECRET = "wise-hmac-local-test"
SETTINGS = PayoutsSettings(
    settle_check_seconds=3600,
    dispatch_idle_seconds=0.5,
    commission_check_seconds=3600,
    stripe_webhook_secret=SecretStr(STRIPE_SECRET),
    wise_webhook_secret=SecretStr(WISE_SECRET),
)


@dataclass
class Payouts:
    http: httpx.AsyncClient
    stripe: FakeStripe
    wise: FakeWise


@pytest.fixture(scope="module")
async def payouts(infra: InfraUrls, topics: None) -> AsyncIterator[Payouts]:
    async with FakeStripe() as stripe, FakeWise() as wise:
        setup = make_setup(
            SETTINGS,
            rails_of(stripe=stripe, wise=wise),
            group_id=f"payouts-webhooks-{uuid.uuid4().hex[:8]}",
        )
        runtime = ServiceRuntime(
            "payouts",
            setup,
            schema=SCHEMA,
            settings=Settings().model_copy(update={"http_port": 0}),
            urls=infra,
            uses_redis=True,
        )
        async with runtime:
            base = f"http://127.0.0.1:{runtime.http_port}"
            async with httpx.AsyncClient(base_url=base) as http:
                yield Payouts(http, stripe, wise)


async def _sent(
    infra: InfraUrls, db_pool: asyncpg.Pool, watcher: StatusWatcher, method: str
) -> tuple[str, PayoutStatusChanged]:
    deal, _ = await owed(infra, db_pool, method, DESTINATIONS[method])
    await watcher.wait_for(
        lambda: "payout.sent" in statuses(watcher, deal), seconds=60, what="sent"
    )
    [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
    return deal, sent


def _stripe_event(event_id: str, kind: str, ref: str, *, reversed_: bool = False) -> bytes:
    transfer = {"id": ref, "object": "transfer", "reversed": reversed_, "amount_reversed": 0}
    event = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": transfer},
    }
    return json.dumps(event).encode()


async def _to_stripe(
    payouts: Payouts, body: bytes, *, at: float | None = None, secret: str = STRIPE_SECRET
) -> tuple[int, Any]:
    signed_at = int(time.time() if at is None else at)
    header = {"Stripe-Signature": signature_header(secret, body, signed_at)}
    answer = await payouts.http.post("/webhooks/stripe", content=body, headers=header)
    return answer.status_code, answer.json()


async def _payout_row(db_pool: asyncpg.Pool, payout_id: str) -> asyncpg.Record:
    return await db_pool.fetchrow(
        "SELECT status, failure_reason FROM payouts_payouts WHERE payout_id = $1", payout_id
    )


async def _steps(db_pool: asyncpg.Pool, payout_id: str) -> list[str]:
    rows = await db_pool.fetch(
        "SELECT transfer_id FROM payouts_transfers WHERE payout_id = $1 ORDER BY transfer_id",
        payout_id,
    )
    return [r["transfer_id"].removeprefix(payout_id + ":") for r in rows]


async def _balance(db_pool: asyncpg.Pool, account: str) -> Decimal:
    total = await db_pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM payouts_postings WHERE account = $1", account
    )
    return Decimal(total)


async def test_a_return_days_after_settlement_reverses_the_ledger_once(
    infra: InfraUrls,
    payouts: Payouts,
    watcher: StatusWatcher,
    db_pool: asyncpg.Pool,
    redis_client: redis.Redis,
) -> None:
    deal, sent = await _sent(infra, db_pool, watcher, "stripe")
    ref, payout_id = sent.provider_ref, sent.payout_id
    assert ref is not None and sent.net is not None
    created = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.created", ref)
    assert await _to_stripe(payouts, created) == (200, {"outcome": "applied"})
    await watcher.wait_for(lambda: "payout.settled" in statuses(watcher, deal), what="settled")
    # Days later the transfer comes back. Delivered twice, the second time after Redis lost
    # its nonces; then the same news again under another event id.
    reversal = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.reversed", ref, reversed_=True)
    assert await _to_stripe(payouts, reversal) == (200, {"outcome": "applied"})
    assert await _to_stripe(payouts, reversal) == (200, {"outcome": "duplicate"})
    await redis_client.flushdb()
    assert await _to_stripe(payouts, reversal) == (200, {"outcome": "duplicate"})
    again = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.reversed", ref, reversed_=True)
    assert await _to_stripe(payouts, again) == (200, {"outcome": "unchanged"})
    # A late `paid` does not bring the payout back.
    late = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.updated", ref)
    assert await _to_stripe(payouts, late) == (200, {"outcome": "unchanged"})
    await watcher.wait_for(lambda: "payout.failed" in statuses(watcher, deal), what="failed")
    await asyncio.sleep(1.0)  # time for a second payout.failed, were one coming
    assert statuses(watcher, deal) == [
        "payout.scheduled",
        "payout.sent",
        "payout.settled",
        "payout.failed",
    ]
    [failed] = [e.data for e in watcher.of({deal}) if e.type == "payout.failed"]
    assert failed.reason == "stripe: transfer reversed"
    row = await _payout_row(db_pool, payout_id)
    assert (row["status"], row["failure_reason"]) == ("failed", "stripe: transfer reversed")
    assert await _steps(db_pool, payout_id) == ["accrual", "dispatch", "return", "settlement"]
    creator = sent.creator_id
    assert await _balance(db_pool, f"creator_paid:{creator}") == 0
    assert await _balance(db_pool, f"creator_payable:{creator}") == sent.net.amount
    assert (await check_ledger(PostgresPayoutsStore(db_pool))).problems == []


async def test_refused_deliveries_change_nothing(
    infra: InfraUrls,
    payouts: Payouts,
    watcher: StatusWatcher,
    db_pool: asyncpg.Pool,
    redis_client: redis.Redis,
) -> None:
    deal, sent = await _sent(infra, db_pool, watcher, "stripe")
    assert sent.provider_ref is not None
    reversal = _stripe_event(
        f"evt_{uuid.uuid4().hex}", "transfer.reversed", sent.provider_ref, reversed_=True
    )
    # A wrong secret, a body changed after signing, a delivery 301 s old, none at all.
    assert await _to_stripe(payouts, reversal, secret="whsec_guess") == (
        400,
        {"outcome": "refused"},
    )
    header = {"Stripe-Signature": signature_header(STRIPE_SECRET, reversal, int(time.time()))}
    tampered = await payouts.http.post(
        "/webhooks/stripe", content=reversal.replace(b"transfer", b"transfer "), headers=header
    )
    assert tampered.status_code == 400
    stale = await _to_stripe(payouts, reversal, at=time.time() - 301)
    assert stale == (400, {"outcome": "refused"})
    unsigned = await payouts.http.post("/webhooks/stripe", content=reversal)
    assert unsigned.status_code == 400
    # PayPal has no webhook secret here: its route takes nothing, signed or not.
    paypal = await payouts.http.post("/webhooks/paypal", content=reversal, headers=header)
    assert paypal.status_code == 404
    assert (await payouts.http.get("/webhooks/stripe")).status_code == 405
    await asyncio.sleep(1.0)
    assert statuses(watcher, deal) == ["payout.scheduled", "payout.sent"]
    assert (await _payout_row(db_pool, sent.payout_id))["status"] == "sent"
    # A replay of an event already applied, signed anew within the tolerance: refused by its
    # id before it reaches the database.
    settled = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.created", sent.provider_ref)
    assert await _to_stripe(payouts, settled) == (200, {"outcome": "applied"})
    nonce = Nonces.key("stripe", json.loads(settled)["id"])
    assert await redis_client.get(nonce) == b"done"
    assert 0 < await redis_client.ttl(nonce) <= SETTINGS.webhook_nonce_ttl_seconds
    assert await _to_stripe(payouts, settled) == (200, {"outcome": "duplicate"})
    await watcher.wait_for(lambda: "payout.settled" in statuses(watcher, deal), what="settled")
    await asyncio.sleep(1.0)
    assert statuses(watcher, deal) == ["payout.scheduled", "payout.sent", "payout.settled"]
    assert await _steps(db_pool, sent.payout_id) == ["accrual", "dispatch", "settlement"]


async def test_reordered_and_unknown_deliveries_are_harmless(
    infra: InfraUrls, payouts: Payouts, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    deal, sent = await _sent(infra, db_pool, watcher, "stripe")
    assert sent.provider_ref is not None
    reversal = _stripe_event(
        f"evt_{uuid.uuid4().hex}", "transfer.reversed", sent.provider_ref, reversed_=True
    )
    created = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.created", sent.provider_ref)
    # The reversal overtook the creation: failed, and the creation then changes nothing.
    assert await _to_stripe(payouts, reversal) == (200, {"outcome": "applied"})
    assert await _to_stripe(payouts, created) == (200, {"outcome": "unchanged"})
    unknown = _stripe_event(f"evt_{uuid.uuid4().hex}", "transfer.reversed", "tr_not_ours")
    assert await _to_stripe(payouts, unknown) == (200, {"outcome": "unknown_transfer"})
    ignored = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "balance.available",
            "data": {"object": {"object": "balance"}},
        }
    ).encode()
    assert await _to_stripe(payouts, ignored) == (200, {"outcome": "ignored"})
    await watcher.wait_for(lambda: "payout.failed" in statuses(watcher, deal), what="failed")
    await asyncio.sleep(1.0)
    assert statuses(watcher, deal) == ["payout.scheduled", "payout.sent", "payout.failed"]
    assert await _steps(db_pool, sent.payout_id) == ["accrual", "dispatch", "return"]
    assert (await check_ledger(PostgresPayoutsStore(db_pool))).problems == []


async def test_a_wise_bounce_after_the_payment_was_sent_returns_it_once(
    infra: InfraUrls, payouts: Payouts, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    deal, sent = await _sent(infra, db_pool, watcher, "wise")
    assert sent.provider_ref is not None

    def state_change(state: str, occurred_at: str) -> bytes:
        data = {
            "resource": {"type": "transfer", "id": int(sent.provider_ref or 0), "profile_id": 4242},
            "current_state": state,
            "previous_state": "processing",
            "occurred_at": occurred_at,
        }
        event = {"event_type": "transfers#state-change", "schema_version": "2.0.0", "data": data}
        return json.dumps(event).encode()

    async def to_wise(body: bytes, secret: str = WISE_SECRET) -> int:
        header = {"CreatorFlow-Signature": signature_header(secret, body, int(time.time()))}
        answer = await payouts.http.post("/webhooks/wise", content=body, headers=header)
        return answer.status_code

    bounced = state_change("bounced_back", "2026-03-04T09:00:00Z")
    paid = state_change("outgoing_payment_sent", "2026-03-01T09:00:00Z")
    assert await to_wise(paid, secret="not-the-secret") == 400
    assert await to_wise(paid) == 200
    await watcher.wait_for(lambda: "payout.settled" in statuses(watcher, deal), what="settled")
    assert [await to_wise(bounced) for _ in range(3)] == [200, 200, 200]
    assert await to_wise(paid) == 200  # delivered again, late
    await watcher.wait_for(lambda: "payout.failed" in statuses(watcher, deal), what="bounced")
    await asyncio.sleep(1.0)
    assert statuses(watcher, deal)[-2:] == ["payout.settled", "payout.failed"]
    [failed] = [e.data for e in watcher.of({deal}) if e.type == "payout.failed"]
    assert failed.reason == "wise: transfer bounced_back"
    assert await _steps(db_pool, sent.payout_id) == ["accrual", "dispatch", "return", "settlement"]
    assert (await check_ledger(PostgresPayoutsStore(db_pool))).problems == []
