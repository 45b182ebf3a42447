"""Leaked promo codes: when a code's orders stop looking like the creator's audience.

A code given to a creator for their followers sometimes escapes to coupon and deal sites,
where anyone finds it; the creator then earns commission on sales they did not bring. A code
is *suspected leaked* when, over its recent orders, any of three rules fires
(docs/architecture.md §10, "Leaked codes", justifies the defaults):

* `outside_audience`: of the orders of the last `window` that say where they ship, more than
  `abroad_share` ship outside the creator's audience countries, and at least
  `abroad_min_orders` do. Without audience countries on the deal the rule does not apply.
* `coupon_site`: of the orders of the last `window` that name a referrer, more than
  `coupon_share` come from a coupon or deal site (the registrable domain of the referrer is
  one of `coupon_domains`), and at least `coupon_min_orders` do.
* `burst`: more than `burst_share_of_reach` of the creator's reach on the deal (the summed
  reach of its posts, latest snapshots) ordered within one hour, and at least
  `burst_min_orders` did. Without reach (no post seen yet) the rule does not apply.

Each rule is evaluated at every order of the code, over the orders up to and including it,
sorted by (occurred_at, order_id): the first order at which a rule fires is where the rule
fired, and the earliest of those is where the code became suspected. That order and every
later order of the code are *suspected orders*. All of this is a function of the stored
orders, the deal's audience countries and its reach, so any arrival order or batching of
the same events gives the same verdict; a late order can move it either way.

A code's verdict can be carried on (`CodeJudgement`) instead of worked out from all its
orders again: the rules at an order read only the orders up to it within `window` (or the
hour, for the burst), so once a code was judged through some order, evaluating the later
orders needs only those within the lookback before it (`lookback`). That holds while nothing
the earlier evaluations read has changed: no order joined or left the code up to there, the
audience countries and thresholds are the same (`judgement_inputs`), and the reach is the
same or makes no difference to the burst rule (`CodeJudgement.resumable`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from services.tracking.domain.quotient import rounded_quotient

SHARE_PLACES: Final = 4
BURST_SPAN: Final = timedelta(hours=1)

# Well-known coupon and deal sites, as registrable domains (a referrer matches its domain and
# every subdomain). A setting (TRACKING_LEAK_COUPON_DOMAINS) replaces the list.
DEFAULT_COUPON_DOMAINS: Final = frozenset(
    {
        "retailmenot.com",
        "coupons.com",
        "groupon.com",
        "slickdeals.net",
        "dealspotr.com",
        "couponfollow.com",
        "couponbirds.com",
        "couponcabin.com",
        "offers.com",
        "savings.com",
        "promocodes.com",
        "knoji.com",
        "wethrift.com",
        "dontpayfull.com",
        "simplycodes.com",
        "joinhoney.com",
        "coupert.com",
        "vouchercodes.co.uk",
        "vouchercloud.com",
        "hotukdeals.com",
        "mydealz.de",
        "dealabs.com",
        "cuponation.com",
    }
)


class LeakedOrders(StrEnum):
    """A campaign's policy for suspected orders (`leaked_orders` of its attribution model
    setting): `credit` them as any order (the default), or `withhold` them from the revenue
    the commission is computed on."""

    CREDIT = "credit"
    WITHHOLD = "withhold"


class LeakRule(StrEnum):
    OUTSIDE_AUDIENCE = "outside_audience"
    COUPON_SITE = "coupon_site"
    BURST = "burst"


@dataclass(frozen=True, slots=True)
class LeakThresholds:
    """When each rule fires (module docstring); shares are exclusive lower bounds."""

    window: timedelta = timedelta(days=7)
    abroad_share: Decimal = Decimal("0.6")
    abroad_min_orders: int = 10
    coupon_share: Decimal = Decimal("0.3")
    coupon_min_orders: int = 5
    burst_share_of_reach: Decimal = Decimal("0.005")
    burst_min_orders: int = 20
    coupon_domains: frozenset[str] = DEFAULT_COUPON_DOMAINS


@dataclass(frozen=True, slots=True)
class LeakTotals:
    """A deal's side of leaked codes. `suspected`: one of its own codes is suspected.
    `suspected_orders`: the suspected orders that credit it and are not fully refunded; of
    those, the `withheld_orders` a `withhold` policy keeps out of its figures, and
    `withheld_revenue`, their credit net of refunds in the deal's currency."""

    suspected: bool = False
    suspected_orders: int = 0
    withheld_orders: int = 0
    withheld_revenue: Decimal = Decimal(0)


NO_LEAKS: Final = LeakTotals()


@dataclass(frozen=True, slots=True)
class LeakOrder:
    """What the rules read of one order of a code."""

    order_id: str
    occurred_at: datetime
    shipping_country: str | None = None
    referrer: str | None = None
    promo_code: str = ""

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.order_id)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where one rule first fired: at `order_id` (placed `fired_at`), over the orders of
    [`window_start`, `window_end`]; `orders` of the `considered` ones looked leaked (for the
    burst: every order of the hour is considered and looks leaked), `share` = orders /
    considered (burst: orders / reach), rounded half-even to SHARE_PLACES, against
    `threshold`. `reach` is the creator's reach the burst was measured against."""

    rule: LeakRule
    order_id: str
    fired_at: datetime
    window_start: datetime
    window_end: datetime
    orders: int
    considered: int
    share: Decimal
    threshold: Decimal
    reach: int | None = None


@dataclass(frozen=True, slots=True)
class CodeVerdict:
    """The rules that fired on one code (each at its first firing, in rule order), and the
    suspected orders: every order from the earliest firing on, of those judged. Empty when
    none fired. `peak`: the most orders of the code within one hour up to any order judged."""

    evidence: tuple[Evidence, ...]
    suspected: frozenset[str]
    peak: int = 0

    @property
    def suspected_since(self) -> datetime | None:
        return min((e.fired_at for e in self.evidence), default=None)

    @property
    def rules(self) -> tuple[LeakRule, ...]:
        return tuple(e.rule for e in self.evidence)


@dataclass(frozen=True, slots=True)
class CodeJudgement:
    """What a code's judgement carries on: judged through the order `through` (the greatest
    (occurred_at, order_id) judged), with `inputs` (judgement_inputs) and `reach`, the rules
    that had fired (their first firings) and the `peak` hourly count so far."""

    through: tuple[datetime, str]
    inputs: str
    reach: int
    evidence: tuple[Evidence, ...]
    peak: int

    def resumable(self, inputs: str, reach: int, thresholds: LeakThresholds) -> bool:
        """Whether the evaluations up to `through` stand with these inputs and this reach
        (the orders up to `through` unchanged): the same audience and thresholds, and the
        same reach, or one under which the burst rule still fires nowhere up to there."""
        if inputs != self.inputs:
            return False
        if reach == self.reach:
            return True
        if any(e.rule is LeakRule.BURST for e in self.evidence):
            return False
        return not (reach > 0 and _bursting(self.peak, reach, thresholds))


def judgement_inputs(audience_countries: Iterable[str], thresholds: LeakThresholds) -> str:
    """A digest of what a code's verdict depends on besides its orders and the reach."""
    text = json.dumps(
        [
            sorted(audience_countries),
            thresholds.window.total_seconds(),
            str(thresholds.abroad_share),
            thresholds.abroad_min_orders,
            str(thresholds.coupon_share),
            thresholds.coupon_min_orders,
            str(thresholds.burst_share_of_reach),
            thresholds.burst_min_orders,
            sorted(thresholds.coupon_domains),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def lookback(thresholds: LeakThresholds) -> timedelta:
    """How far before an order the rules read: the orders a later evaluation needs."""
    return max(thresholds.window, BURST_SPAN)


def judgement_of(
    verdict: CodeVerdict,
    orders: Iterable[LeakOrder],
    inputs: str,
    reach: int,
    prior: CodeJudgement | None,
) -> CodeJudgement | None:
    """The judgement to carry on after `verdict` on `orders` (None without any order)."""
    keys = [o.key for o in orders] + ([prior.through] if prior is not None else [])
    if not keys:
        return None
    return CodeJudgement(max(keys), inputs, reach, verdict.evidence, verdict.peak)


def by_code(orders: Iterable[LeakOrder]) -> dict[str, list[LeakOrder]]:
    """The orders of each promo code, codes in sorted order."""
    codes: dict[str, list[LeakOrder]] = {}
    for order in sorted(orders, key=lambda o: o.promo_code):
        codes.setdefault(order.promo_code, []).append(order)
    return codes


def registrable_host(referrer: str) -> str | None:
    """The lower-case host of a referrer given as a URL or as a bare host; None if it has
    none."""
    text = referrer if "//" in referrer else f"//{referrer}"
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host.rstrip(".") if host else None


def from_coupon_site(referrer: str, domains: frozenset[str]) -> bool:
    """True when the referrer's host is one of `domains` or a subdomain of one. For a listed
    registrable domain this is the same as comparing registrable domains, without a public
    suffix list: `uk.retailmenot.com` matches `retailmenot.com`, `notretailmenot.com` does not."""
    host = registrable_host(referrer)
    if host is None:
        return False
    labels = host.split(".")
    return any(".".join(labels[n:]) in domains for n in range(len(labels)))


def assess_code(
    orders: Iterable[LeakOrder],
    audience_countries: Iterable[str],
    reach: int,
    thresholds: LeakThresholds,
    prior: CodeJudgement | None = None,
) -> CodeVerdict:
    """Which rules fire on a code's orders, where each first fired, and which orders are
    suspected (module docstring). `audience_countries` are ISO 3166-1 alpha-2 codes (empty:
    the first rule does not apply); `reach` the creator's reach on the deal (0: the burst
    rule does not apply).

    With `prior` (resumable), the code was judged through `prior.through`: its rules that
    fired keep their evidence, the others are evaluated at the later orders only, and
    `orders` need be only those from `lookback` before `prior.through` on."""
    ordered = sorted(orders, key=lambda o: o.key)
    after = None if prior is None else prior.through
    kept = {} if prior is None else {e.rule: [e] for e in prior.evidence}
    audience = frozenset(audience_countries)
    found: list[Evidence] = []
    if audience:
        found += kept.get(LeakRule.OUTSIDE_AUDIENCE, []) or _share_rule(
            LeakRule.OUTSIDE_AUDIENCE,
            ordered,
            lambda o: None if o.shipping_country is None else o.shipping_country not in audience,
            thresholds.window,
            thresholds.abroad_share,
            thresholds.abroad_min_orders,
            after,
        )
    found += kept.get(LeakRule.COUPON_SITE, []) or _share_rule(
        LeakRule.COUPON_SITE,
        ordered,
        lambda o: (
            None if o.referrer is None else from_coupon_site(o.referrer, thresholds.coupon_domains)
        ),
        thresholds.window,
        thresholds.coupon_share,
        thresholds.coupon_min_orders,
        after,
    )
    counts = _hour_counts(ordered, after)
    if reach > 0:
        found += kept.get(LeakRule.BURST, []) or _burst(ordered, counts, reach, thresholds)
    peak = max([0 if prior is None else prior.peak, *counts.values()])
    if not found:
        return CodeVerdict((), frozenset(), peak)
    since = min((e.fired_at, e.order_id) for e in found)
    return CodeVerdict(tuple(found), frozenset(o.order_id for o in ordered if o.key >= since), peak)


def _share_rule(
    rule: LeakRule,
    ordered: Sequence[LeakOrder],
    leaked: Callable[[LeakOrder], bool | None],
    window: timedelta,
    share: Decimal,
    min_orders: int,
    after: tuple[datetime, str] | None = None,
) -> list[Evidence]:
    """The first order (after `after`, if given) at which, over the orders of (its time -
    window, its time] up to it, more than `share` of those `leaked` says anything about (not
    None) look leaked and at least `min_orders` do; [] if there is none."""
    verdicts = [leaked(o) for o in ordered]
    start = considered = hits = 0
    for end, order in enumerate(ordered):
        considered += verdicts[end] is not None
        hits += verdicts[end] is True
        while ordered[start].occurred_at <= order.occurred_at - window:
            considered -= verdicts[start] is not None
            hits -= verdicts[start] is True
            start += 1
        # hits / considered > share, exactly: no rounding decides whether a rule fires.
        judged = after is None or order.key > after
        if judged and hits >= max(min_orders, 1) and hits > share * considered:
            return [
                Evidence(
                    rule,
                    order.order_id,
                    order.occurred_at,
                    ordered[start].occurred_at,
                    order.occurred_at,
                    hits,
                    considered,
                    rounded_quotient(hits, considered, SHARE_PLACES),
                    share,
                )
            ]
    return []


def _hour_counts(
    ordered: Sequence[LeakOrder], after: tuple[datetime, str] | None
) -> dict[int, int]:
    """The number of orders within the hour up to each order (by position; only the orders
    after `after`, if given)."""
    counts = {}
    start = 0
    for end, order in enumerate(ordered):
        while ordered[start].occurred_at <= order.occurred_at - BURST_SPAN:
            start += 1
        if after is None or order.key > after:
            counts[end] = end - start + 1
    return counts


def _bursting(count: int, reach: int, thresholds: LeakThresholds) -> bool:
    return count >= max(thresholds.burst_min_orders, 1) and (
        count > thresholds.burst_share_of_reach * reach
    )


def _burst(
    ordered: Sequence[LeakOrder], counts: dict[int, int], reach: int, thresholds: LeakThresholds
) -> list[Evidence]:
    """The first order (of those `counts` covers, by position) at which the orders of the
    hour up to it are more than `burst_share_of_reach` x `reach` and at least
    `burst_min_orders`; [] if there is none."""
    for end, count in sorted(counts.items()):
        if _bursting(count, reach, thresholds):
            order = ordered[end]
            return [
                Evidence(
                    LeakRule.BURST,
                    order.order_id,
                    order.occurred_at,
                    ordered[end - count + 1].occurred_at,
                    order.occurred_at,
                    count,
                    count,
                    rounded_quotient(count, reach, SHARE_PLACES),
                    thresholds.burst_share_of_reach,
                    reach,
                )
            ]
    return []
