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
hour, for the burst), so once a code was judged through some order, with the tallies of its
windows there, evaluating the later orders needs only the orders that leave those windows
in the meantime and the first still in each (`orders_to_read`). That holds while nothing
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


Tallies = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class CodeVerdict:
    """The rules that fired on one code (each at its first firing, in rule order), and the
    suspected orders: every order from the earliest firing on, of those judged. Empty when
    none fired. `peak`: the most orders of the code within one hour up to any order judged."""

    evidence: tuple[Evidence, ...]
    suspected: frozenset[str]
    peak: int = 0
    # At the last order judged: (considered, leaked) in the window of each share rule
    # (outside_audience, coupon_site), and the orders of the hour.
    tallies: Tallies = (0, 0, 0, 0, 0)

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
    that had fired (their first firings), the `peak` hourly count so far and the windows'
    `tallies` at `through` (CodeVerdict.tallies)."""

    through: tuple[datetime, str]
    inputs: str
    reach: int
    evidence: tuple[Evidence, ...]
    peak: int
    tallies: Tallies = (0, 0, 0, 0, 0)

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
    return CodeJudgement(max(keys), inputs, reach, verdict.evidence, verdict.peak, verdict.tallies)


def orders_to_read(
    orders: Iterable[LeakOrder], judgement: CodeJudgement, thresholds: LeakThresholds
) -> list[LeakOrder]:
    """Of a code's orders, those judging it on from `judgement` reads (none without a later
    order): the later orders; the earlier ones that leave the window (or the hour) up to
    the latest order; and the first order of each still in it at the latest order."""
    ordered = sorted(orders, key=lambda o: o.key)
    later = [o for o in ordered if o.key > judgement.through]
    if not later:
        return []
    since, newest = judgement.through[0], later[-1].occurred_at
    read = {o.order_id: o for o in later}
    for span in {thresholds.window, BURST_SPAN}:
        leaving = [o for o in ordered if since - span < o.occurred_at <= newest - span]
        staying = [o for o in ordered if o.occurred_at > newest - span][:1]
        read |= {o.order_id: o for o in leaving + staying}
    return sorted(read.values(), key=lambda o: o.key)


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


def kept_referrer(referrer: str | None) -> str | None:
    """What tracking keeps of an order's referrer: its host, the one part the rules read, so
    a page's path and query (which may name the shopper) are never stored; "" for a referrer
    with no host, which still counts as one named. Reducing what it returns gives it again."""
    if referrer is None:
        return None
    host = registrable_host(referrer) or ""
    # An IPv6 host keeps its brackets, so what is kept reads back as the same host.
    return f"[{host}]" if ":" in host else host


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
    fired keep their evidence, the others are evaluated at the later orders only, the
    windows going on from `prior.tallies`; `orders` need be only `orders_to_read`."""
    ordered = sorted(orders, key=lambda o: o.key)
    after = None if prior is None else prior.through
    kept = {} if prior is None else {e.rule: [e] for e in prior.evidence}
    tallies = (0, 0, 0, 0, 0) if prior is None else prior.tallies
    audience = frozenset(audience_countries)
    found: list[Evidence] = []
    abroad = coupon = (0, 0)
    if audience:
        fired, abroad = _share_rule(
            LeakRule.OUTSIDE_AUDIENCE,
            ordered,
            lambda o: None if o.shipping_country is None else o.shipping_country not in audience,
            thresholds.window,
            thresholds.abroad_share,
            thresholds.abroad_min_orders,
            after,
            (tallies[0], tallies[1]),
        )
        found += kept.get(LeakRule.OUTSIDE_AUDIENCE, fired)
    fired, coupon = _share_rule(
        LeakRule.COUPON_SITE,
        ordered,
        lambda o: (
            None if o.referrer is None else from_coupon_site(o.referrer, thresholds.coupon_domains)
        ),
        thresholds.window,
        thresholds.coupon_share,
        thresholds.coupon_min_orders,
        after,
        (tallies[2], tallies[3]),
    )
    found += kept.get(LeakRule.COUPON_SITE, fired)
    counts, hour = _hour_counts(ordered, after, tallies[4])
    if reach > 0:
        found += kept.get(LeakRule.BURST) or _burst(ordered, counts, reach, thresholds)
    peak = max([0 if prior is None else prior.peak, *(c for c, _ in counts.values())])
    judged = (*abroad, *coupon, hour)
    if not found:
        return CodeVerdict((), frozenset(), peak, judged)
    since = min((e.fired_at, e.order_id) for e in found)
    suspected = frozenset(o.order_id for o in ordered if o.key >= since)
    return CodeVerdict(tuple(found), suspected, peak, judged)


def _share_rule(
    rule: LeakRule,
    ordered: Sequence[LeakOrder],
    leaked: Callable[[LeakOrder], bool | None],
    window: timedelta,
    share: Decimal,
    min_orders: int,
    after: tuple[datetime, str] | None = None,
    tally: tuple[int, int] = (0, 0),
) -> tuple[list[Evidence], tuple[int, int]]:
    """The first order (after `after`, if given) at which, over the orders of (its time -
    window, its time] up to it, more than `share` of those `leaked` says anything about (not
    None) look leaked and at least `min_orders` do ([] if there is none); and (considered,
    leaked) in the window of the last order. With `after`, `tally` is (considered, leaked)
    in the window of `after`, whose orders not in `ordered` stay in every later window."""
    verdicts = [leaked(o) for o in ordered]
    start = considered = hits = 0
    # What the window of `after` held beyond the orders read: in every later window too.
    held = [v for o, v in zip(ordered, verdicts, strict=True) if _within(o, after, window)]
    offset = (tally[0] - sum(v is not None for v in held), tally[1] - sum(v is True for v in held))
    found: list[Evidence] = []
    last = tally
    for end, order in enumerate(ordered):
        considered += verdicts[end] is not None
        hits += verdicts[end] is True
        while ordered[start].occurred_at <= order.occurred_at - window:
            considered -= verdicts[start] is not None
            hits -= verdicts[start] is True
            start += 1
        if after is not None and order.key <= after:
            continue
        seen, leaks = considered + offset[0], hits + offset[1]
        # leaks / seen > share, exactly: no rounding decides whether a rule fires.
        if not found and leaks >= max(min_orders, 1) and leaks > share * seen:
            found = [
                Evidence(
                    rule,
                    order.order_id,
                    order.occurred_at,
                    ordered[start].occurred_at,
                    order.occurred_at,
                    leaks,
                    seen,
                    rounded_quotient(leaks, seen, SHARE_PLACES),
                    share,
                )
            ]
        last = (seen, leaks)
    return found, last if after is not None else (considered, hits)


def _hour_counts(
    ordered: Sequence[LeakOrder], after: tuple[datetime, str] | None = None, tally: int = 0
) -> tuple[dict[int, tuple[int, datetime]], int]:
    """The number of orders within the hour up to each order and the time of the first of
    them (by position; only the orders after `after`, if given), and that number at the
    last order. With `after`, `tally` is that number at `after` (as in _share_rule)."""
    counts = {}
    start = 0
    offset = tally - sum(_within(o, after, BURST_SPAN) for o in ordered)
    count = last = tally
    for end, order in enumerate(ordered):
        while ordered[start].occurred_at <= order.occurred_at - BURST_SPAN:
            start += 1
        count = end - start + 1
        if after is not None and order.key <= after:
            continue
        last = count + offset
        counts[end] = (last, ordered[start].occurred_at)
    return counts, last if after is not None else count if ordered else 0


def _within(order: LeakOrder, after: tuple[datetime, str] | None, span: timedelta) -> bool:
    """Whether `order` is in the window (of `span`) of the order `after`."""
    return after is not None and order.key <= after and order.occurred_at > after[0] - span


def _bursting(count: int, reach: int, thresholds: LeakThresholds) -> bool:
    return count >= max(thresholds.burst_min_orders, 1) and (
        count > thresholds.burst_share_of_reach * reach
    )


def _burst(
    ordered: Sequence[LeakOrder],
    counts: dict[int, tuple[int, datetime]],
    reach: int,
    thresholds: LeakThresholds,
) -> list[Evidence]:
    """The first order (of those `counts` covers, by position) at which the orders of the
    hour up to it are more than `burst_share_of_reach` x `reach` and at least
    `burst_min_orders`; [] if there is none."""
    for end, (count, first) in sorted(counts.items()):
        if _bursting(count, reach, thresholds):
            order = ordered[end]
            return [
                Evidence(
                    LeakRule.BURST,
                    order.order_id,
                    order.occurred_at,
                    first,
                    order.occurred_at,
                    count,
                    count,
                    rounded_quotient(count, reach, SHARE_PLACES),
                    thresholds.burst_share_of_reach,
                    reach,
                )
            ]
    return []
