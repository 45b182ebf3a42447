"""Attribution models (services/tracking/domain/credit.py): weights by example, and by
property that one order's credits sum exactly to it, whatever the model and the clicks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracking.domain.credit import (
    Click,
    Model,
    ModelSetting,
    deal_weights,
    split,
    split_refund,
    touches,
)
from services.tracking.domain.orders import ClickFacts, Order, OrderStatus, Refund, evaluate_order
from shared.contract.money import FxSnapshot, Money
from tests.unit.tracking.builders import T0, terms

VISITOR = "a" * 64
ORDER_AT = T0 + timedelta(days=10)
DEALS = {
    d.deal_id: d
    for d in (
        terms(deal_id="d-code", creator_id="cr-1", promo_codes=("CODE",)),
        terms(deal_id="d-b", creator_id="cr-2", promo_codes=("B",)),
        terms(deal_id="d-c", creator_id="cr-3", promo_codes=("C",)),
        terms(deal_id="d-eur", creator_id="cr-4", promo_codes=("E",), currency="EUR"),
        terms(deal_id="d-other", campaign_id="cmp-2", creator_id="cr-5", promo_codes=("O",)),
        terms(deal_id="d-rival", brand_id="br-2", creator_id="cr-6", promo_codes=("R",)),
    )
}
HOME = DEALS["d-code"]


def setting(model: Model, *, lookback: int = 30, half_life: int = 7) -> ModelSetting:
    return ModelSetting("cmp-1", "br-1", model, lookback, half_life, T0, "ev-1")


def click(n: int, deal_id: str, days_before: float) -> Click:
    return Click(f"clk-{n}", deal_id, VISITOR, ORDER_AT - timedelta(days=days_before))


# Oldest first: d-b 9 days before, d-c 5, d-code 2, d-b again 1.
JOURNEY = [click(1, "d-b", 9), click(2, "d-c", 5), click(3, "d-code", 2), click(4, "d-b", 1)]


def weights(model: Model, clicks: list[Click] = JOURNEY, **kw: int) -> dict[str, Decimal]:
    return deal_weights(model, ORDER_AT, clicks, HOME, DEALS, setting(model, **kw))


def shares(model: Model, amount: str = "100.00", **kw: int) -> dict[str, str]:
    return {
        d: str(m.amount) for d, m in split(Money.of(amount, "USD"), weights(model, **kw)).items()
    }


def test_each_model_on_one_journey() -> None:
    assert shares(Model.PROMO_CODE) == {"d-code": "100.00"}
    assert shares(Model.LAST_CLICK) == {"d-b": "100.00"}
    assert shares(Model.FIRST_CLICK) == {"d-b": "100.00"}
    assert shares(Model.LINEAR) == {"d-b": "50.00", "d-c": "25.00", "d-code": "25.00"}
    # 40 first (d-b) + 40 last (d-b), 10 each to the two in the middle.
    assert shares(Model.POSITION_BASED) == {"d-b": "80.00", "d-c": "10.00", "d-code": "10.00"}
    # 2^(-9/7) + 2^(-1/7), 2^(-5/7), 2^(-2/7), normalised.
    # 47.9249, 22.1983, 29.8767: floors leave 2 cents, to the two largest remainders.
    assert shares(Model.TIME_DECAY) == {"d-b": "47.92", "d-c": "22.20", "d-code": "29.88"}


def test_position_based_with_one_two_and_three_touches() -> None:
    one, two = JOURNEY[2:3], JOURNEY[1:3]
    assert weights(Model.POSITION_BASED, one) == {"d-code": Decimal(1)}
    assert split(Money.of("1.01", "USD"), weights(Model.POSITION_BASED, two)) == {
        "d-c": Money.of("0.51", "USD"),  # the odd cent: equal remainders, smallest id
        "d-code": Money.of("0.50", "USD"),
    }
    three = JOURNEY[:3]
    assert shares(Model.POSITION_BASED) != shares(Model.LINEAR)
    got = split(Money.of("100.00", "USD"), weights(Model.POSITION_BASED, three))
    assert {d: str(m.amount) for d, m in got.items()} == {
        "d-b": "40.00",
        "d-c": "20.00",
        "d-code": "40.00",
    }


def test_a_longer_half_life_flattens_time_decay() -> None:
    short, long = shares(Model.TIME_DECAY, half_life=1), shares(Model.TIME_DECAY, half_life=90)
    assert Decimal(short["d-code"]) > Decimal(long["d-code"])
    assert abs(Decimal(long["d-c"]) - Decimal("25")) < 1  # nearly linear


def test_touches_keep_to_the_lookback_the_campaign_the_brand_and_the_deal_window() -> None:
    clicks = [
        *JOURNEY,
        click(5, "d-other", 1),  # another campaign
        click(6, "d-rival", 1),  # another brand's deal in the same campaign id
        click(7, "d-unknown", 1),  # a deal not stored (yet)
        click(8, "d-c", -1),  # after the order
        click(9, "d-c", 31),  # beyond a 30-day lookback
    ]
    found = touches(ORDER_AT, clicks, HOME, DEALS, 30)
    assert [c.click_id for c in found] == ["clk-1", "clk-2", "clk-3", "clk-4"]
    assert [c.click_id for c in touches(ORDER_AT, clicks, HOME, DEALS, 3)] == ["clk-3", "clk-4"]
    late = ORDER_AT + timedelta(days=60)  # every deal's order window is over
    assert touches(late, [Click("x", "d-c", VISITOR, late)], HOME, DEALS, 30) == []


def test_without_a_touch_or_a_setting_the_code_s_deal_gets_everything() -> None:
    for model in Model:
        assert weights(model, []) == {"d-code": Decimal(1)}
    assert deal_weights(Model.LINEAR, ORDER_AT, JOURNEY, HOME, DEALS, None) == {
        "d-code": Decimal(1)
    }


def test_same_time_clicks_are_ordered_by_click_id_not_arrival() -> None:
    at = 3.0
    a, b = Click("clk-a", "d-b", VISITOR, ORDER_AT - timedelta(days=at)), click(0, "d-c", at)
    assert weights(Model.LAST_CLICK, [a, b]) == weights(Model.LAST_CLICK, [b, a])


def test_an_order_split_between_currencies_converts_each_credit() -> None:
    """Credits are split in the order's currency, then each converted at the order's snapshot;
    without a rate for a credited deal's currency the whole order waits for one."""
    order = Order("o-1", "CODE", Money.of("100.00", "USD"), ORDER_AT, None, VISITOR)
    clicks = ClickFacts(
        (click(1, "d-eur", 3), click(2, "d-code", 1)),
        DEALS,
        {("cmp-1", "br-1"): setting(Model.LINEAR)},
    )
    snapshot = FxSnapshot(base="USD", rates={"EUR": Decimal("0.9215")}, as_of=T0, source="ecb")
    outcome = evaluate_order(order, [], [HOME], snapshot, clicks)
    assert outcome.model is Model.LINEAR
    assert [(c.deal_id, str(c.revenue)) for c in outcome.credits] == [
        ("d-code", "50.00 USD"),
        ("d-eur", "46.08 EUR"),  # 50.00 x 0.9215 = 46.075, half-even
    ]
    waiting = evaluate_order(order, [], [HOME], None, clicks)
    assert (waiting.status, waiting.credits) == (OrderStatus.PENDING_FX, ())


def test_a_deal_whose_share_rounds_to_nothing_is_not_credited() -> None:
    # One cent over two touches: d-c gets it (the later, larger share under time decay),
    # d-b nothing, so d-b does not count the order either.
    order = Order("o-1", "CODE", Money.of("0.01", "USD"), ORDER_AT, None, VISITOR)
    journey = (click(1, "d-b", 9), click(2, "d-c", 1))
    clicks = ClickFacts(journey, DEALS, {("cmp-1", "br-1"): setting(Model.TIME_DECAY)})
    outcome = evaluate_order(order, [], [HOME], None, clicks)
    assert [(c.deal_id, str(c.revenue)) for c in outcome.credits] == [("d-c", "0.01 USD")]
    # An order of nothing is still its deals' order, as its model splits it.
    free = Order("o-2", "CODE", Money.of("0.00", "USD"), ORDER_AT, None, VISITOR)
    outcome = evaluate_order(free, [], [HOME], None, clicks)
    assert [c.deal_id for c in outcome.credits] == ["d-b", "d-c"]


amounts = st.integers(0, 10**9).map(lambda units: Money.from_minor(units, "USD"))
journeys = st.lists(
    st.tuples(
        st.sampled_from(["d-code", "d-b", "d-c", "d-other", "d-rival"]),
        st.integers(-2 * 86_400, 40 * 86_400),
    ),
    max_size=12,
)


def _clicks(spec: list[tuple[str, int]]) -> list[Click]:
    return [
        Click(f"clk-{n}", deal, VISITOR, ORDER_AT - timedelta(seconds=s))
        for n, (deal, s) in enumerate(spec)
    ]


@given(
    model=st.sampled_from(list(Model)),
    amount=amounts,
    spec=journeys,
    refunded=st.integers(0, 10**9),
    half_life=st.integers(1, 90),
    lookback=st.integers(1, 90),
)
def test_credits_of_one_order_sum_exactly_to_it_and_refunds_never_exceed_them(
    model: Model,
    amount: Money,
    spec: list[tuple[str, int]],
    refunded: int,
    half_life: int,
    lookback: int,
) -> None:
    clicks = _clicks(spec)
    w = weights(model, clicks, lookback=lookback, half_life=half_life)
    credits = split(amount, w)
    assert sum((c for c in credits.values()), Money.zero("USD")) == amount
    assert all(not c.is_negative() for c in credits.values())
    assert set(credits) <= {"d-code", "d-b", "d-c"}  # never outside the campaign and brand
    back = split_refund(Money.from_minor(min(refunded, amount.minor_units), "USD"), credits)
    assert sum((b for b in back.values()), Money.zero("USD")).minor_units == min(
        refunded, amount.minor_units
    )
    assert all(back[d] <= credits[d] for d in credits)
    full = split_refund(amount, credits)
    assert full == credits  # a full refund takes back exactly what each deal got


@given(model=st.sampled_from(list(Model)), amount=amounts, spec=journeys, data=st.data())
def test_credits_do_not_depend_on_the_order_clicks_are_known_in(
    model: Model, amount: Money, spec: list[tuple[str, int]], data: st.DataObject
) -> None:
    clicks = _clicks(spec)
    shuffled = data.draw(st.permutations(clicks))
    assert split(amount, weights(model, clicks)) == split(amount, weights(model, shuffled))


@pytest.mark.parametrize("model", list(Model))
def test_an_order_with_its_refund_nets_to_zero_under_every_model(model: Model) -> None:
    order = Order("o-1", "CODE", Money.of("99.99", "USD"), ORDER_AT, None, VISITOR)
    clicks = ClickFacts(tuple(JOURNEY), DEALS, {("cmp-1", "br-1"): setting(model)})
    refund = Refund("o-1", Money.of("99.99", "USD"), ORDER_AT + timedelta(days=1))
    outcome = evaluate_order(order, [refund], [HOME], None, clicks)
    assert outcome.fully_refunded
    assert all((c.revenue - c.refunded).is_zero() for c in outcome.credits)
    assert sum((c.revenue for c in outcome.credits), Money.zero("USD")) == order.amount


_ids = st.sampled_from(["v-1", "v-2", "v-3"])
_click_ids = st.sampled_from(["clk-1", "clk-2", "clk-3", "clk-4"])


@given(
    st.lists(st.tuples(_click_ids, _ids), max_size=12),
    st.one_of(st.none(), _ids),
    st.one_of(st.none(), _click_ids),
)
def test_an_orders_clicks_are_its_visitors_and_the_one_it_names(
    made: list[tuple[str, str]], visitor_id: str | None, click_id: str | None
) -> None:
    """One set of facts serves a whole batch: looking an order's clicks up by visitor and
    click id finds exactly what reading every click would, in the same order."""
    clicks = tuple(
        Click(c, "d-b", v, ORDER_AT - timedelta(days=n)) for n, (c, v) in enumerate(made)
    )
    order = Order("o-1", "CODE", Money.of("1", "USD"), ORDER_AT, None, visitor_id, click_id)
    expected = [
        c
        for c in clicks
        if (visitor_id is not None and c.visitor_id == visitor_id)
        or (click_id is not None and c.click_id == click_id)
    ]
    assert ClickFacts(clicks, DEALS).of(order) == expected
