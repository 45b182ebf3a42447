"""Plays a `Scenario` against running services, through Kafka only, and collects what comes
back: the shortlist, attribution, confirmations and payouts, with their timings.

Waiting uses what an operator sees: each service's `/metrics` counter of events consumed
(counted after the database commit), and the events on the output topics.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream.security import BaseSecurity

from shared.contract.events import (
    RECORD_HEADERS,
    AttributionUpdated,
    CampaignAttributionUpdated,
    CloudEvent,
    DeliverableConfirmed,
    EventDecodeError,
    MatchSuggested,
    PayoutStatusChanged,
    PromoCodeLeakSuspected,
    Topic,
    decode,
    encode,
    event_key,
    spec_for_type,
)
from shared.runtime.kafka import client_options
from shared.tools.demo.scenario import (
    BRAND_ID,
    SHOWCASE,
    Activity,
    DemoConfig,
    Hire,
    Scenario,
)
from shared.tools.infra.service_processes import service_metrics
from shared.tools.signing import PartyKeys
from shared.tools.topic_reader import TopicReader

Step = Callable[[str], None]
Tick = Callable[["Observed", int], None]  # what has come back so far, deals signed
OUTPUT_TOPICS = (
    Topic.MATCH_SUGGESTIONS,
    Topic.TRACKING_ATTRIBUTION,
    Topic.TRACKING_CAMPAIGN_ATTRIBUTION,
    Topic.DELIVERABLES_CONFIRMED,
    Topic.PAYOUTS_STATUS,
)


class DemoError(RuntimeError):
    pass


@dataclass
class Observed:
    """Everything read from the output topics, with when it arrived (monotonic seconds)."""

    suggestions: dict[str, MatchSuggested] = field(default_factory=dict)
    attribution: dict[str, AttributionUpdated] = field(default_factory=dict)
    attribution_updates: int = 0
    # The latest `campaign.attribution.updated` of each campaign (greatest sequence).
    campaigns: dict[str, CampaignAttributionUpdated] = field(default_factory=dict)
    leaks: list[PromoCodeLeakSuspected] = field(default_factory=list)
    confirmations: dict[str, list[tuple[DeliverableConfirmed, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    payouts: dict[str, list[tuple[PayoutStatusChanged, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    last_change: float = field(default_factory=time.monotonic)

    def latest_payout(self, payout_id: str) -> PayoutStatusChanged:
        return self.payouts[payout_id][-1][0]

    def fee_payouts(self) -> dict[str, list[tuple[PayoutStatusChanged, datetime]]]:
        return {pid: h for pid, h in self.payouts.items() if h[0][0].kind in (None, "fee")}


@dataclass
class DemoReport:
    config: DemoConfig
    scenario: Scenario
    shortlist: MatchSuggested
    hires: list[Hire]
    activity: Activity
    observed: Observed
    events_published: int
    confirm_to_sent_ms: list[float]
    seconds: dict[str, float]
    post_to_sent_ms: list[float] = field(default_factory=list)
    # The same three Kafka hops done by bare clients in the same run (shared.tools.latency_floor),
    # or why they could not be measured.
    floor_ms: list[float] = field(default_factory=list)
    floor_error: str | None = None


class Watcher(TopicReader):
    """Reads the output topics from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, security: BaseSecurity | None = None) -> None:
        self.observed = Observed()
        self._consumer = AIOKafkaConsumer(
            **client_options(bootstrap, security), enable_auto_commit=False
        )

    async def start(self) -> None:
        await self.read_from_beginning(OUTPUT_TOPICS)

    def take(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            try:
                event = decode(record.topic, record.value or b"")
            except EventDecodeError:
                continue
            self._take(event, time.monotonic())

    def _take(self, event: CloudEvent[Any], arrived: float) -> None:
        seen = self.observed
        data = event.data
        seen.last_change = arrived
        if isinstance(data, MatchSuggested):
            seen.suggestions[data.request_id] = data
        elif isinstance(data, AttributionUpdated):
            seen.attribution_updates += 1
            current = seen.attribution.get(data.deal_id)
            if current is None or data.as_of >= current.as_of:
                seen.attribution[data.deal_id] = data
        elif isinstance(data, CampaignAttributionUpdated):
            known = seen.campaigns.get(data.campaign_id)
            if known is None or data.sequence > known.sequence:
                seen.campaigns[data.campaign_id] = data
        elif isinstance(data, PromoCodeLeakSuspected):
            seen.leaks.append(data)
        elif isinstance(data, DeliverableConfirmed):
            seen.confirmations[data.deal_id].append((data, event.time))
        elif isinstance(data, PayoutStatusChanged):
            seen.payouts[data.payout_id].append((data, datetime.now(UTC)))


async def consumed(http_port: int, topic: str) -> int:
    """How many events of `topic` a service has handled, from its Prometheus counter."""
    for family in await service_metrics(http_port, request_seconds=2.0):
        if family.name == "creatorflow_events_consumed":
            return int(sum(s.value for s in family.samples if s.labels.get("topic") == topic))
    return 0


async def until(
    check: Callable[[], Any], what: str, seconds: float, tick: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if tick is not None:
            tick()
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {seconds:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


class Player:
    _seen: Observed

    def __init__(
        self,
        bootstrap: str,
        ports: dict[str, int],
        config: DemoConfig,
        step: Step,
        tick: Tick | None = None,
        security: BaseSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.ports = ports
        self.config = config
        self.step = step
        self.tick = tick
        self.deals = 0
        self.published: dict[tuple[str, str], int] = defaultdict(int)  # (service, topic) -> n
        # acks=all: a key registration counts once every replica has it; before that the
        # services, reading the registry up to its end, may not see it yet.
        self._producer = AIOKafkaProducer(
            **client_options(bootstrap, security), linger_ms=5, acks="all"
        )
        # The brand, its shop and the onboarding party sign what they send, as production
        # requires; their keys are registered the first time each signs.
        self.keys = PartyKeys(source="creatorflow/demo", shop_brands=[BRAND_ID])
        self._registered: set[str] = set()

    async def publish(self, events: list[CloudEvent[Any]]) -> None:
        signed = [self.keys.sign(event, owner=BRAND_ID) for event in events]
        registrations = [
            r for r in self.keys.registrations() if r.data.key_id not in self._registered
        ]
        for registration in registrations:
            await self._producer.send_and_wait(
                Topic.OPERATOR_SIGNING_KEYS,
                encode(registration),
                key=event_key(registration),
                headers=RECORD_HEADERS,
            )
            self._registered.add(registration.data.key_id)
            data = registration.data
            sells = f", selling for {', '.join(data.brands)}" if data.brands else ""
            self.step(f"registered the signing key of {data.party.value} {data.owner_id}{sells}")
        pending = []
        for event in signed:
            topic = spec_for_type(event.type).topic
            pending.append(
                await self._producer.send(
                    topic, encode(event), key=event_key(event), headers=RECORD_HEADERS
                )
            )
            for service in self.ports:
                self.published[(service, topic)] += 1
        await asyncio.gather(*pending)

    async def wait(self, check: Callable[[], Any], what: str, seconds: float) -> None:
        tick = self.tick
        seen = self._seen
        await until(check, what, seconds, None if tick is None else lambda: tick(seen, self.deals))

    async def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        await self.wait(lambda: time.monotonic() >= end, "a pause", seconds + 5)

    async def caught_up(self, service: str, topics: tuple[str, ...]) -> bool:
        for topic in topics:
            if await consumed(self.ports[service], topic) < self.published[(service, topic)]:
                return False
        return True

    async def _fund_late(self, scenario: Scenario, hires: list[Hire]) -> None:
        """The fee confirmed by hand waits for the brand's funds; then they arrive."""
        late = scenario.waits_for_funds(hires)
        if late is None:
            return
        seen = self._seen
        await self.wait(
            lambda: any(
                p.deal_id == late and awaits_funds(p)
                for history in seen.fee_payouts().values()
                for p, _ in history
            ),
            "the last fee to wait for the brand's funds",
            60,
        )
        self.step("a fee waits for the brand's funds; the brand funds it")
        await self.publish(scenario.late_funding(hires))

    async def play(self) -> DemoReport:
        began = time.monotonic()
        seconds: dict[str, float] = {}
        scenario = Scenario(self.config, datetime.now(UTC))
        watcher = Watcher(self.bootstrap, self.security)
        await self._producer.start()
        await watcher.start()
        seen = self._seen = watcher.observed
        try:
            opening, request = scenario.opening()
            self.step(f"publishing FX rates and {self.config.creators:,} creator profiles")
            await self.publish(opening)
            await self.wait(
                lambda: self.caught_up("matching", (Topic.CREATOR_PROFILES, Topic.FX_RATES)),
                "matching to index the creators",
                120,
            )
            seconds["population indexed"] = time.monotonic() - began

            self.step("the brand asks for micro-creators in its niche")
            asked = time.monotonic()
            await self.publish([request])
            request_id = request.data.request_id
            await self.wait(lambda: request_id in seen.suggestions, "match.suggested", 60)
            seconds["match request → suggestions"] = time.monotonic() - asked
            shortlist = seen.suggestions[request_id]
            if len(shortlist.suggestions) < self.config.hires:
                raise DemoError(
                    f"matching suggested {len(shortlist.suggestions)} creators, fewer than the "
                    f"{self.config.hires} to hire; filtered: {dict(shortlist.filtered)}"
                )

            hires, contracting = scenario.hire(shortlist)
            self.deals = len(hires)
            self.step(f"signing {len(hires)} deals, funding them, onboarding payout accounts")
            await self.publish(contracting)
            recorded = {
                "tracking": (Topic.CAMPAIGN_DEALS,),
                "payouts": (Topic.CAMPAIGN_DEALS, Topic.BRAND_FUNDING),
            }
            for service, topics in recorded.items():
                await self.wait(
                    lambda s=service, t=topics: self.caught_up(s, t),  # type: ignore[misc]
                    f"{service} to record the deals (and payouts the brand's funds)",
                    60,
                )

            activity = scenario.activity(hires)
            for n, wave in enumerate(activity.waves, start=1):
                self.step(f"wave {n}/3: {len(wave)} metric snapshots, orders and refunds")
                await self.publish(wave)
                await self.pause(1.0)  # posts and orders arrive over time
            await self.wait(
                lambda: self.caught_up(
                    "tracking", (Topic.TRACKING_POST_METRICS, Topic.TRACKING_ORDERS)
                ),
                "tracking to apply every snapshot and order",
                120,
            )

            self.step("tax forms verified; the brand confirms the story posted without #ad")
            await self.publish(scenario.late_fixes(hires, activity, datetime.now(UTC)))
            await self._fund_late(scenario, hires)
            await self.wait(
                lambda: (
                    len({p for p, h in seen.fee_payouts().items() if paid_or_returned(h)})
                    >= len(hires)
                ),
                "every creator's fee to be paid",
                120,
            )
            await self._resend_returned(scenario, hires)
            # Attribution is coalesced and published through an outbox: let the last settle.
            await self.wait(lambda: time.monotonic() - seen.last_change > 2.0, "quiet outputs", 60)
            seconds["total"] = time.monotonic() - began
        finally:
            await watcher.stop()
            await self._producer.stop()
        return DemoReport(
            self.config,
            scenario,
            shortlist,
            hires,
            activity,
            seen,
            sum(v for (s, _), v in self.published.items() if s == "matching"),
            confirm_to_sent(seen, {h.deal.deal_id for h in hires}),
            seconds,
            post_to_sent(seen, {h.deal.deal_id for h in hires}),
        )

    async def _resend_returned(self, scenario: Scenario, hires: list[Hire]) -> None:
        """The returned payout: wait for the bank's return, then the creator gives a new
        account, and the payout is sent again by itself."""
        hire = hires[SHOWCASE.returned(len(hires))]
        seen = self._seen

        def history() -> list[str]:
            return [p.status for p, _ in fee_history(seen, hire.deal.deal_id)]

        await self.wait(lambda: "failed" in history(), "the closed account's return", 60)
        self.step(
            f"the bank returned {hire.handle}'s payout (account closed); the creator gives a "
            "new account, paid to after its cool-off"
        )
        await self.publish([scenario.fixed_account(hire, datetime.now(UTC))])
        await self.wait(
            lambda: history()[-1] in ("sent", "settled") and "failed" in history(),
            "the returned payout to be sent again",
            90,
        )


def fee_history(seen: Observed, deal_id: str) -> list[tuple[PayoutStatusChanged, datetime]]:
    """The status history of `deal_id`'s fee payout, in the order seen."""
    for history in seen.fee_payouts().values():
        if history[0][0].deal_id == deal_id:
            return history
    return []


def paid_or_returned(history: list[tuple[PayoutStatusChanged, datetime]]) -> bool:
    """Sent or settled now, or sent and then returned by the bank (failed after `sent`)."""
    statuses = [p.status for p, _ in history]
    return statuses[-1] in ("sent", "settled") or (statuses[-1] == "failed" and "sent" in statuses)


def awaits_funds(status: PayoutStatusChanged) -> bool:
    """A `payout.held` waiting for the brand's funds."""
    return status.status == "held" and status.hold_code == "awaiting_funds"


def sent_unheld(statuses: Sequence[str]) -> bool:
    """Sent, and never held before its first `sent` (a hold after it, e.g. the cool-off of
    a returned payout's new destination, does not delay that first send)."""
    return "sent" in statuses and "held" not in statuses[: statuses.index("sent")]


def _sent_unheld(
    seen: Observed, deal_ids: set[str]
) -> Iterator[tuple[list[tuple[DeliverableConfirmed, datetime]], datetime]]:
    """Each fee payout of `deal_ids` paid without a hold whose deal has confirmations seen:
    those confirmations (each with when it was seen) and when its `payout.sent` was seen."""
    for history in seen.fee_payouts().values():
        statuses = [p.status for p, _ in history]
        first = history[0][0]
        if first.deal_id not in deal_ids or not sent_unheld(statuses):
            continue
        confirmed = seen.confirmations.get(first.deal_id)
        if confirmed:
            yield confirmed, next(at for p, at in history if p.status == "sent")


def confirm_to_sent(seen: Observed, deal_ids: set[str]) -> list[float]:
    """Per fee payout paid without a hold: last confirmation of its deal → `payout.sent` seen.

    Confirmation time is the `deliverable.confirmed` event's own time (when tracking decided);
    the other end is when the demo read `payout.sent` off Kafka, so both hops are included.
    """
    latencies = []
    for confirmed, sent_seen in _sent_unheld(seen, deal_ids):
        last_confirmation = max(at for _, at in confirmed)
        latencies.append((sent_seen - last_confirmation).total_seconds() * 1000)
    return sorted(latencies)


def post_to_sent(seen: Observed, deal_ids: set[str]) -> list[float]:
    """Per fee payout paid without a hold whose deal's last confirmation was made on a post's
    arrival: that post reaching Kafka (`post_received_at`, its record's timestamp) ->
    `payout.sent` seen. Payouts confirmed last by the brand are left out."""
    latencies = []
    for confirmed, sent_seen in _sent_unheld(seen, deal_ids):
        last, _ = max(confirmed, key=lambda item: item[0].confirmed_at)
        if last.post_received_at is not None:
            latencies.append((sent_seen - last.post_received_at).total_seconds() * 1000)
    return sorted(latencies)
