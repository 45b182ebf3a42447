"""One realistic campaign as events, with its ground truth computed here, not by the services.

Seeded and pure: the same seed and clock give the same events. The campaign unfolds in steps
because the brand's hiring depends on matching's answer:

1. `opening`: FX rates, a creator population (with fakes), the brand's match request;
2. `hire`: deals with the top micro-creators of the shortlist, their payout accounts (two
   with a tax form still pending, so their payouts wait), and the brand's funding of its
   escrow: every fee but the one confirmed by hand last;
3. `activity`: posts with cumulative metric snapshots (duplicated, out of order), promo-code
   orders (some duplicated, some refunded, some outside the window or with unknown codes), and
   the expected attribution of each deal;
4. `late_fixes`: the pending tax forms verified, and the brand's manual confirmation of the
   one story posted without the required `#ad`: that fee waits for the brand's funds
   (`awaiting_funds`) until
5. `late_funding`: the brand funds it;
6. `fixed_account`: the creator whose bank returned the payout (the account was closed) gives
   a new one, and the payout is sent again.

One creator's promo code leaks to a coupon site: a few orders come from it, shipped outside
the creator's audience countries, and tracking flags the code (`LeakTruth`).

Most creators are paid through Wise; one through PayPal, and one has given a Wise account
that its bank has closed (the sandbox returns what is sent there, `RailsShowcase`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from services.matching.translate import profile_payload
from services.payouts.providers.sandbox import CLOSED_SUFFIX
from shared.contract.events import (
    BrandFunded,
    CloudEvent,
    DealSigned,
    Deliverable,
    DeliverableConfirmed,
    FxRatesPublished,
    MatchSuggested,
    OrderRedeemed,
    OrderRefunded,
    PayoutAccountUpserted,
    PostMetricsObserved,
    TaxForm,
    make_event,
)
from shared.contract.money import FxSnapshot, Money
from shared.tools.synthetic.population import (
    REFERENCE_RATES,
    Population,
    generate_population,
    niche_request,
)

BRAND_ID: Final = "brand-bakeco"
# Orders of the bakery's shop with promo codes no deal carries.
STRAY_ORDERS: Final = 3
BRAND_SOURCE: Final = "brand/bakeco"
SHOP_SOURCE: Final = "shop/bakeco"
COLLECTOR_SOURCE: Final = "collector/metrics"
ONBOARDING_SOURCE: Final = "onboarding"
FX_SOURCE: Final = "fx-feed"
REQUIRED_TAGS: Final = ("#ad", "#bakeco")
COMMISSION_RATE: Final = Decimal("0.10")
# The hire whose story lacks #ad: the brand confirms it by hand, last, and funds its fee late.
CONFIRMED_BY_HAND: Final = 4
# Rates (per USD) beyond the population's: a three-decimal currency for some creators' accounts.
EXTRA_RATES: Final = {"KWD": Decimal("0.3075"), "BHD": Decimal("0.3770")}


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    creators: int = 3000
    hires: int = 25
    niche: str = "baking"
    campaign_id: str = "cmp-spring-bake"


@dataclass(frozen=True)
class Hire:
    deal: DealSigned
    handle: str
    platform: str
    followers: int
    payout_currency: str
    promo_code: str


@dataclass
class DealTruth:
    """What tracking should report for one deal, computed from the generated activity."""

    posts: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0
    views: int = 0
    reach: int = 0
    impressions: int = 0
    orders: int = 0
    revenue: Money = field(default_factory=lambda: Money.zero("USD"))

    def add_post(self, last: PostMetricsObserved) -> None:
        """Count one post by its last snapshot (snapshots are cumulative, not deltas)."""
        self.posts += 1
        self.likes += last.likes
        self.comments += last.comments
        self.shares += last.shares
        self.saves += last.saves
        self.views += last.views
        self.reach += last.reach
        self.impressions += last.impressions

    def add_order(self, revenue: Money) -> None:
        """Count one order that stays attributed (not refunded), its revenue in USD."""
        self.orders += 1
        self.revenue += revenue


@dataclass(frozen=True)
class PostGrowth:
    """How a generated post's counts follow its likes and its reach: so many likes per
    comment, share and save; so many views and impressions per account reached."""

    likes_per_comment: int
    likes_per_share: int
    likes_per_save: int
    views_per_reach: float
    impressions_per_reach: float

    def counts(self, likes: int, reach: int) -> dict[str, int]:
        """A snapshot's cumulative counts once the post has `likes` likes and `reach` reach."""
        return {
            "likes": likes,
            "comments": likes // self.likes_per_comment,
            "shares": likes // self.likes_per_share,
            "saves": likes // self.likes_per_save,
            "views": int(reach * self.views_per_reach),
            "impressions": int(reach * self.impressions_per_reach),
            "reach": reach,
        }


def reference_fx(now: datetime) -> FxSnapshot:
    """The month-old rates (per USD) a generated campaign converts its orders with."""
    return FxSnapshot(
        base="USD",
        rates={**REFERENCE_RATES, **EXTRA_RATES},
        as_of=now - timedelta(days=30),
        source=FX_SOURCE,
    )


@dataclass(frozen=True)
class RailsShowcase:
    """The hires (by index) whose payouts show the rails: one paid through PayPal, one
    through Wise, and one sent to a closed account, returned, then sent again once the creator
    gives a new account."""

    paypal: int = 1
    wise: int = 0
    latest_returned: int = 7

    def returned(self, hires: int) -> int:
        """The returned hire's index among `hires` (at least 3)."""
        return min(self.latest_returned, hires - 1)

    def account_of(self, n: int, hires: int, creator_id: str) -> tuple[str, str]:
        """(method, destination) of the `n`th of `hires` hires' first account."""
        if n == self.paypal:
            return "paypal", f"{creator_id}@example.com"
        if n == self.returned(hires):
            return "wise", f"tok_wise_{creator_id}{CLOSED_SUFFIX}"
        return "wise", f"tok_wise_{creator_id}"


SHOWCASE: Final = RailsShowcase()
GROWTH: Final = PostGrowth(
    likes_per_comment=12,
    likes_per_share=30,
    likes_per_save=8,
    views_per_reach=1.6,
    impressions_per_reach=1.3,
)
# The payouts service's settings for the demo. A new destination given while a payout is owed
# (the returned one) is paid to only after a cool-off, a day by default: a few seconds here,
# checked every second, so the demo shows the wait without waiting a day.
SERVICE_SETTINGS: Final = {
    "PAYOUTS_DESTINATION_COOLOFF_SECONDS": "5",
    "PAYOUTS_COOLOFF_CHECK_SECONDS": "1",
}


@dataclass(frozen=True)
class LeakTruth:
    """The hire whose code leaked: `orders` orders from a coupon site after its followers'
    `organic` ones. The coupon-site rule fires at the `fires_at`-th of them, the first to
    make them at least TRACKING_LEAK_COUPON_MIN_ORDERS and more than
    TRACKING_LEAK_COUPON_SHARE of the orders with a referrer (all in one window); it and the
    later ones are suspected, and still credited (the campaign's default policy)."""

    deal_id: str
    promo_code: str
    organic: int
    orders: int
    min_orders: int = 5
    share: Decimal = Decimal("0.3")

    @property
    def fires_at(self) -> int | None:
        for k in range(self.min_orders, self.orders + 1):
            if k > self.share * (k + self.organic):
                return k
        return None

    @property
    def suspected_orders(self) -> int:
        return 0 if self.fires_at is None else self.orders - self.fires_at + 1


# The hire (by index) whose code leaks, the site it leaks to, and how many orders come from it.
LEAKED_HIRE: Final = 8
COUPON_SITE: Final = "https://www.retailmenot.com/view/bakeco.com"
LEAKED_ORDERS: Final = 6


@dataclass(frozen=True)
class Activity:
    waves: list[list[CloudEvent[Any]]]
    truth: dict[str, DealTruth]
    needs_manual_confirmation: dict[str, str]  # deal_id -> deliverable_id
    leak: LeakTruth | None = None


class SeededCampaign:
    """What a seeded generator of a campaign's events keeps: its clock `now`, its random
    source, the campaign's window around `now` and the month-old reference FX rates."""

    def __init__(self, seed: int, now: datetime, *, started: timedelta, ends_in: timedelta) -> None:
        self.now = now
        self.rng = random.Random(seed)
        self.starts_at = now - started
        self.ends_at = now + ends_in
        self.fx = reference_fx(now)

    def order_amount(self, usd: Decimal, *, in_eur: bool) -> Money:
        """An order worth `usd` dollars, paid in euros at the reference rate when `in_eur`."""
        return Money.of(usd * self.fx.rates["EUR"], "EUR") if in_eur else Money.of(usd, "USD")

    def early_order(self, deal_id: str, promo_code: str, amount: Money) -> OrderRedeemed:
        """An order with the deal's code placed two days before the campaign started: valid
        data, attributed to nobody."""
        return OrderRedeemed(
            order_id=f"ord-{deal_id}-early",
            promo_code=promo_code,
            amount=amount,
            occurred_at=self.starts_at - timedelta(days=2),
        )


def refund_of(order: OrderRedeemed, after: timedelta) -> OrderRefunded:
    """The whole of `order` refunded `after` it was placed."""
    return OrderRefunded(
        order_id=order.order_id,
        promo_code=order.promo_code,
        amount=order.amount,
        occurred_at=order.occurred_at + after,
    )


class Scenario(SeededCampaign):
    def __init__(self, config: DemoConfig, now: datetime) -> None:
        super().__init__(config.seed, now, started=timedelta(days=3), ends_in=timedelta(days=11))
        self.config = config
        self.population: Population = generate_population(
            config.creators, seed=config.seed, id_prefix="cr"
        )
        self._hired: list[str] = []  # creator ids, in the order hired

    # 1 -----------------------------------------------------------------------------------
    def opening(self) -> tuple[list[CloudEvent[Any]], CloudEvent[Any]]:
        """FX rates and the population's profiles; then the match request to send."""
        # The month-old rates convert the campaign's orders; the same rates published again
        # this morning are fresh for the fees (payouts hold a payout whose rate is a day old).
        events = [
            make_event(
                FxRatesPublished(
                    base=self.fx.base, rates=dict(self.fx.rates), as_of=as_of, source=FX_SOURCE
                ),
                source=FX_SOURCE,
                time=self.now,
            )
            for as_of in (self.fx.as_of, self.now - timedelta(hours=1))
        ]
        profiles = self.population.profiles
        events += [
            make_event(profile_payload(profiles, i), source=ONBOARDING_SOURCE, time=self.now)
            for i in range(len(profiles))
        ]
        request = niche_request(
            self.config.niche,
            request_id=f"req-{self.config.campaign_id}",
            campaign_id=self.config.campaign_id,
            seed=self.config.seed,
            budget=Money.of("900.00", "USD"),
            limit=min(50, self.config.hires * 2),
            tiers=("micro",),
            brand_id=BRAND_ID,
        )
        return events, make_event(request, source=BRAND_SOURCE, time=self.now)

    # 2 -----------------------------------------------------------------------------------
    def hire(self, answer: MatchSuggested) -> tuple[list[Hire], list[CloudEvent[Any]]]:
        """Deals with the first `hires` suggestions, plus each creator's payout account."""
        row = {cid: i for i, cid in enumerate(self.population.profiles.creator_id)}
        hires: list[Hire] = []
        for suggestion in answer.suggestions[: self.config.hires]:
            i = row[suggestion.creator_id]
            profile = profile_payload(self.population.profiles, i)
            n = len(hires) + 1
            code = f"BAKE{n:02d}{suggestion.creator_id.split('-')[-1]}"
            deal = DealSigned(
                deal_id=f"deal-{self.config.campaign_id}-{n:02d}",
                campaign_id=self.config.campaign_id,
                brand_id=BRAND_ID,
                creator_id=suggestion.creator_id,
                fee=Money.of(suggestion.estimated_cost.amount.quantize(Decimal(1)), "USD"),
                commission_rate=COMMISSION_RATE,
                promo_codes=(code,),
                deliverables=(
                    Deliverable(deliverable_id="post-1", kind="post", count=1, due_by=self.ends_at),
                    Deliverable(
                        deliverable_id="stories-2", kind="story", count=2, due_by=self.ends_at
                    ),
                ),
                required_tags=REQUIRED_TAGS,
                starts_at=self.starts_at,
                ends_at=self.ends_at,
                attribution_window_days=14,
                audience_countries=audience_countries(profile.audience.countries),
            )
            hires.append(
                Hire(
                    deal,
                    profile.handle,
                    profile.platform,
                    profile.followers,
                    profile.payout_currency,
                    code,
                )
            )
        hires = self._vary_payout_currencies(hires)
        late = self.waits_for_funds(hires)
        early = [h.deal.fee for h in hires if h.deal.deal_id != late]
        events = [self._funding("fund-early", sum(early[1:], early[0]))]
        events += [make_event(h.deal, source=BRAND_SOURCE, time=self.now) for h in hires]
        self._hired = [h.deal.creator_id for h in hires]
        events += [self._account(h, pending=n in (2, 6)) for n, h in enumerate(hires)]
        return hires, events

    def waits_for_funds(self, hires: list[Hire]) -> str | None:
        """The deal whose fee the brand funds only after confirming it (by hand, last), so
        its payout waits for the funds: none among fewer hires than that."""
        return hires[CONFIRMED_BY_HAND].deal.deal_id if len(hires) > CONFIRMED_BY_HAND else None

    def late_funding(self, hires: list[Hire]) -> list[CloudEvent[Any]]:
        """The brand's funding of the fee that waited for it."""
        late = self.waits_for_funds(hires)
        fees = [h.deal.fee for h in hires if h.deal.deal_id == late]
        return [self._funding("fund-late", fee) for fee in fees]

    def _funding(self, name: str, amount: Money) -> CloudEvent[Any]:
        funding = BrandFunded(
            brand_id=BRAND_ID,
            funding_id=f"{name}-{self.config.campaign_id}",
            amount=amount,
            funded_at=self.now,
        )
        return make_event(funding, source=BRAND_SOURCE, time=self.now)

    def _vary_payout_currencies(self, hires: list[Hire]) -> list[Hire]:
        """Some creators choose another payout currency: at least JPY and a 3-decimal one."""
        wanted = {3: "KWD", 5: "JPY", 9: "BHD"}
        return [
            Hire(h.deal, h.handle, h.platform, h.followers, wanted[n], h.promo_code)
            if n in wanted and h.payout_currency != wanted[n]
            else h
            for n, h in enumerate(hires)
        ]

    def _account(self, hire: Hire, *, pending: bool) -> CloudEvent[Any]:
        creator_id = hire.deal.creator_id
        n = self._hired.index(creator_id)
        method, destination = SHOWCASE.account_of(n, len(self._hired), creator_id)
        account = PayoutAccountUpserted(
            creator_id=creator_id,
            method=method,
            destination=destination,
            currency=hire.payout_currency,
            tax_form=TaxForm(
                type="W-8BEN",
                status="pending" if pending else "verified",
                verified_at=None if pending else self.now - timedelta(days=60),
            ),
        )
        return make_event(account, source=ONBOARDING_SOURCE, time=self.now)

    # 3 -----------------------------------------------------------------------------------
    def activity(self, hires: list[Hire]) -> Activity:
        """Posts, snapshots and orders in three waves, and the attribution they imply."""
        waves: list[list[CloudEvent[Any]]] = [[], [], []]
        truth: dict[str, DealTruth] = {}
        manual: dict[str, str] = {}
        leak = None
        for n, hire in enumerate(hires):
            deal = hire.deal
            t = truth.setdefault(deal.deal_id, DealTruth())
            # One story without #ad: no auto-confirmation for it.
            forgets_ad = n == CONFIRMED_BY_HAND
            if forgets_ad:
                manual[deal.deal_id] = "stories-2"
            for k, kind in enumerate(("post", "story", "story")):
                tags = REQUIRED_TAGS if not (forgets_ad and k == 2) else ("#bakeco",)
                self._post(hire, k, kind, tags, waves, t)
            organic = self._orders(hire, waves, t)
            if n == leaked_hire(len(hires)):
                leak = self._leak(hire, waves, t, organic)
        self._strays(waves)
        for wave in waves:
            self.rng.shuffle(wave)
        return Activity(waves, truth, manual, leak)

    def _post(
        self,
        hire: Hire,
        k: int,
        kind: str,
        tags: tuple[str, ...],
        waves: list[list[CloudEvent[Any]]],
        truth: DealTruth,
    ) -> None:
        posted_at = self.starts_at + timedelta(hours=6 + 20 * k + self.rng.randint(0, 12))
        reach_share = self.rng.uniform(0.25, 0.6) if kind == "post" else self.rng.uniform(0.1, 0.3)
        final_reach = int(hire.followers * reach_share)
        final_likes = int(final_reach * self.rng.uniform(0.06, 0.12))
        snapshots = []
        for step, share in enumerate((0.35, 0.75, 1.0)):
            likes = int(final_likes * share)
            reach = int(final_reach * share)
            snapshots.append(
                PostMetricsObserved(
                    post_id=f"{hire.platform[:2]}-{hire.deal.creator_id}-{k}",
                    creator_id=hire.deal.creator_id,
                    platform=hire.platform,
                    kind=kind,
                    deal_id=hire.deal.deal_id,
                    caption=f"Spring bake with @bakeco {' '.join(tags)}",
                    tags=tags,
                    posted_at=posted_at,
                    observed_at=posted_at + timedelta(hours=4 + 18 * step),
                    followers=hire.followers,
                    **GROWTH.counts(likes, reach),
                )
            )
        truth.add_post(snapshots[-1])
        for step, snapshot in enumerate(snapshots):
            event = make_event(snapshot, source=COLLECTOR_SOURCE, time=self.now)
            waves[step].append(event)
            if self.rng.random() < 0.3:  # the collector re-sends: same event id
                waves[min(step + 1, 2)].append(event)

    def _orders(self, hire: Hire, waves: list[list[CloudEvent[Any]]], truth: DealTruth) -> int:
        """The creator's followers' orders, shipped to its audience countries and coming
        from its platform; returns how many there are."""
        count = self.rng.randint(3, 9)
        countries = hire.deal.audience_countries or ("US",)
        for j in range(count):
            occurred_at = self.starts_at + timedelta(hours=self.rng.randint(8, 70))
            in_eur = self.rng.random() < 0.2
            usd = Decimal(self.rng.randint(1500, 9000)) / 100
            amount = self.order_amount(usd, in_eur=in_eur)
            order = OrderRedeemed(
                order_id=f"ord-{hire.deal.deal_id}-{j}",
                promo_code=hire.promo_code,
                amount=amount,
                occurred_at=occurred_at,
                shipping_country=self.rng.choice(countries),
                referrer=f"https://www.{hire.platform}.com/",
            )
            event = make_event(order, source=SHOP_SOURCE, time=self.now)
            waves[1].append(event)
            if self.rng.random() < 0.3:  # retried by the shop: a new event, the same order
                waves[2].append(make_event(order, source=SHOP_SOURCE, time=self.now))
            value = self.fx.convert(amount, "USD").result
            if self.rng.random() < 0.12:
                refund = refund_of(order, timedelta(hours=20))
                waves[2].append(make_event(refund, source=SHOP_SOURCE, time=self.now))
            else:
                truth.add_order(value)
        early = self.early_order(hire.deal.deal_id, hire.promo_code, Money.of("42.00", "USD"))
        waves[1].append(make_event(early, source=SHOP_SOURCE, time=self.now))
        return count

    def _leak(
        self, hire: Hire, waves: list[list[CloudEvent[Any]]], truth: DealTruth, organic: int
    ) -> LeakTruth:
        """Orders from a coupon site that found the creator's code, shipped outside its
        audience countries, after its followers' orders (which all lie within 70 hours)."""
        home = hire.deal.audience_countries or ()
        abroad = next(c for c in ("DE", "FR", "BR", "JP") if c not in home)
        for j in range(LEAKED_ORDERS):
            order = OrderRedeemed(
                order_id=f"ord-{hire.deal.deal_id}-coupon-{j}",
                promo_code=hire.promo_code,
                amount=Money.of(Decimal(self.rng.randint(2000, 6000)) / 100, "USD"),
                occurred_at=self.starts_at + timedelta(hours=71, minutes=15 * j),
                shipping_country=abroad,
                referrer=COUPON_SITE,
            )
            waves[2].append(make_event(order, source=SHOP_SOURCE, time=self.now))
            truth.orders += 1
            truth.revenue += order.amount
        return LeakTruth(hire.deal.deal_id, hire.promo_code, organic, LEAKED_ORDERS)

    def _strays(self, waves: list[list[CloudEvent[Any]]]) -> None:
        for j in range(STRAY_ORDERS):
            stray = OrderRedeemed(
                order_id=f"ord-stray-{j}",
                promo_code=f"NOSUCHCODE{j}",
                amount=Money.of("19.99", "USD"),
                occurred_at=self.now - timedelta(hours=5),
                brand_id=BRAND_ID,  # the bakery's shop: counted as its unattributed orders
            )
            waves[1].append(make_event(stray, source=SHOP_SOURCE, time=self.now))

    # 4 -----------------------------------------------------------------------------------
    def late_fixes(
        self, hires: list[Hire], activity: Activity, now: datetime
    ) -> list[CloudEvent[Any]]:
        """Tax forms verified for the held creators; the brand confirms the untagged story.

        `now` is when they are sent: the brand's confirmation carries it, so the time from
        confirmation to payout is measured from the moment it was really made.
        """
        events = [self._account(h, pending=False) for n, h in enumerate(hires) if n in (2, 6)]
        for deal_id, deliverable_id in activity.needs_manual_confirmation.items():
            confirmation = DeliverableConfirmed(
                deal_id=deal_id,
                deliverable_id=deliverable_id,
                post_id=None,
                confirmed_by=BRAND_ID,
                confirmed_at=now,
            )
            events.append(make_event(confirmation, source=BRAND_SOURCE, time=now))
        return events

    # 6 -----------------------------------------------------------------------------------
    def fixed_account(self, hire: Hire, now: datetime) -> CloudEvent[Any]:
        """The returned creator's new account (the closed one replaced), sent at `now`: a
        changed account re-sends the creator's failed payouts."""
        account = PayoutAccountUpserted(
            creator_id=hire.deal.creator_id,
            method="wise",
            destination=f"tok_wise_{hire.deal.creator_id}-new",
            currency=hire.payout_currency,
            tax_form=TaxForm(
                type="W-8BEN", status="verified", verified_at=self.now - timedelta(days=60)
            ),
        )
        return make_event(account, source=ONBOARDING_SOURCE, time=now)

    def expected_net(self, hire: Hire, platform_fee_bps: int) -> Money:
        """The fee payout a creator should receive: (fee - platform fee) in their currency;
        a platform fee ending in half a minor unit leaves that unit to the creator."""
        share = hire.deal.fee.allocate([10_000 - platform_fee_bps, platform_fee_bps])[0]
        return self.fx.convert(share, hire.payout_currency).result


def leaked_hire(hires: int) -> int:
    """The index of the hire whose code leaks among `hires` hires."""
    return min(LEAKED_HIRE, hires - 1)


def audience_countries(shares: dict[str, float]) -> tuple[str, ...] | None:
    """The countries of at least a tenth of a creator's audience (its largest one at least),
    largest first: what a brand passes on from the suggestion to the deal; None if unknown."""
    ranked = sorted(shares, key=lambda c: (-shares[c], c))
    return tuple(c for c in ranked if shares[c] >= 0.1) or tuple(ranked[:1]) or None
