"""The webhook routes over the in-memory store with Redis out of reach: the database alone
then decides what is a duplicate, so nothing is applied twice (the same routes on the real
servers: tests/integration/payouts/test_webhooks.py)."""

from __future__ import annotations

import json

import httpx
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from services.payouts.settings import PayoutsSettings
from services.payouts.webhook_signatures import signature_header
from services.payouts.webhooks import Nonces, WebhookRoutes
from tests.unit.payouts.builders import account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

SECRET = "whsec_unit"
NONCE_ERRORS = "creatorflow_payout_webhook_nonce_store_errors_total"
NOW = 1_800_000_000.0


async def _sent(h: Harness) -> tuple[str, str]:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.9215"}), account(creator), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    [payout] = h.payouts(deal)
    assert payout.status == "sent" and payout.provider_ref is not None
    return payout.payout_id, payout.provider_ref


def _reversal(event_id: str, ref: str) -> bytes:
    transfer = {"id": ref, "object": "transfer", "reversed": True}
    event = {"id": event_id, "type": "transfer.reversed", "data": {"object": transfer}}
    return json.dumps(event).encode()


async def test_without_redis_the_database_still_refuses_a_duplicate() -> None:
    h = Harness()
    payout_id, ref = await _sent(h)
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    routes = WebhookRoutes(
        h.db,
        h.policy,
        {"stripe": SecretStr(SECRET)},
        tolerance_seconds=300,
        nonces=Nonces(unreachable, 600),
        clock=lambda: NOW,
    )
    transport = httpx.ASGITransport(app=routes)
    body = _reversal("evt_unit_1", ref)
    header = {"Stripe-Signature": signature_header(SECRET, body, int(NOW))}
    errors_before = REGISTRY.get_sample_value(NONCE_ERRORS) or 0.0
    async with httpx.AsyncClient(transport=transport, base_url="http://payouts") as http:
        first = await http.post("/webhooks/stripe", content=body, headers=header)
        again = await http.post("/webhooks/stripe", content=body, headers=header)
        other_rail = await http.post("/webhooks/paypal", content=body, headers=header)
    await unreachable.aclose()
    assert (first.status_code, first.json()) == (200, {"outcome": "applied"})
    assert (again.status_code, again.json()) == (200, {"outcome": "duplicate"})
    assert other_rail.status_code == 404  # no PayPal secret: nothing is taken there
    assert (REGISTRY.get_sample_value(NONCE_ERRORS) or 0.0) > errors_before
    [payout] = [p for p in h.payouts() if p.payout_id == payout_id]
    assert payout.status == "failed" and payout.failure_reason == "stripe: transfer reversed"
    assert [e.type for e in h.events_of(payout_id)].count("payout.failed") == 1
    assert [t.kind for t in h.db.state.transfers if t.payout_id == payout_id].count("return") == 1
    assert h.problems() == []


def test_only_rails_with_a_secret_take_webhooks_and_nonces_outlive_the_tolerance() -> None:
    # Compose passes an unset secret through empty: that rail takes nothing.
    settings = PayoutsSettings(
        stripe_webhook_secret=SecretStr("whsec_x"), paypal_webhook_secret=SecretStr("")
    )
    assert list(settings.webhook_secrets()) == ["stripe"]
    with pytest.raises(ValidationError, match="NONCE_TTL_SECONDS must be at least twice"):
        PayoutsSettings(webhook_tolerance_seconds=300, webhook_nonce_ttl_seconds=599)
