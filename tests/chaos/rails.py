"""The payment rails of a chaos run: Stripe, PayPal and Wise as local servers that follow each
rail's documented API and keep their own records, the rails' webhooks to the payouts service,
and the rails' faults:

- a rail that times out after paying: Wise executes a funding but answers only after the
  client gave up; the payout must be looked up by its idempotency key, never funded again;
- returns days after `paid`: a settled Stripe transfer is reversed and a settled Wise
  transfer bounces three days (on the rails' simulated clock, `SimClock`) after they were
  paid; each rail says so by webhook only (a settled payout is not polled any more);
- the webhooks of those payouts (`paid`, then the return) are each delivered twice, half of
  them in the wrong order (the return first), and the return is replayed signed 301 s ago:
  duplicates and reorders change nothing, the replay is refused;
- PayPal down (connections refused) for a while: its creators' payouts go through their
  fallback rail, Stripe, or through PayPal once it is back, once either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import asyncpg
import httpx

from services.payouts.webhook_signatures import signature_header
from shared.contract.money import Money
from shared.tools.infra.service_processes import ServiceProcesses
from tests.chaos.workload import Workload
from tests.integration.payouts.paypal_server import FakePayPal
from tests.integration.payouts.stripe_server import FakeStripe
from tests.integration.payouts.wise_server import FakeWise

Say = Callable[[str], None]
STRIPE_KEY: Final = "sk_test_chaos"
STRIPE_WEBHOOK_SECRET: Final = "whsec_chaos"
WISE_WEBHOOK_SECRET: Final = "wise-hmac-chaos"
WEBHOOK_TOLERANCE_SECONDS: Final = 300
REPLAY_AGE_SECONDS: Final = 301
RETURN_AFTER: Final = timedelta(days=3)
# Long enough for a loaded machine's slowest honest answer; the stalled answer comes later.
PROVIDER_TIMEOUT_SECONDS: Final = 10.0
STALL_SECONDS: Final = 12.0
_SIGNATURE_HEADERS: Final = {"stripe": "Stripe-Signature", "wise": "CreatorFlow-Signature"}
_SECRETS: Final = {"stripe": STRIPE_WEBHOOK_SECRET, "wise": WISE_WEBHOOK_SECRET}


@dataclass
class SimClock:
    """The rails' clock: real time plus an offset moved forward by `advance`, so a return
    days after payment needs no waiting."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


@dataclass(frozen=True)
class Return:
    """A transfer a rail took back after paying it, and when (on the rails' clock)."""

    rail: str
    provider_ref: str
    paid_at: datetime
    returned_at: datetime


@dataclass
class WebhookTally:
    deliveries: int = 0
    duplicates: int = 0  # deliveries of an event delivered before
    reordered: int = 0  # returns delivered before the `paid` event they follow
    replays: int = 0
    replays_refused: int = 0
    retried: int = 0  # deliveries the service did not take at once (down, restarting)


@dataclass
class ChaosRails:
    """The three rails' local servers for one run (`async with`)."""

    workload: Workload
    clock: SimClock = field(default_factory=SimClock)
    returns: list[Return] = field(default_factory=list)
    webhooks: WebhookTally = field(default_factory=WebhookTally)
    stripe: FakeStripe = field(init=False)
    paypal: FakePayPal = field(init=False)
    wise: FakeWise = field(init=False)

    def __post_init__(self) -> None:
        self.stripe = FakeStripe(
            api_key=STRIPE_KEY, accounts=self.workload.destinations_of("stripe")
        )
        self.paypal = FakePayPal(receivers=self.workload.destinations_of("paypal"))
        self.wise = FakeWise(
            recipients={int(d.split(":")[1]) for d in self.workload.destinations_of("wise")}
        )

    async def __aenter__(self) -> ChaosRails:
        await self.stripe.start()
        await self.paypal.start()
        await self.wise.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.paypal.is_up:
            await self.paypal.stop()
        await self.wise.stop()
        await self.stripe.stop()

    def env(self) -> dict[str, str]:
        """The payouts service's settings for these rails and their webhooks."""
        return {
            "PAYOUTS_PROVIDER": "rails",
            "PAYOUTS_STRIPE_API_KEY": self.stripe.api_key,
            "PAYOUTS_STRIPE_API_BASE": self.stripe.base_url,
            "PAYOUTS_PAYPAL_CLIENT_ID": self.paypal.client_id,
            "PAYOUTS_PAYPAL_CLIENT_SECRET": self.paypal.client_secret,
            "PAYOUTS_PAYPAL_API_BASE": self.paypal.base_url,
            "PAYOUTS_WISE_API_TOKEN": self.wise.api_token,
            "PAYOUTS_WISE_PROFILE_ID": str(self.wise.profile_id),
            "PAYOUTS_WISE_API_BASE": self.wise.base_url,
            "PAYOUTS_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "PAYOUTS_WISE_WEBHOOK_SECRET": WISE_WEBHOOK_SECRET,
            "PAYOUTS_WEBHOOK_TOLERANCE_SECONDS": str(WEBHOOK_TOLERANCE_SECONDS),
            "PAYOUTS_PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT_SECONDS),
            # Retries come fast, so a rail down for a minute gives up on its payouts (which
            # then go to the creators' fallback rail) well within it.
            "PAYOUTS_RETRY_INITIAL_SECONDS": "0.5",
            "PAYOUTS_RETRY_MAX_SECONDS": "5",
        }

    def transfers(self) -> dict[str, list[Money]]:
        """Money that really moved, by destination, on every rail (replays are not new;
        a transfer returned later counts: it was paid once)."""
        moved: dict[str, list[Money]] = {}
        for t in self.stripe.transfers.values():
            amount = Money.from_minor(int(t["amount"]), str(t["currency"]).upper())
            moved.setdefault(str(t["destination"]), []).append(amount)
        for batch in self.paypal.batches.values():
            for item in batch["items"]:
                sent = item["payout_item"]
                value = Money.of(Decimal(str(sent["amount"]["value"])), sent["amount"]["currency"])
                moved.setdefault(str(sent["receiver"]), []).append(value)
        for transfer_id in self.wise.funded:
            t = self.wise.transfers[transfer_id]
            value = Money.of(Decimal(str(t["targetValue"])), str(t["targetCurrency"]))
            moved.setdefault(f"recipient:{t['targetAccount']}", []).append(value)
        return moved

    def requests(self) -> int:
        """Requests that could move money, on every rail."""
        stripe = sum(1 for r in self.stripe.requests if r.method == "POST")
        others = [*self.paypal.requests, *self.wise.requests]
        return stripe + sum(1 for r in others if r.method == "POST")

    # --- faults ---

    async def time_out_after_paying(self, times: int, say: Say) -> int:
        """Wise funds the next `times` transfers but answers each after the client gave up.
        Returns how many stalled: fewer if every Wise creator was paid before (or three
        minutes passed) with the stall still waiting for a funding."""
        stalled = 0
        for _ in range(times):
            self.wise.stalls["fund"] = STALL_SECONDS
            deadline = time.monotonic() + 180.0
            while "fund" in self.wise.stalls:
                if self._every_wise_creator_paid() or time.monotonic() > deadline:
                    del self.wise.stalls["fund"]
                    return stalled
                await asyncio.sleep(0.1)
            stalled += 1
            say(f"fault: Wise funded a transfer and answered after {STALL_SECONDS:.0f} s")
        return stalled

    def _every_wise_creator_paid(self) -> bool:
        funded = {self.wise.transfers[t]["targetAccount"] for t in self.wise.funded}
        return self.wise.recipients <= funded

    async def down(self, seconds: float, say: Say) -> None:
        say(f"fault: PayPal down for {seconds:.0f} s")
        await self.paypal.down()
        await asyncio.sleep(seconds)
        await self.paypal.up()

    async def return_settled(
        self, database_url: str, processes: ServiceProcesses, per_rail: int, say: Say
    ) -> list[Return]:
        """Take back `per_rail` settled Stripe and Wise payouts, three simulated days after
        they were paid, and tell the payouts service by webhook: each event twice, half of
        them after their return, and each return replayed 301 s old."""
        settled = await _settled(database_url, per_rail)
        done: list[Return] = []
        for n, (rail, ref) in enumerate(settled):
            paid_at = self.clock.now()
            self.clock.advance(RETURN_AFTER)
            back = Return(rail, ref, paid_at, self.clock.now())
            self._take_back(back)
            paid, returned = _events(back)
            order = [returned, paid] if n % 2 else [paid, returned]
            self.webhooks.reordered += n % 2
            for body in order:
                for copy in range(2):
                    await self._deliver(processes, rail, body)
                    self.webhooks.duplicates += copy
            await self._replay(processes, rail, returned)
            self.returns.append(back)
            done.append(back)
        say(f"fault: {len(done)} payouts returned 3 days after paid, told by webhook")
        return done

    def _take_back(self, back: Return) -> None:
        if back.rail == "stripe":
            transfer = self.stripe.transfers[back.provider_ref]
            transfer["reversed"] = True
            transfer["amount_reversed"] = transfer["amount"]
        else:
            self.wise.transfers[int(back.provider_ref)]["status"] = "bounced_back"

    async def _deliver(self, processes: ServiceProcesses, rail: str, body: bytes) -> None:
        """POST a signed event to a running payouts instance until it takes it (2xx), as a
        rail retries: the instance may be down or restarting."""
        self.webhooks.deliveries += 1
        while True:
            status = await _post(processes, rail, body, int(time.time()))
            if status is not None and status < 300:
                return
            self.webhooks.retried += 1
            await asyncio.sleep(0.5)

    async def _replay(self, processes: ServiceProcesses, rail: str, body: bytes) -> None:
        """The same event, signed REPLAY_AGE_SECONDS ago: must be refused (400)."""
        self.webhooks.replays += 1
        while True:
            status = await _post(processes, rail, body, int(time.time()) - REPLAY_AGE_SECONDS)
            if status is not None and status < 500:
                self.webhooks.replays_refused += status == 400
                return
            await asyncio.sleep(0.5)


def _events(back: Return) -> tuple[bytes, bytes]:
    """The rail's `paid` event and its return event for one transfer."""
    if back.rail == "stripe":

        def stripe(event_id: str, kind: str, at: datetime, reversed_: bool) -> bytes:
            transfer = {"id": back.provider_ref, "object": "transfer", "reversed": reversed_}
            event = {
                "id": event_id,
                "object": "event",
                "type": kind,
                "created": int(at.timestamp()),
                "data": {"object": {**transfer, "amount_reversed": 0}},
            }
            return json.dumps(event).encode()

        return (
            stripe(f"evt_paid_{back.provider_ref}", "transfer.created", back.paid_at, False),
            stripe(f"evt_back_{back.provider_ref}", "transfer.reversed", back.returned_at, True),
        )

    def wise(state: str, at: datetime) -> bytes:
        data = {
            "resource": {"id": int(back.provider_ref), "type": "transfer"},
            "current_state": state,
            "occurred_at": at.isoformat(),
        }
        return json.dumps({"event_type": "transfers#state-change", "data": data}).encode()

    return wise("outgoing_payment_sent", back.paid_at), wise("bounced_back", back.returned_at)


async def _post(processes: ServiceProcesses, rail: str, body: bytes, signed_at: int) -> int | None:
    """The HTTP status of one delivery to any running payouts instance (None: none answered)."""
    ports = [p.http_port for label, p in processes.running.items() if label.startswith("payouts")]
    if not ports:
        return None
    header = signature_header(_SECRETS[rail], body, signed_at)
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await http.post(
                f"http://127.0.0.1:{ports[0]}/webhooks/{rail}",
                content=body,
                headers={_SIGNATURE_HEADERS[rail]: header, "Content-Type": "application/json"},
            )
    except httpx.HTTPError:
        return None
    return answer.status_code


async def _settled(database_url: str, per_rail: int) -> list[tuple[str, str]]:
    """(rail, transfer) of up to `per_rail` settled fee payouts on Stripe and on Wise, waiting
    for them (PostgreSQL may be down a while) for at most two minutes."""
    deadline = time.monotonic() + 120.0
    found: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(database_url, server_settings={"search_path": "payouts"})
            try:
                rows = await conn.fetch(_SETTLED, per_rail)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(1.0)
            continue
        found = [(r["rail"], r["provider_ref"]) for r in rows]
        if len(found) >= 2 * per_rail:
            break
        await asyncio.sleep(1.0)
    return found


_SETTLED: Final = """
SELECT rail, provider_ref FROM (
    SELECT rail, provider_ref,
           row_number() OVER (PARTITION BY rail ORDER BY payout_id) AS n
    FROM payouts_payouts
    WHERE kind = 'fee' AND status = 'settled' AND rail IN ('stripe', 'wise')
      AND provider_ref IS NOT NULL
) ranked
WHERE n <= $1
ORDER BY rail, provider_ref
"""
