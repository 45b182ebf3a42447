"""The leaked-code rules (services/tracking/domain/leaks.py), by example and by property."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.tracking.domain.leaks import (
    DEFAULT_COUPON_DOMAINS,
    LeakOrder,
    LeakRule,
    LeakThresholds,
    assess_code,
    from_coupon_site,
    judgement_inputs,
    judgement_of,
    orders_to_read,
    registrable_host,
)

T0 = datetime(2025, 4, 1, 12, tzinfo=UTC)
RULES = LeakThresholds()
US = ("US", "CA")


def orders(
    n: int,
    *,
    start: int = 0,
    every: timedelta = timedelta(minutes=30),
    country: str | None = None,
    referrer: str | None = None,
    at: datetime = T0,
) -> list[LeakOrder]:
    return [LeakOrder(f"o-{start + i:04d}", at + i * every, country, referrer) for i in range(n)]


def test_a_coupon_site_matches_by_its_registrable_domain_whatever_the_url_says() -> None:
    domains = frozenset({"retailmenot.com", "vouchercodes.co.uk"})
    for referrer in (
        "https://www.retailmenot.com/view/bakeco.com",
        "retailmenot.com",
        "http://uk.RetailMeNot.com.:443/x?y=1",
        "//vouchercodes.co.uk/bakeco",
        "www.vouchercodes.co.uk/path",
    ):
        assert from_coupon_site(referrer, domains), referrer
    for referrer in (
        "https://notretailmenot.com/",
        "https://retailmenot.com.evil.example/",
        "https://www.instagram.com/",
        "co.uk",
        "https://[::1/",
        "",
    ):
        assert not from_coupon_site(referrer, domains), referrer
    assert registrable_host("https://WWW.Example.com./a") == "www.example.com"


def test_the_default_coupon_domains_are_registrable_domains_in_lower_case() -> None:
    assert all(d == d.lower() and "." in d and "/" not in d for d in DEFAULT_COUPON_DOMAINS)


def test_most_orders_shipping_abroad_fire_at_the_order_that_tips_the_share() -> None:
    home = orders(5, country="US")
    abroad = orders(10, start=5, country="DE", at=T0 + timedelta(hours=5))
    verdict = assess_code(home + abroad, US, 0, RULES)
    assert verdict.rules == (LeakRule.OUTSIDE_AUDIENCE,)
    (evidence,) = verdict.evidence
    # 10 abroad of 15 is 0.6667 > 0.6, and 10 is the least count.
    assert (evidence.orders, evidence.considered, evidence.share) == (10, 15, Decimal("0.6667"))
    assert evidence.order_id == "o-0014"
    assert evidence.window_start == T0 and evidence.window_end == abroad[-1].occurred_at
    assert verdict.suspected == {"o-0014"}
    assert verdict.suspected_since == abroad[-1].occurred_at


def test_the_share_must_exceed_the_threshold_and_the_count_reach_the_minimum() -> None:
    # 12 of 20 abroad is exactly 0.6: not more than it.
    exactly = orders(8, country="US") + orders(12, start=8, country="FR")
    assert assess_code(exactly, US, 0, RULES).evidence == ()
    # 9 of 9 abroad: every one, but fewer than 10.
    assert assess_code(orders(9, country="FR"), US, 0, RULES).evidence == ()
    assert assess_code(orders(10, country="FR"), US, 0, RULES).rules == (LeakRule.OUTSIDE_AUDIENCE,)


def test_without_audience_countries_or_shipping_countries_the_first_rule_does_not_apply() -> None:
    abroad = orders(30, country="FR")
    assert assess_code(abroad, (), 0, RULES).evidence == ()
    # Orders that do not say where they ship count neither way.
    unknown = orders(40, start=100)
    verdict = assess_code(unknown + orders(10, start=200, country="FR"), US, 0, RULES)
    assert verdict.evidence[0].considered == 10


def test_orders_outside_the_window_do_not_add_up() -> None:
    # One order abroad a day: never more than 7 in a 7-day window.
    daily = orders(30, country="FR", every=timedelta(days=1))
    assert assess_code(daily, US, 0, RULES).evidence == ()
    wider = replace(RULES, window=timedelta(days=10))
    (evidence,) = assess_code(daily, US, 0, wider).evidence
    assert evidence.considered == 10 and evidence.order_id == "o-0009"


def test_coupon_site_orders_fire_above_their_share_among_orders_with_a_referrer() -> None:
    organic = orders(11, referrer="https://www.instagram.com/p/1")
    coupon = orders(5, start=11, referrer="https://www.retailmenot.com/", at=T0 + timedelta(days=1))
    verdict = assess_code(organic + coupon, (), 0, RULES)
    (evidence,) = verdict.evidence
    assert evidence.rule is LeakRule.COUPON_SITE
    assert (evidence.orders, evidence.considered, evidence.share) == (5, 16, Decimal("0.3125"))
    # 5 of 17 is 0.294: not yet.
    one_more = orders(1, start=50, referrer="https://instagram.com/", at=T0 + timedelta(hours=20))
    assert assess_code(organic + one_more + coupon, (), 0, RULES).evidence == ()


def test_a_burst_out_of_proportion_to_reach_fires_within_one_hour() -> None:
    burst = orders(21, every=timedelta(minutes=2))
    # 0.5 % of 4,000 is 20: the 21st order within the hour fires.
    (evidence,) = assess_code(burst, (), 4_000, RULES).evidence
    assert evidence.rule is LeakRule.BURST
    assert (evidence.orders, evidence.reach, evidence.order_id) == (21, 4_000, "o-0020")
    # 21 / 4,000 = 0.00525, rounded half-even.
    assert evidence.share == Decimal("0.0052")
    assert assess_code(burst[:20], (), 4_000, RULES).evidence == ()
    # A small reach still needs the least count.
    assert assess_code(burst[:19], (), 100, RULES).evidence == ()
    # Without reach the rule does not apply; spread over more than an hour, no burst.
    assert assess_code(burst, (), 0, RULES).evidence == ()
    assert assess_code(orders(40, every=timedelta(minutes=4)), (), 100, RULES).evidence == ()


def test_every_order_from_the_first_firing_on_is_suspected_and_none_before() -> None:
    before = orders(20, country="US", referrer="https://instagram.com/")
    leak = orders(
        12, start=20, country="DE", referrer="https://slickdeals.net/", at=T0 + timedelta(days=8)
    )
    verdict = assess_code(before + leak, US, 0, RULES)
    # A week later the first orders are out of the window: the coupon rule fires at the 5th
    # leaked order, the shipping rule at the 10th; both are evidence.
    assert verdict.rules == (LeakRule.OUTSIDE_AUDIENCE, LeakRule.COUPON_SITE)
    assert [e.order_id for e in verdict.evidence] == ["o-0029", "o-0024"]
    since = min(e.fired_at for e in verdict.evidence)
    assert verdict.suspected == {o.order_id for o in before + leak if o.occurred_at >= since}
    assert not verdict.suspected & {o.order_id for o in before}


leak_orders = st.lists(
    st.builds(
        LeakOrder,
        order_id=st.text("abcdef", min_size=1, max_size=4),
        occurred_at=st.integers(0, 600).map(lambda m: T0 + timedelta(minutes=m * 7)),
        shipping_country=st.sampled_from([None, "US", "DE", "FR"]),
        referrer=st.sampled_from([None, "https://instagram.com/", "https://groupon.com/deal"]),
    ),
    max_size=60,
    unique_by=lambda o: o.order_id,
)
small_rules = LeakThresholds(
    window=timedelta(days=1),
    abroad_min_orders=3,
    coupon_min_orders=3,
    burst_min_orders=3,
    burst_share_of_reach=Decimal("0.01"),
)


@settings(max_examples=200, deadline=None)
@given(leak_orders, st.integers(0, 1_000), st.randoms(use_true_random=False))
def test_the_verdict_does_not_depend_on_the_order_the_orders_come_in(
    placed: list[LeakOrder], reach: int, shuffler: random.Random
) -> None:
    shuffled = list(placed)
    shuffler.shuffle(shuffled)
    assert assess_code(shuffled, US, reach, small_rules) == assess_code(
        placed, US, reach, small_rules
    )


@settings(max_examples=200, deadline=None)
@given(leak_orders, st.integers(0, 1_000))
def test_orders_placed_later_never_undo_or_move_a_firing(
    placed: list[LeakOrder], reach: int
) -> None:
    ordered = sorted(placed, key=lambda o: o.key)
    whole = assess_code(ordered, US, reach, small_rules)
    for cut in range(len(ordered) + 1):
        early = assess_code(ordered[:cut], US, reach, small_rules)
        # What fired on the first orders fired at the same place with every later one.
        assert set(early.evidence) <= set(whole.evidence)
        assert early.suspected <= whole.suspected
    # The suspected orders are a tail of the orders in time order.
    flags = [o.order_id in whole.suspected for o in ordered]
    assert flags == sorted(flags)
    assert bool(whole.suspected) == bool(whole.evidence)


@settings(max_examples=300, deadline=None)
@given(
    leak_orders,
    st.integers(0, 1_000),
    st.integers(0, 1_000),
    st.integers(0, 60),
)
def test_a_judgement_carried_on_gives_the_verdict_of_judging_every_order(
    placed: list[LeakOrder], first_reach: int, reach: int, cut: int
) -> None:
    """Judging the first orders, then the later ones from the lookback before the last one
    judged on (when the judgement still stands at the new reach), gives the same evidence as
    judging them all, and the same flags on the orders read."""
    ordered = sorted(placed, key=lambda o: o.key)
    first = ordered[:cut]
    inputs = judgement_inputs(US, small_rules)
    judgement = judgement_of(
        assess_code(first, US, first_reach, small_rules), first, inputs, first_reach, None
    )
    whole = assess_code(ordered, US, reach, small_rules)
    if judgement is None or not judgement.resumable(inputs, reach, small_rules):
        return
    read = orders_to_read(ordered, judgement, small_rules)
    carried = assess_code(read, US, reach, small_rules, judgement)
    assert carried.suspected == whole.suspected & {o.order_id for o in read}
    if read:
        assert carried.evidence == whole.evidence
        assert carried.peak == whole.peak
        assert carried.tallies == whole.tallies
        again = judgement_of(carried, read, inputs, reach, judgement)
        assert again == judgement_of(whole, ordered, inputs, reach, None)
    else:
        # Nothing later: the judgement stands as it is.
        assert judgement.through == max(o.key for o in ordered)


def test_a_judgement_stands_only_with_the_same_inputs_and_a_reach_that_changes_nothing() -> None:
    burst = orders(5, every=timedelta(minutes=1))
    inputs = judgement_inputs(US, small_rules)
    verdict = assess_code(burst, US, 100, small_rules)
    assert verdict.rules == (LeakRule.BURST,) and verdict.peak == 5
    judgement = judgement_of(verdict, burst, inputs, 100, None)
    assert judgement is not None and judgement.through == burst[-1].key
    assert judgement.resumable(inputs, 100, small_rules)
    # Another reach: the burst fired against the old one.
    assert not judgement.resumable(inputs, 1_000, small_rules)
    assert not judgement.resumable(judgement_inputs(("DE",), small_rules), 100, small_rules)
    assert not judgement.resumable(judgement_inputs(US, RULES), 100, small_rules)
    # No burst so far: a larger reach changes nothing, one small enough to burst does.
    calm = judgement_of(assess_code(burst, US, 0, small_rules), burst, inputs, 0, None)
    assert calm is not None and calm.evidence == ()
    assert calm.resumable(inputs, 1_000, small_rules)
    assert not calm.resumable(inputs, 100, small_rules)


def test_a_carried_judgement_never_fires_on_the_windows_cut_short_before_its_last_order() -> None:
    """The orders read before the last one judged have windows cut at the lookback: 3 of the
    6 orders of the window ship abroad (no firing), but 3 of the 3 read would."""
    home = [LeakOrder(f"h-{n}", T0 + timedelta(minutes=n), "US") for n in range(3)]
    abroad = [LeakOrder(f"a-{n}", T0 + timedelta(hours=20, minutes=n), "DE") for n in range(3)]
    later = [LeakOrder(f"l-{n}", T0 + timedelta(hours=21, minutes=n), "US") for n in range(2)]
    last = LeakOrder("x", T0 + timedelta(days=1, minutes=30), "US")
    judged = [*home, *abroad, *later, last]
    inputs = judgement_inputs(US, small_rules)
    judgement = judgement_of(assess_code(judged, US, 0, small_rules), judged, inputs, 0, None)
    assert judgement is not None and judgement.evidence == ()
    new = LeakOrder("y", last.occurred_at + timedelta(minutes=1), None)
    read = orders_to_read([*judged, new], judgement, small_rules)
    assert not set(home) & set(read)
    assert assess_code([*judged, new], US, 0, small_rules).evidence == ()
    assert assess_code(read, US, 0, small_rules, judgement).evidence == ()
