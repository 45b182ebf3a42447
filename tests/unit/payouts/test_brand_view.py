"""The brand's view of its deals (services/payouts/domain/brand_view.py): statuses and totals
per currency, clawbacks, the one hold a brand is told about, and tracking's figures kept
exactly through their stored form."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.payouts.domain.accounts import Hold, HoldCode
from services.payouts.domain.brand_view import (
    AttributionFigures,
    campaign_summaries,
    deal_lines,
    totals,
)
from shared.contract.money import Money
from tests.unit.payouts.store_contract import LONG_AGO, acct, figures, new_payout, terms


def _payout(deal_id: str, status: str, amount: str, **changes: object) -> object:
    payout = new_payout(deal_id, "cr-1", acct("cr-1"), amount=amount).payout
    return replace(payout, status=status, **changes)  # type: ignore[arg-type]


def test_statuses_add_up_per_currency_and_a_clawback_is_apart() -> None:
    usd = [terms("deal-1", "cr-1"), terms("deal-2", "cr-2")]
    eur = replace(terms("deal-3", "cr-1"), fee=Money.of("200.00", "EUR"), campaign_id="cmp-2")
    payouts = [
        _payout("deal-1", "settled", "100.00"),
        _payout("deal-1", "sent", "40.00", kind="commission", payout_id="c1"),
        _payout("deal-1", "settled", "15.00", kind="clawback", payout_id="k1"),
        _payout("deal-2", "held", "100.00", hold=Hold(HoldCode.AWAITING_FUNDS, "escrow")),
        _payout("deal-2", "held", "7.00", payout_id="h2", hold=Hold(HoldCode.TAX_FORM, "w-9")),
        _payout("deal-2", "failed", "3.00", payout_id="f2"),
    ]
    kept = {"deal-1": figures(Money.of("500.00", "USD"), LONG_AGO, orders=4)}
    lines = deal_lines([eur, *usd], payouts, kept)  # type: ignore[arg-type]
    assert [line.deal_id for line in lines] == ["deal-1", "deal-2", "deal-3"]
    one, two, _ = lines
    assert [p.status for p in one.payouts] == ["settled", "sent", "clawed_back"]
    # Only the brand's own hold is told; a creator's tax form is theirs.
    assert [p.awaiting_funds for p in two.payouts] == [True, False, False]
    assert [p.status for p in two.payouts] == ["held", "held", "failed"]

    by_currency = {t.currency: t for t in totals(lines)}
    assert set(by_currency) == {"EUR", "USD"}
    t = by_currency["USD"]
    assert (t.fees, t.paid, t.pending, t.clawed_back) == (
        Money.of("2000.00", "USD"),
        Money.of("140.00", "USD"),
        Money.of("110.00", "USD"),
        Money.of("15.00", "USD"),
    )
    assert (t.revenue, t.spend) == (Money.of("500.00", "USD"), Money.of("110.00", "USD"))
    assert by_currency["EUR"].fees == Money.of("200.00", "EUR")
    assert by_currency["EUR"].paid == Money.of("0.00", "EUR")

    summaries = campaign_summaries(lines)
    assert [(s.campaign_id, s.deals, s.creators, s.orders) for s in summaries] == [
        ("cmp", 2, 2, 4),
        ("cmp-2", 1, 1, 0),
    ]


_COUNT = st.integers(min_value=0, max_value=10**12)
_RATIO = st.none() | st.decimals(min_value=-(10**6), max_value=10**6, places=4)


@given(
    counts=st.lists(_COUNT, min_size=9, max_size=9),
    cents=st.integers(min_value=-(10**9), max_value=10**9),
    ratio=_RATIO,
    optional=st.none() | _COUNT,
    leak=st.none() | st.booleans(),
    days=st.integers(min_value=0, max_value=20_000),
)
def test_figures_come_back_from_their_stored_form_unchanged(
    counts: list[int],
    cents: int,
    ratio: Decimal | None,
    optional: int | None,
    leak: bool | None,
    days: int,
) -> None:
    revenue = Money.of(Decimal(cents).scaleb(-3), "KWD")  # three decimals survive
    posts, likes, comments, shares, views, impressions, reach, orders, saves = counts
    kept = AttributionFigures(
        as_of=LONG_AGO + timedelta(days=days, microseconds=days),
        posts=posts,
        likes=likes,
        comments=comments,
        shares=shares,
        views=views,
        impressions=impressions,
        reach=reach,
        orders=orders,
        revenue=revenue,
        spend=Money.of("0.125", "KWD"),
        roi_pct=ratio,
        cpm=None if ratio is None else abs(ratio),
        saves=saves,
        leak_suspected=leak,
        suspected_orders=optional,
        withheld_revenue=None if optional is None else revenue,
    )
    assert AttributionFigures.from_json(kept.to_json()) == kept
