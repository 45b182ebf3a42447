"""The rails' webhooks on the service's HTTP server: `POST /webhooks/<rail>` for `stripe`,
`paypal` and `wise` (docs/architecture.md §6, README.md "Rail webhooks").

A delivery is taken in this order:

1. The rail's route answers 404 unless its secret is configured: nothing unsigned is ever
   accepted.
2. The signature (webhook_signatures.verify) and its timestamp: a wrong signature, or one made
   beyond the tolerance (300 s), is refused with 400 and has no effect.
3. The rail's event id as a nonce in Redis (`SET NX` with a TTL): an id recorded as handled
   answers 200 at once and changes nothing. Redis only spares the database: the id is also
   recorded in `payouts_webhook_events` in the transaction that applies the event, so a
   duplicate is harmless after a Redis flush or outage too (the database then decides alone,
   and it is logged and counted).
4. The event names a transfer; its payout (found by the transfer's reference on that rail) is
   changed as a polled answer would change it (settlements.apply_reports): `paid`/`settled`
   settles a sent payout and never brings back a failed one; `failed`/`returned`/`reversed`
   returns a sent or settled payout once (ledger reversed, `payout.failed` with the rail's
   reason).

A transfer we do not know (not ours, an earlier attempt's, or not recorded as sent yet)
answers 200 and is logged: the rails retry a non-2xx answer for days, and what a retry could
bring is already covered by the settlement poller, which asks the rail about every payout
recorded as sent (docs/architecture.md §6).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import redis.asyncio as redis
import structlog
from pydantic import SecretStr

from services.payouts.domain.lifecycle import SettlementReport
from services.payouts.handlers import PayoutPolicy, payout_transaction
from services.payouts.providers.base import Settlement
from services.payouts.providers.paypal import item_settlement
from services.payouts.providers.stripe import transfer_settlement
from services.payouts.providers.wise import status_settlement
from services.payouts.settlements import RailReport, apply_reports
from services.payouts.store.port import PayoutsStore
from services.payouts.webhook_signatures import SignatureRefused, verify
from shared.runtime.observability import WEBHOOK_NONCE_STORE_DOWN, WEBHOOKS

log = structlog.get_logger(__name__)

PREFIX: Final = "/webhooks"
RAILS: Final = ("stripe", "paypal", "wise")
# Stripe's own header; PayPal's and Wise's routes take our HMAC scheme under our own header.
SIGNATURE_HEADERS: Final[Mapping[str, bytes]] = {
    "stripe": b"stripe-signature",
    "paypal": b"creatorflow-signature",
    "wise": b"creatorflow-signature",
}
MAX_BODY_BYTES: Final = 256 * 1024
_REDIS_TIMEOUT_SECONDS: Final = 1.0

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class MalformedEvent(ValueError):
    """A signed body that is not an event of the rail's documented shape."""


@dataclass(frozen=True)
class WebhookEvent:
    """What a rail's event says: its id, the rail's transfer it is about, and where that
    transfer stands (None: nothing final, or not about a transfer: ignored)."""

    event_id: str
    kind: str
    provider_ref: str | None = None
    state: SettlementReport | None = None
    reason: str = ""


def _final(event_id: str, kind: str, ref: str, settlement: Settlement) -> WebhookEvent:
    if settlement.state == "pending":
        return WebhookEvent(event_id, kind, ref)
    return WebhookEvent(event_id, kind, ref, settlement.state, settlement.reason or "")


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvent(f"{what} is not a JSON object")
    return value


def _text(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise MalformedEvent(f"{what} is missing")
    return str(value)


def parse_stripe(body: object) -> WebhookEvent:
    """A Stripe event: `transfer.*` events carry the transfer (`data.object`), read as a
    polled transfer is; other types are ignored."""
    event = _dict(body, "the event")
    event_id, kind = _text(event.get("id"), "id"), _text(event.get("type"), "type")
    obj = _dict(_dict(event.get("data"), "data").get("object"), "data.object")
    if not kind.startswith("transfer.") or obj.get("object") != "transfer":
        return WebhookEvent(event_id, kind)
    return _final(event_id, kind, _text(obj.get("id"), "the transfer id"), transfer_settlement(obj))


def parse_paypal(body: object) -> WebhookEvent:
    """A PayPal Payouts event: `PAYMENT.PAYOUTS-ITEM.*` carries the item (its batch is our
    transfer reference), read as a polled item is; `PAYMENT.PAYOUTSBATCH.DENIED` fails the
    batch; other types are ignored."""
    event = _dict(body, "the event")
    event_id, kind = _text(event.get("id"), "id"), _text(event.get("event_type"), "event_type")
    resource = _dict(event.get("resource"), "resource")
    if kind.startswith("PAYMENT.PAYOUTS-ITEM."):
        ref = _text(resource.get("payout_batch_id"), "resource.payout_batch_id")
        return _final(event_id, kind, ref, item_settlement(resource))
    if kind == "PAYMENT.PAYOUTSBATCH.DENIED":
        header = _dict(resource.get("batch_header"), "resource.batch_header")
        ref = _text(header.get("payout_batch_id"), "resource.batch_header.payout_batch_id")
        return WebhookEvent(event_id, kind, ref, "failed", "paypal: batch DENIED")
    return WebhookEvent(event_id, kind)


def parse_wise(body: object, raw: bytes) -> WebhookEvent:
    """A Wise event: `transfers#state-change` carries the transfer id and its new state, read
    as a polled status is. Wise gives an event no id of its own (`X-Delivery-Id` changes with
    each retry), so a state change is identified by (transfer, state, `occurred_at`); other
    types by their body's digest."""
    event = _dict(body, "the event")
    kind = _text(event.get("event_type"), "event_type")
    if kind != "transfers#state-change":
        return WebhookEvent("sha256:" + hashlib.sha256(raw).hexdigest(), kind)
    data = _dict(event.get("data"), "data")
    ref = _text(_dict(data.get("resource"), "data.resource").get("id"), "data.resource.id")
    state = _text(data.get("current_state"), "data.current_state")
    occurred = _text(data.get("occurred_at"), "data.occurred_at")
    return _final(f"{ref}:{state}:{occurred}", kind, ref, status_settlement(state))


def parse(rail: str, raw: bytes) -> WebhookEvent:
    """The rail's event in `raw` (a signed body); raises MalformedEvent."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    if rail == "stripe":
        return parse_stripe(body)
    if rail == "paypal":
        return parse_paypal(body)
    return parse_wise(body, raw)


class Nonces:
    """Event ids handled, in Redis (`None`: no Redis, the database decides alone). A key is
    set `pending` (SET NX) when a delivery starts and `done` once its transaction committed,
    both with the TTL: only `done` answers a later delivery at once; a `pending` one (another
    delivery in flight, or one that failed) goes on to the database, which decides."""

    def __init__(self, client: redis.Redis | None, ttl_seconds: float) -> None:
        self._redis = client
        self._ttl = max(1, round(ttl_seconds))

    @staticmethod
    def key(rail: str, event_id: str) -> str:
        return f"creatorflow:payouts:webhook:{rail}:{event_id}"

    async def begin(self, rail: str, event_id: str) -> bool:
        """False if the event is recorded as handled already (a duplicate)."""
        key = self.key(rail, event_id)
        first = await self._call(lambda r: r.set(key, b"pending", nx=True, ex=self._ttl))
        if first is None or first:
            return True
        return bool(await self._call(lambda r: r.get(key)) != b"done")

    async def done(self, rail: str, event_id: str) -> None:
        key = self.key(rail, event_id)
        await self._call(lambda r: r.set(key, b"done", ex=self._ttl))

    async def abandon(self, rail: str, event_id: str) -> None:
        key = self.key(rail, event_id)
        await self._call(lambda r: r.delete(key))

    async def _call(self, command: Callable[[redis.Redis], Awaitable[Any]]) -> Any:
        if self._redis is None:
            return None
        try:
            return await asyncio.wait_for(command(self._redis), _REDIS_TIMEOUT_SECONDS)
        except (redis.RedisError, OSError, TimeoutError) as error:
            WEBHOOK_NONCE_STORE_DOWN.inc()
            log.warning(
                "webhook nonce store unavailable: the database decides",
                error=f"{type(error).__name__}: {error}",
            )
            return None


class WebhookRoutes:
    """The ASGI app under `/webhooks` (shared.runtime.health serves it beside /healthz)."""

    def __init__(
        self,
        db: PayoutsStore,
        policy: PayoutPolicy,
        secrets: Mapping[str, SecretStr],
        *,
        tolerance_seconds: float,
        nonces: Nonces,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._policy = policy
        self._secrets = dict(secrets)
        self._tolerance = tolerance_seconds
        self._nonces = nonces
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rail = str(scope["path"]).removeprefix(PREFIX).strip("/")
        secret = self._secrets.get(rail) if rail in RAILS else None
        if secret is None:
            await _answer(send, 404, {"error": f"no webhooks are taken at {scope['path']}"})
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, {"error": "webhooks are POSTed"}, [(b"allow", b"POST")])
            return
        raw = await _body(receive)
        if raw is None:
            await _answer(send, 413, {"error": f"a webhook body is at most {MAX_BODY_BYTES} B"})
            return
        header = dict(scope.get("headers") or ()).get(SIGNATURE_HEADERS[rail])
        status, outcome = await self.deliver(
            rail, raw, None if header is None else header.decode("latin-1"), secret
        )
        WEBHOOKS.labels(rail=rail, outcome=outcome).inc()
        await _answer(send, status, {"outcome": outcome})

    async def deliver(
        self, rail: str, raw: bytes, header: str | None, secret: SecretStr
    ) -> tuple[int, str]:
        """(HTTP status, outcome) of one delivery to `rail`'s route."""
        try:
            key = secret.get_secret_value()
            verify(header, raw, key, now=self._clock(), tolerance=self._tolerance)
        except SignatureRefused as refused:
            log.warning("webhook refused", rail=rail, reason=refused.reason)
            return 400, "refused"
        try:
            event = parse(rail, raw)
        except MalformedEvent as error:
            log.warning("webhook malformed", rail=rail, reason=str(error))
            return 400, "malformed"
        if not await self._nonces.begin(rail, event.event_id):
            return 200, "duplicate"
        try:
            outcome = await self.apply(rail, event)
        except Exception:
            log.exception("webhook not applied: the rail will deliver it again", rail=rail)
            await self._nonces.abandon(rail, event.event_id)
            return 503, "error"
        await self._nonces.done(rail, event.event_id)
        return 200, outcome

    async def apply(self, rail: str, event: WebhookEvent) -> str:
        """Record the event and apply it, in one transaction; the outcome's name."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        async with payout_transaction(self._db, self._policy, now) as changes:
            if not await changes.repo.claim_webhook(rail, event.event_id, now):
                return "duplicate"
            if event.provider_ref is None or event.state is None:
                return "ignored"
            payout_id = await changes.repo.payout_of_transfer(rail, event.provider_ref)
            if payout_id is None:
                log.warning(
                    "webhook for a transfer we do not know",
                    rail=rail,
                    kind=event.kind,
                    provider_ref=event.provider_ref,
                )
                return "unknown_transfer"
            report = RailReport(payout_id, event.provider_ref, event.state, event.reason)
            changed = await apply_reports(changes, [report])
        log.info(
            "webhook applied" if changed else "webhook changed nothing",
            rail=rail,
            kind=event.kind,
            payout_id=payout_id,
            state=event.state,
        )
        return "applied" if changed else "unchanged"


async def _body(receive: Receive) -> bytes | None:
    """The request body, or None once it exceeds MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
