"""Yearly totals per creator in USD, grouped for 1099-NEC (W-9) and W-8 forms."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from services.payouts.domain import lifecycle
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.tax import DEFAULT_1099_THRESHOLD, in_usd, tax_report
from services.payouts.reports import tax_totals
from shared.contract.money import FxSnapshot, Money
from tests.unit.payouts.builders import account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness
from tests.unit.payouts.store_contract import LONG_AGO, acct, terms

SNAPSHOT = FxSnapshot("USD", {"EUR": Decimal("0.9"), "GBP": Decimal("0.8")}, LONG_AGO, "feed")


def paid(creator: str, amount: str, currency: str = "USD", to: str = "USD") -> Payout:
    """A settled fee of `amount` (deal currency) paid in `to` at SNAPSHOT's rates."""
    deal_terms = replace(terms(uid("deal"), creator), fee=Money.of(amount, currency))
    created = lifecycle.create(
        deal_terms,
        "fee",
        "",
        deal_terms.fee,
        platform_fee_bps=0,
        account=acct(creator, to),
        snapshot=SNAPSHOT,
        now=LONG_AGO,
    )
    sent = lifecycle.mark_sent(created.payout, "tr_1")
    return lifecycle.settle(sent.payout).payout


def test_us_creators_at_or_above_the_threshold_are_reportable_and_w8_apart() -> None:
    us_high, us_low, foreign, unknown = "cr-us-high", "cr-us-low", "cr-w8", "cr-other"
    settled = [
        (paid(us_high, "400.00"), None),
        (paid(us_high, "200.00"), None),  # 600.00 in all: "600 or more" is reported
        (paid(us_low, "599.99"), None),
        (paid(foreign, "9000.00"), None),
        (paid(unknown, "10.00"), None),
    ]
    accounts = {
        us_high: replace(acct(us_high, "USD"), tax_form_type="W-9"),
        us_low: replace(acct(us_low, "USD"), tax_form_type="W-9"),
        foreign: replace(acct(foreign, "USD"), tax_form_type="W-8BEN"),
        unknown: replace(acct(unknown, "USD"), tax_form_type="other"),
    }
    report = tax_report(2025, settled, accounts, DEFAULT_1099_THRESHOLD)
    assert [(r.creator_id, r.payouts, r.paid) for r in report.us_reportable] == [
        (us_high, 2, Money.of("600.00", "USD"))
    ]
    assert [r.creator_id for r in report.us_below] == [us_low]
    assert [(r.creator_id, r.tax_form) for r in report.foreign] == [(foreign, "W-8BEN")]
    assert [r.creator_id for r in report.no_form] == [unknown]
    higher = tax_report(2025, settled, accounts, Money.of("600.01", "USD"))
    assert higher.us_reportable == [] and len(higher.us_below) == 2


def test_usd_values_come_from_the_rate_recorded_with_each_payout() -> None:
    # A USD fee paid in EUR is worth its USD share, exactly.
    assert in_usd(paid("cr", "100.00", "USD", "EUR"), None) == Money.of("100.00", "USD")
    # A EUR fee paid in GBP: its GBP net (100 / 0.9 x 0.8 = 88.89) at the recorded snapshot.
    eur_to_gbp = paid("cr", "100.00", "EUR", "GBP")
    assert eur_to_gbp.net == Money.of("88.89", "GBP")
    assert in_usd(eur_to_gbp, SNAPSHOT) == Money.of("111.11", "USD")  # 111.1125, half-even
    # Another snapshot than the recorded one is refused rather than used.
    other = FxSnapshot("USD", {"GBP": Decimal("0.5")}, datetime(2002, 1, 1, tzinfo=UTC), "x")
    report = tax_report(2001, [(eur_to_gbp, other)], {})
    assert report.no_form == [] and list(report.unconverted) == [eur_to_gbp.payout_id]


def test_a_payout_in_its_own_currency_is_valued_at_the_rate_of_its_lock() -> None:
    in_eur = paid("cr", "90.00", "EUR", "EUR")
    assert in_eur.fx is not None and in_eur.fx.as_of is None
    assert in_usd(in_eur, SNAPSHOT) == Money.of("100.00", "USD")


async def test_the_report_reads_what_settled_in_the_year() -> None:
    h = Harness()
    year = datetime.now(UTC).year
    us, foreign = uid("cr"), uid("cr")
    await h.consume(fx({"EUR": "0.9"}))
    for creator, form, currency in ((us, "W-9", "USD"), (foreign, "W-8BEN", "EUR")):
        deal = uid("deal")
        await h.consume(
            account(creator, currency=currency, form=form),
            deal_signed(deal, creator, fee=Money.of("700.00", "USD")),
        )
        await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    await h.settlement.run_once()
    report = await tax_totals(h.db, year, DEFAULT_1099_THRESHOLD)
    assert [(r.creator_id, r.paid) for r in report.us_reportable] == [
        (us, Money.of("700.00", "USD"))
    ]
    assert [(r.creator_id, r.paid) for r in report.foreign] == [
        (foreign, Money.of("700.00", "USD"))  # paid 630.00 EUR for a 700.00 USD fee
    ]
    before = await tax_totals(h.db, year - 1, DEFAULT_1099_THRESHOLD)
    assert before.us_reportable == [] and before.foreign == []
