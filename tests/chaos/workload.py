"""The chaos workload: deals, posts, orders, refunds, confirmations, accounts and FX rates as
Kafka records, with the outcome they must produce computed here, not by the services.

Seeded and pure: the same config and clock give the same records. Every deal has two
deliverables (a post and a story), so `deals` deals mean `2 * deals` confirmations. Some
stories lack the `#ad` tag and are confirmed by the brand instead; some posts are confirmed by
both (the first wins). About `duplicate_share` of the records are sent twice (same event id),
some orders are re-sent by the shop as new events, and the whole stream is shuffled; the
FX rates go first, as a rate feed publishes before the day's business.
About `amended_share` of the deals get a `deal.amended` (version 2) changing only the fee;
whether it reaches payouts before or after the deal's confirmations depends on the shuffle, so
their payouts have a few allowed outcomes (`PayoutTruth.allowed`), tracking's figures one.
About `cancelled_share` of the others are cancelled by their brand after everything they count
(posts, orders, both deliverables confirmed by the brand): whatever the order, nothing changes.
A cancellation before any of it would make the outcome depend on arrival order (tracking stops
auto-confirming once it has one, and payouts pays a later-dated confirmation that came first),
so none is sent.
Invalid records (from the hostile-input catalogue) are mixed in; each carries a
`chaos-invalid` header so its dead letters can be matched to it.
Most creators are paid through Stripe; one in five through PayPal and one in five through
Wise, each of those with a Stripe fallback (where a payout goes when its rail refused it
before executing anything, e.g. while that rail is down).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from services.matching.app import INPUT_TOPICS as MATCHING_INPUTS
from services.matching.translate import profile_payload
from services.payouts.app import INPUT_TOPICS as PAYOUTS_INPUTS
from services.tracking.app import INPUT_TOPICS as TRACKING_INPUTS
from shared.contract.events import (
    BrandFunded,
    CloudEvent,
    DealAmended,
    DealCancelled,
    DealSigned,
    Deliverable,
    DeliverableConfirmed,
    FxRatesPublished,
    OrderRedeemed,
    PayoutAccountUpserted,
    PayoutFallback,
    PostMetricsObserved,
    TaxForm,
    encode,
    event_key,
    make_event,
    spec_for_type,
)
from shared.contract.money import Money
from shared.tools.demo.scenario import DealTruth, PostGrowth, SeededCampaign, refund_of
from shared.tools.synthetic.population import (
    NICHE_NAMES,
    generate_population,
    niche_request,
)
from tests.e2e.hostile_events import TYPE_OF_TOPIC, bad_values

CONSUMERS: Final[dict[str, tuple[str, ...]]] = {
    "matching": tuple(MATCHING_INPUTS),
    "tracking": tuple(TRACKING_INPUTS),
    "payouts": tuple(PAYOUTS_INPUTS),
}
PAYOUT_CURRENCIES: Final = ("USD", "EUR", "GBP", "JPY", "KWD", "BRL", "INR", "BHD")
# PayPal and Wise creators take currencies both rails pay (PayPal has no 3-decimal currency).
RAIL_CURRENCIES: Final = ("USD", "EUR", "GBP", "JPY")
WISE_FIRST_RECIPIENT: Final = 900_000_000
REQUIRED_TAGS: Final = ("#ad", "#chaos")
BRAND_ID: Final = "brand-chaos"
INVALID_HEADER: Final = "chaos-invalid"
# The hostile catalogue's oversized values need a producer allowed to send them; the hostile
# suite covers them, so the chaos stream leaves them out.
_MAX_INVALID_BYTES: Final = 256 * 1024
GROWTH: Final = PostGrowth(
    likes_per_comment=10,
    likes_per_share=25,
    likes_per_save=7,
    views_per_reach=1.5,
    impressions_per_reach=1.2,
)


@dataclass(frozen=True)
class ChaosConfig:
    deals: int = 5000
    seed: int = 11
    duplicate_share: float = 0.3
    profiles: int = 600
    match_requests: int = 8
    invalid_per_topic: int = 4
    campaigns: int = 10
    amended_share: float = 0.1
    cancelled_share: float = 0.05


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    event_id: str | None  # None: an invalid record
    invalid: int | None = None  # the invalid record's number (its `chaos-invalid` header)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [] if self.invalid is None else [(INVALID_HEADER, str(self.invalid).encode())]


@dataclass(frozen=True)
class PayoutTruth:
    creator_id: str
    destination: str
    net: Money  # the fee in the creator's currency (no platform fee in this workload)
    parts: tuple[Money, ...]  # per deliverable, each converted on its own
    method: str = "stripe"
    fallback: str | None = None  # the Stripe account of a PayPal or Wise creator
    # An amended deal: the other outcomes its arrival order allows (each part converted on
    # its own). `amended_net` is the amended fee paid on completion; `amended_parts` its
    # halves, when the amendment came before both confirmations; `mixed` one deliverable's
    # share of the first fee and the rest of the amended one, when it came between them.
    amended_net: Money | None = None
    amended_parts: tuple[Money, ...] = ()
    mixed: tuple[tuple[Money, ...], ...] = ()

    @property
    def destinations(self) -> tuple[str, ...]:
        """Where this creator's money may go: the account's rail, or its fallback."""
        return (self.destination,) if self.fallback is None else (self.destination, self.fallback)

    def expected(self, fee_schedule: str) -> list[Money]:
        """The transfers the creator gets under the fee schedule the deal was stored with."""
        return sorted(self.parts) if fee_schedule == "per_deliverable" else [self.net]

    @property
    def amended(self) -> bool:
        return self.amended_net is not None

    def allowed(self, fee_schedule: str) -> list[tuple[str, list[Money]]]:
        """Every transfer list (sorted) the creator may get, named by the versions it pays:
        `expected` ("v1") for a deal never amended; for an amended one also the amended fee
        ("v2"), or per deliverable a mix of the two. A payout once created never changes, so
        no other outcome is right."""
        found = [("v1", self.expected(fee_schedule))]
        if self.amended_net is None:
            return found
        if fee_schedule != "per_deliverable":
            return [*found, ("v2", [self.amended_net])]
        return [
            *found,
            ("v2", sorted(self.amended_parts)),
            *(("mixed", sorted(m)) for m in self.mixed),
        ]


@dataclass
class Workload:
    config: ChaosConfig
    records: list[Record]
    attribution: dict[str, DealTruth]  # by deal_id
    confirmations: set[tuple[str, str]]  # (deal_id, deliverable_id)
    payouts: dict[str, PayoutTruth]  # by deal_id
    match_requests: set[str]
    # Valid event ids each service must have applied (its input topics), and the invalid
    # records each must have dead-lettered.
    applied: dict[str, set[str]] = field(default_factory=dict)
    dead_letters: dict[str, set[int]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)  # deal ids

    @property
    def destinations(self) -> set[str]:
        return {d for p in self.payouts.values() for d in p.destinations}

    def destinations_of(self, method: str) -> set[str]:
        """The destinations on one rail (a fallback is on Stripe)."""
        found = {p.destination for p in self.payouts.values() if p.method == method}
        if method == "stripe":
            found |= {p.fallback for p in self.payouts.values() if p.fallback is not None}
        return found

    def counts(self) -> dict[str, int]:
        return {
            "records": len(self.records),
            "valid events": len({r.event_id for r in self.records if r.event_id}),
            "sent twice": sum(1 for r in self.records if r.event_id)
            - len({r.event_id for r in self.records if r.event_id}),
            "invalid": sum(1 for r in self.records if r.invalid is not None),
            "deals": len(self.payouts),
            "confirmations": len(self.confirmations),
            "amended": sum(1 for p in self.payouts.values() if p.amended),
            "cancelled": len(self.cancelled),
        }


def generate(config: ChaosConfig, now: datetime) -> Workload:
    return _Generator(config, now).workload()


class _Generator(SeededCampaign):
    def __init__(self, config: ChaosConfig, now: datetime) -> None:
        super().__init__(config.seed, now, started=timedelta(days=4), ends_in=timedelta(days=10))
        self.config = config
        self.events: list[CloudEvent[Any]] = []
        self.attribution: dict[str, DealTruth] = {}
        self.confirmations: set[tuple[str, str]] = set()
        self.payouts: dict[str, PayoutTruth] = {}
        self.match_requests: set[str] = set()
        self.cancelled: set[str] = set()

    def workload(self) -> Workload:
        fx = FxRatesPublished(
            base="USD", rates=dict(self.fx.rates), as_of=self.fx.as_of, source="fx-feed"
        )
        first = make_event(fx, source="fx-feed", time=self.now)
        self._matching()
        for n in range(self.config.deals):
            self._deal(n)
        self._poisoned_fx_feed()
        records = [_record(e) for e in self.events]
        records += [r for r in records if self.rng.random() < self.config.duplicate_share]
        records += self._invalid()
        self.rng.shuffle(records)
        records.insert(0, _record(first))
        return self._accounted(records)

    def _accounted(self, records: list[Record]) -> Workload:
        applied: dict[str, set[str]] = defaultdict(set)
        dead: dict[str, set[int]] = defaultdict(set)
        for record in records:
            for service, topics in CONSUMERS.items():
                if record.topic not in topics:
                    continue
                if record.event_id is not None:
                    applied[service].add(record.event_id)
                elif record.invalid is not None:
                    dead[service].add(record.invalid)
        return Workload(
            self.config,
            records,
            self.attribution,
            self.confirmations,
            self.payouts,
            self.match_requests,
            dict(applied),
            dict(dead),
            self.cancelled,
        )

    def _matching(self) -> None:
        population = generate_population(
            self.config.profiles, seed=self.config.seed, id_prefix="cp"
        )
        profiles = population.profiles
        self.events += [
            make_event(profile_payload(profiles, i), source="onboarding", time=self.now)
            for i in range(len(profiles))
        ]
        for n in range(self.config.match_requests):
            request = niche_request(
                NICHE_NAMES[n % len(NICHE_NAMES)],
                request_id=f"req-chaos-{n:03d}",
                campaign_id=self._campaign(n),
                seed=self.config.seed + n,
                limit=20,
                brand_id=BRAND_ID,
            )
            self.match_requests.add(request.request_id)
            self.events.append(make_event(request, source="brand/chaos", time=self.now))

    def _campaign(self, n: int) -> str:
        return f"cmp-chaos-{n % self.config.campaigns:02d}"

    def _deal(self, n: int) -> None:
        creator_id = f"cc-{n:05d}"
        deal = DealSigned(
            deal_id=f"deal-chaos-{n:05d}",
            campaign_id=self._campaign(n),
            brand_id=BRAND_ID,
            creator_id=creator_id,
            fee=Money.of(Decimal(self.rng.randint(150, 1200)), "USD"),
            commission_rate=Decimal("0.05"),
            promo_codes=(f"CHAOS{n:05d}",),
            deliverables=(
                Deliverable(deliverable_id="post-1", kind="post", count=1, due_by=self.ends_at),
                Deliverable(deliverable_id="story-1", kind="story", count=1, due_by=self.ends_at),
            ),
            required_tags=REQUIRED_TAGS,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            attribution_window_days=14,
        )
        self.events.append(make_event(deal, source="brand/chaos", time=self.now))
        amended = self._amendment(deal)
        # The brand funds each deal's fee (the higher of its versions): in any order with the
        # rest, a payout owed before its funds arrive waits for them (awaiting_funds) and is
        # paid when they do.
        funding = BrandFunded(
            brand_id=BRAND_ID,
            funding_id=f"fund-{deal.deal_id}",
            amount=deal.fee if amended is None else max(deal.fee, amended.fee),
            funded_at=self.now,
        )
        self.events.append(make_event(funding, source="brand/chaos", time=self.now))
        method = ("stripe", "paypal", "wise", "stripe", "stripe")[n % 5]
        currency = self.rng.choice(PAYOUT_CURRENCIES if method == "stripe" else RAIL_CURRENCIES)
        stripe_account = f"acct_chaos{n:05d}"
        destination = {
            "stripe": stripe_account,
            "paypal": f"{creator_id}@chaos.example",
            "wise": f"recipient:{WISE_FIRST_RECIPIENT + n}",
        }[method]
        fallback = None if method == "stripe" else stripe_account
        account = PayoutAccountUpserted(
            creator_id=creator_id,
            method=method,
            destination=destination,
            currency=currency,
            tax_form=TaxForm(
                type="W-9", status="verified", verified_at=self.now - timedelta(days=90)
            ),
            fallback=None
            if fallback is None
            else PayoutFallback(method="stripe", destination=fallback),
        )
        self.events.append(make_event(account, source="onboarding", time=self.now))
        self.payouts[deal.deal_id] = PayoutTruth(
            creator_id,
            destination,
            *self._fees(deal, deal.fee, currency),
            method,
            fallback,
            **({} if amended is None else self._amended_fees(deal, amended.fee, currency)),
        )

        truth = self.attribution.setdefault(deal.deal_id, DealTruth())
        followers = self.rng.randint(10_000, 100_000)
        untagged_story = self.rng.random() < 0.15
        # A deal to be cancelled is confirmed by its brand only: tracking confirms nothing
        # once it knows of the cancellation, and that depends on arrival order.
        cancelled = amended is None and self.rng.random() < self.config.cancelled_share
        for k, (kind, deliverable_id) in enumerate((("post", "post-1"), ("story", "story-1"))):
            tagged = not cancelled and not (kind == "story" and untagged_story)
            self._post(deal, k, kind, followers, tagged, truth)
            self.confirmations.add((deal.deal_id, deliverable_id))
            brand_confirms = not tagged or self.rng.random() < 0.1
            if brand_confirms:
                confirmation = DeliverableConfirmed(
                    deal_id=deal.deal_id,
                    deliverable_id=deliverable_id,
                    post_id=None,
                    confirmed_by=BRAND_ID,
                    confirmed_at=self.now - timedelta(hours=1),
                )
                self.events.append(make_event(confirmation, source="brand/chaos", time=self.now))
        self._orders(deal, truth)
        if cancelled:
            self._cancel(deal)

    def _cancel(self, deal: DealSigned) -> None:
        """The brand ends the deal now (the event's time), after its posts, its orders and
        its confirmations (dated an hour ago): all of them still count and are paid, whether
        they arrive before or after the cancellation."""
        cancellation = DealCancelled(
            deal_id=deal.deal_id, brand_id=BRAND_ID, reason="Campaign withdrawn"
        )
        self.events.append(make_event(cancellation, source="brand/chaos", time=self.now))
        self.cancelled.add(deal.deal_id)

    def _amendment(self, deal: DealSigned) -> DealAmended | None:
        """For about `amended_share` of the deals, the brand's version 2 of the terms with
        only the fee changed: a whole-dollar amount between 0.6 and 1.4 times the first, never
        equal (whole dollars: the halves per deliverable are exact cents)."""
        if self.rng.random() >= self.config.amended_share:
            return None
        first = int(deal.fee.amount)
        fee = self.rng.choice(
            [f for f in range(int(first * 0.6) + 1, int(first * 1.4) + 1) if f != first]
        )
        amended = DealAmended(**{**dict(deal), "fee": Money.of(Decimal(fee), "USD")}, version=2)
        self.events.append(make_event(amended, source="brand/chaos", time=self.now))
        return amended

    def _fees(self, deal: DealSigned, fee: Money, currency: str) -> tuple[Money, tuple[Money, ...]]:
        """`fee` in the creator's currency: whole, and per deliverable (`Money.allocate` by
        their counts, as payouts splits it), each part converted on its own."""
        parts = fee.allocate([d.count for d in deal.deliverables])
        return self._convert(fee, currency), tuple(self._convert(p, currency) for p in parts)

    def _amended_fees(self, deal: DealSigned, amended: Money, currency: str) -> dict[str, Any]:
        """The other outcomes of an amended deal (`PayoutTruth.allowed`): the amended fee,
        its halves, or the first fee's share for the deliverable confirmed first and the rest
        of the amended fee for the other (`fee_due`: the payout completing a deal gets what
        is left of the fee in force)."""
        net, parts = self._fees(deal, amended, currency)
        # Two deliverables: either may be confirmed first (equal shares give one outcome).
        mixed = tuple(
            dict.fromkeys(
                (self._convert(share, currency), self._convert(amended - share, currency))
                for share in deal.fee.allocate([d.count for d in deal.deliverables])
            )
        )
        return {"amended_net": net, "amended_parts": parts, "mixed": mixed}

    def _convert(self, amount: Money, currency: str) -> Money:
        return self.fx.convert(amount, currency).result

    def _post(
        self,
        deal: DealSigned,
        k: int,
        kind: str,
        followers: int,
        tagged: bool,
        truth: DealTruth,
    ) -> None:
        posted_at = self.starts_at + timedelta(hours=5 + 24 * k + self.rng.randint(0, 10))
        final_reach = int(followers * self.rng.uniform(0.1, 0.6))
        final_likes = int(final_reach * self.rng.uniform(0.04, 0.12))
        tags = REQUIRED_TAGS if tagged else ("#chaos",)
        snapshot: PostMetricsObserved | None = None
        for step, share in enumerate((0.4, 0.8, 1.0)[: 3 - k]):
            likes = int(final_likes * share)
            reach = int(final_reach * share)
            snapshot = PostMetricsObserved(
                post_id=f"ig-{deal.creator_id}-{k}",
                creator_id=deal.creator_id,
                platform="instagram",
                kind=kind,
                deal_id=deal.deal_id,
                caption=f"Made with @chaos {' '.join(tags)}",
                tags=tags,
                posted_at=posted_at,
                observed_at=posted_at + timedelta(hours=3 + 12 * step),
                followers=followers,
                **GROWTH.counts(likes, reach),
            )
            self.events.append(make_event(snapshot, source="collector/metrics", time=self.now))
        assert snapshot is not None
        truth.add_post(snapshot)

    def _orders(self, deal: DealSigned, truth: DealTruth) -> None:
        code = deal.promo_codes[0]
        for j in range(self.rng.randint(1, 6)):
            occurred_at = self.starts_at + timedelta(hours=self.rng.randint(6, 90))
            usd = Decimal(self.rng.randint(1200, 12000)) / 100
            in_eur = self.rng.random() < 0.2
            amount = self.order_amount(usd, in_eur=in_eur)
            order = OrderRedeemed(
                order_id=f"ord-{deal.deal_id}-{j}",
                promo_code=code,
                amount=amount,
                occurred_at=occurred_at,
            )
            self.events.append(make_event(order, source="shop/chaos", time=self.now))
            if self.rng.random() < 0.1:  # the shop retries: a new event, the same order
                self.events.append(make_event(order, source="shop/chaos", time=self.now))
            if self.rng.random() < 0.1:
                refund = refund_of(order, timedelta(hours=12))
                self.events.append(make_event(refund, source="shop/chaos", time=self.now))
            else:
                truth.add_order(self.fx.convert(amount, "USD").result)
        if self.rng.random() < 0.2:  # before the deal started: valid, attributed to nobody
            early = self.early_order(deal.deal_id, code, Money.of("30.00", "USD"))
            self.events.append(make_event(early, source="shop/chaos", time=self.now))

    def _poisoned_fx_feed(self) -> None:
        """Mid-stream, the feed publishes absurd rates (EUR x 100,000, JPY 1E-40), then the
        correct ones again, later. Payouts created in between must be held, then paid at the
        correct rate; the ground truth stays that of the first snapshot. Both are hours old:
        the correct one is what payouts confirmed since convert with (the first snapshot is a
        month old, too old for a fee)."""
        poisoned = {**self.fx.rates, "EUR": Decimal("100000"), "JPY": Decimal("1E-40")}
        for rates, hours in ((poisoned, 3), (dict(self.fx.rates), 2)):
            fx = FxRatesPublished(
                base="USD", rates=rates, as_of=self.now - timedelta(hours=hours), source="fx-feed"
            )
            self.events.append(make_event(fx, source="fx-feed", time=fx.as_of))

    def _invalid(self) -> list[Record]:
        # The topics the hostile catalogue covers (tracking.clicks is not in it yet).
        inputs = sorted({t for topics in CONSUMERS.values() for t in topics} & set(TYPE_OF_TOPIC))
        picked = []
        for topic in inputs:
            bad = [b for b in bad_values(topic) if len(b.value) <= _MAX_INVALID_BYTES]
            picked += self.rng.sample(bad, min(self.config.invalid_per_topic, len(bad)))
        records = [
            Record(b.topic, b.key, b.value, None, invalid=n) for n, b in enumerate(picked, start=1)
        ]
        return records + self._from_the_future(len(records) + 1)

    def _from_the_future(self, first: int) -> list[Record]:
        """Valid by the contract, refused for their time: a snapshot dated a year ahead that
        would outrank every later one, and an account update dated 9999 that would redirect a
        creator's payouts to another destination for good."""
        fx = FxRatesPublished(
            base="USD",
            rates={**self.fx.rates, "EUR": Decimal("100000")},
            as_of=self.now + timedelta(days=365),
            source="fx-feed",
        )
        account = PayoutAccountUpserted(
            creator_id="cc-00000",
            method="stripe",
            destination="acct_attacker",
            currency="USD",
            tax_form=TaxForm(type="W-9", status="verified"),
        )
        future = [
            make_event(fx, source="fx-feed", time=self.now),
            make_event(account, source="onboarding", time=datetime(9999, 1, 1, tzinfo=UTC)),
        ]
        return [
            Record(spec_for_type(e.type).topic, event_key(e), encode(e), None, invalid=n)
            for n, e in enumerate(future, start=first)
        ]


def _record(event: CloudEvent[Any]) -> Record:
    return Record(spec_for_type(event.type).topic, event_key(event), encode(event), event.id)
