"""Creators' statements: periods, the lines and totals of a month, the yearly summary against
the operators' tax report, and the CSV and PDF files (RFC 4180, formula-safe, exact amounts)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.payouts.domain.amounts import SAME_CURRENCY, FxRecord
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.statements import (
    DatedPayout,
    Period,
    PeriodError,
    month_statement,
    periods,
    settled_in,
    year_summary,
)
from services.payouts.domain.tax import DEFAULT_1099_THRESHOLD, tax_report
from services.payouts.reports import tax_totals
from services.payouts.statement_files import (
    COLUMNS,
    YEAR_COLUMNS,
    safe_cell,
    statement_csv,
    statement_pdf,
)
from services.payouts.statements import creator_statement, statement_periods
from shared.contract.money import FxSnapshot, Money
from tests.support.pdf import pdf_text
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness
from tests.unit.payouts.store_contract import acct

CREATOR = "cr-statements"
NOV = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
SNAPSHOT = FxSnapshot("USD", {"EUR": Decimal("0.9"), "JPY": Decimal("150")}, NOV, "ecb")


def payout(
    payout_id: str,
    gross: str,
    currency: str = "USD",
    *,
    net: Money | None = None,
    kind: str = "fee",
    status: str = "settled",
    fee: str = "0",
    deal_id: str = "deal-1",
    creator_id: str = CREATOR,
) -> Payout:
    rate = None
    if net is not None and net.currency == currency:
        rate = FxRecord(Decimal(1), None, SAME_CURRENCY)
    elif net is not None:
        rate = FxRecord(Decimal("0.9"), SNAPSHOT.as_of, SNAPSHOT.source)
    return Payout(
        payout_id=payout_id,
        deal_id=deal_id,
        kind=kind,  # type: ignore[arg-type]
        milestone="",
        creator_id=creator_id,
        brand_id="br",
        gross=Money.of(gross, currency),
        platform_fee=Money.of(fee, currency),
        status=status,  # type: ignore[arg-type]
        net=net,
        fx=rate,
        provider_ref="REF-1" if status in ("sent", "settled") else None,
        rail="wise",
    )


def dated(p: Payout, owed: datetime, settled: datetime | None = None) -> DatedPayout:
    return DatedPayout(p, owed, settled if p.status == "settled" else None)


# Periods.


def test_periods_parse_months_and_years_and_refuse_the_rest_saying_why() -> None:
    assert Period.parse("2026-11") == Period(2026, 11) and str(Period(2026, 11)) == "2026-11"
    assert Period.parse("2026") == Period(2026) and Period(2026).is_year
    assert Period(2026, 11).label == "November 2026" and Period(2026).label == "2026"
    assert Period(2026, 12).end == datetime(2027, 1, 1, tzinfo=UTC)
    assert Period(2026).start == datetime(2026, 1, 1, tzinfo=UTC)
    for text, why in (
        ("2026-13", "no month 13"),
        ("2026-00", "no month 00"),
        ("0999", "years 1970"),
        ("2026-1", "not a period"),
        ("26-11", "not a period"),
        ("2026-11-01", "not a period"),
        ("..%2F", "not a period"),
        ("\uff12\uff10\uff12\uff16", "not a period"),  # 2026 in full-width digits
    ):
        with pytest.raises(PeriodError, match=why):
            Period.parse(text)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9998, 12, 31)))
def test_every_moment_is_in_exactly_one_month_and_that_months_year(moment: datetime) -> None:
    at = moment.replace(tzinfo=UTC)
    month = Period(at.year, at.month)
    assert month.holds(at) and Period(at.year).holds(at)
    assert not Period(at.year, at.month % 12 + 1).holds(at)
    assert Period.parse(str(month)) == month


# A month's statement.


def test_a_months_statement_lists_the_payouts_owed_in_it_with_totals_per_currency() -> None:
    eur = Money.of("89.10", "EUR")
    items = [
        dated(payout("po-2", "100.00", net=eur, fee="1.00"), NOV + timedelta(days=2), NOV),
        dated(payout("po-1", "50.00", net=Money.of("45.00", "EUR"), status="sent"), NOV),
        dated(payout("po-3", "4.00", kind="clawback", fee="0.04"), NOV + timedelta(days=3)),
        dated(payout("po-0", "1000", "JPY", status="held"), NOV),
        dated(payout("po-oct", "9.00"), NOV - timedelta(days=30)),  # owed in October
        dated(payout("po-other", "7.00", creator_id="someone-else"), NOV),
    ]
    statement = month_statement(CREATOR, Period(2026, 11), items, "EUR")
    assert [line.payout_id for line in statement.lines] == ["po-0", "po-1", "po-2", "po-3"]
    clawback = statement.lines[-1]
    assert clawback.gross == Money.of("-4.00", "USD") and clawback.net is None
    assert clawback.status == "clawed_back"
    assert clawback.platform_fee == Money.of("-0.04", "USD") and clawback.paid is None
    by_currency = {t.currency: t for t in statement.totals}
    assert list(by_currency) == ["EUR", "JPY", "USD"]
    usd, eur_totals, jpy = by_currency["USD"], by_currency["EUR"], by_currency["JPY"]
    assert (usd.gross, usd.platform_fee) == (Money.of("146.00", "USD"), Money.of("0.96", "USD"))
    assert eur_totals.net == Money.of("134.10", "EUR")  # sent and settled
    assert eur_totals.paid == Money.of("89.10", "EUR")  # settled only
    assert jpy.gross == Money.of("1000", "JPY") and jpy.net == Money.zero("JPY")


def test_a_currency_totals_only_the_columns_it_has_payouts_in() -> None:
    # A USD fee paid in EUR: the USD row has no net or paid, the EUR row no gross or fee,
    # rather than "paid 0.00 USD" beside a 100.00 USD gross.
    eur = Money.of("89.85", "EUR")
    items = [dated(payout("po-1", "100.00", net=eur, fee="2.50"), NOV, NOV)]
    statement = month_statement(CREATOR, Period(2026, 11), items, "EUR")
    rows = [
        dict(zip(COLUMNS, r, strict=True))
        for r in csv.reader(io.StringIO(statement_csv(statement)))
    ]
    totals = {r["gross_currency"]: r for r in rows[1:] if r["kind"] == "total"}
    columns = ("gross", "platform_fee", "net", "paid")
    assert [totals["USD"][c] for c in columns] == ["100.00", "2.50", "", ""]
    assert [totals["EUR"][c] for c in columns] == ["", "", "89.85", "89.85"]
    by_currency = {t.currency: t.shown() for t in statement.totals}
    assert by_currency["USD"][2:] == (None, None) and by_currency["EUR"][:2] == (None, None)


def test_a_currency_the_account_moved_to_has_no_total_row_in_a_month_paid_in_another() -> None:
    # Paid in EUR, then the account moved to GBP: the month totals EUR alone, not a row of
    # zeros in GBP beside it.
    eur = Money.of("90.00", "EUR")
    items = [dated(payout("po-1", "100.00", net=eur), NOV, NOV)]
    statement = month_statement(CREATOR, Period(2026, 11), items, "GBP")
    assert [t.currency for t in statement.totals] == ["EUR", "USD"]
    assert ",GBP," not in statement_csv(statement)


def test_a_month_with_nothing_is_an_empty_statement_with_zero_totals() -> None:
    empty = month_statement(CREATOR, Period(2031, 2), [], "KWD")
    assert empty.lines == ()
    [kwd] = empty.totals
    assert (kwd.gross, kwd.net, kwd.paid) == (Money.zero("KWD"),) * 3
    text = statement_csv(empty)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS) and len(rows) == 2
    total = dict(zip(COLUMNS, rows[1], strict=True))
    assert total["kind"] == "total" and total["net"] == "0.000" and total["net_currency"] == "KWD"
    # Without even a currency to name: zeros all the same.
    bare = dict(
        zip(
            COLUMNS,
            list(
                csv.reader(
                    io.StringIO(statement_csv(month_statement(CREATOR, Period(2031, 2), [])))
                )
            )[1],
            strict=True,
        )
    )
    assert (bare["kind"], bare["gross"], bare["paid"]) == ("total", "0", "0")


_CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "EUR"])


@st.composite
def _payouts(draw: st.DrawFn) -> list[DatedPayout]:
    items = []
    for n in range(draw(st.integers(0, 12))):
        currency = draw(_CURRENCIES)
        gross = Money.from_minor(draw(st.integers(0, 10**9)), currency)
        to = draw(_CURRENCIES)
        net = Money.from_minor(draw(st.integers(0, 10**9)), to)
        kind = draw(st.sampled_from(["fee", "commission", "clawback"]))
        status = (
            "settled" if kind == "clawback" else draw(st.sampled_from(["held", "sent", "settled"]))
        )
        p = replace(
            payout(f"po-{n}", "0", currency, kind=kind, status=status),
            gross=gross,
            net=None if kind == "clawback" else net,
        )
        owed = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 24 * 400)))
        items.append(dated(p, owed, owed + timedelta(days=draw(st.integers(0, 40)))))
    return items


@given(_payouts())
def test_the_months_of_a_year_hold_each_payout_once_and_their_totals_add_up(
    items: list[DatedPayout],
) -> None:
    months = [month_statement(CREATOR, Period(2026, m), items) for m in range(1, 13)]
    listed = [line.payout_id for s in months for line in s.lines]
    owed_in_2026 = [d.payout.payout_id for d in items if d.owed_at.year == 2026]
    assert sorted(listed) == sorted(owed_in_2026)
    for month, statement in enumerate(months, start=1):
        mine = [d.payout for d in items if Period(2026, month).holds(d.owed_at)]
        for t in statement.totals:
            # In whole minor units: a clawback counts against, only settled nets are paid.
            gross = sum(
                (-1 if p.kind == "clawback" else 1) * p.gross.minor_units
                for p in mine
                if p.gross.currency == t.currency
            )
            paid = sum(
                p.net.minor_units
                for p in mine
                if p.net and p.net.currency == t.currency and p.status == "settled"
            )
            assert t.gross.minor_units == gross and t.paid.minor_units == paid
    all_months, years = periods(items)
    assert set(all_months) == {Period(d.owed_at.year, d.owed_at.month) for d in items}
    assert {Period(d.owed_at.year) for d in items} <= set(years)


# The yearly summary.


def test_the_yearly_summary_is_the_tax_reports_figure_for_the_creator() -> None:
    paid_2026 = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    items = [
        dated(payout("po-a", "100.00", net=Money.of("90.00", "EUR")), NOV, paid_2026),
        dated(payout("po-b", "20.00", "EUR", net=Money.of("20.00", "EUR")), NOV, NOV),
        dated(payout("po-c", "5.00"), NOV, datetime(2027, 1, 1, tzinfo=UTC)),  # next year
        dated(payout("po-d", "5.00", status="sent"), NOV),
    ]
    account = replace(acct(CREATOR, "EUR"), tax_form_type="W-8BEN")
    settled = settled_in(Period(2026), items)
    assert [d.payout.payout_id for d in settled] == ["po-b", "po-a"]
    own_currency = FxSnapshot("USD", {"EUR": Decimal("0.8")}, NOV - timedelta(days=1), "ecb")
    valued = [(settled[0], own_currency), (settled[1], None)]
    summary = year_summary(CREATOR, Period(2026), valued, account)
    [row] = tax_report(2026, [(d.payout, s) for d, s in valued], {CREATOR: account}).foreign
    assert summary.year is not None
    assert (summary.year.paid_usd, summary.year.payouts) == (row.paid, row.payouts)
    assert summary.year.paid_usd == Money.of("125.00", "USD")  # 100.00 + 20 EUR / 0.8
    assert [line.usd for line in summary.lines] == [
        Money.of("25.00", "USD"),
        Money.of("100.00", "USD"),
    ]
    assert summary.year.tax_form == "W-8BEN"
    # Nothing settled in the year: zero, not an error.
    nothing = year_summary(CREATOR, Period(2030), [], account)
    assert nothing.year is not None and nothing.year.paid_usd == Money.zero("USD")
    assert [t.currency for t in nothing.totals] == ["EUR"]


async def test_the_page_reads_the_yearly_summary_the_tax_report_gives() -> None:
    h = Harness()
    creator, deal = uid("cr"), uid("deal")
    await h.consume(fx({"EUR": "0.9", "GBP": "0.8"}))
    await h.consume(
        account(creator, currency="GBP", form="W-9"),
        deal_signed(deal, creator, fee=Money.of("700.00", "EUR")),
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    await h.settlement.run_once()
    months, years = await statement_periods(h.db, creator)
    async with h.db.snapshot() as repo:
        [paid] = await repo.dated_payouts_of(creator)
    # Owed when its work was confirmed (T0), paid when it settled (now).
    assert months == [Period(T0.year, T0.month)] and paid.owed_at == T0
    assert paid.settled_at is not None
    year = Period(paid.settled_at.year)
    assert years == sorted({year, Period(T0.year)}, reverse=True)
    summary = await creator_statement(h.db, creator, year)
    report = await tax_totals(h.db, year.year, DEFAULT_1099_THRESHOLD)
    [row] = [r for r in report.us_reportable + report.us_below if r.creator_id == creator]
    assert summary.year is not None and summary.year.paid_usd == row.paid
    assert summary.year.payouts == row.payouts == 1 and row.paid.currency == "USD"
    # The month it was owed in lists it, net in GBP.
    monthly = await creator_statement(h.db, creator, months[0])
    assert [line.payout_id for line in monthly.lines] == [paid.payout.payout_id]
    assert monthly.lines[0].net is not None and monthly.lines[0].net.currency == "GBP"


# The files.


def test_the_csv_is_rfc_4180_with_exact_amounts_per_currency() -> None:
    items = [
        dated(payout("po-1", "1200", "JPY", net=Money.of("7.20", "EUR")), NOV, NOV),
        dated(payout("po-2", "1.250", "KWD", net=Money.of("1.250", "KWD")), NOV, NOV),
        dated(payout("po-3", "10.00", deal_id='deal "big", summer\nsale'), NOV, NOV),
    ]
    text = statement_csv(month_statement(CREATOR, Period(2026, 11), items))
    assert text.endswith("\r\n") and "\r\n" in text.rstrip("\r\n")
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in csv.reader(io.StringIO(text))][1:]
    assert [(r["gross"], r["gross_currency"]) for r in rows[:3]] == [
        ("1200", "JPY"),
        ("1.250", "KWD"),
        ("10.00", "USD"),
    ]
    assert rows[2]["deal"] == 'deal "big", summer\nsale'
    assert rows[0]["date"] == "2026-11-05" and rows[0]["reference"] == "REF-1"
    totals = {r["gross_currency"]: r for r in rows if r["kind"] == "total"}
    assert totals["KWD"]["paid"] == "1.250" and totals["EUR"]["paid"] == "7.20"
    assert totals["JPY"]["gross"] == "1200" and totals["USD"]["gross"] == "10.00"


_RISKY_START = "=+-@\t\r"


@given(
    st.tuples(st.sampled_from(["", *_RISKY_START]), st.text(max_size=30)).map("".join).filter(bool)
)
def test_no_cell_a_brand_chose_is_read_as_a_formula(deal_id: str) -> None:
    p = payout("po-1", "10.00", deal_id=deal_id)
    text = statement_csv(month_statement(CREATOR, Period(2026, 11), [dated(p, NOV, NOV)]))
    [_, row, *_] = csv.reader(io.StringIO(text, newline=""))
    cell = dict(zip(COLUMNS, row, strict=True))["deal"]
    number = re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", deal_id) is not None
    if deal_id[0] in _RISKY_START and not number:
        assert cell == "'" + deal_id
    else:
        assert cell == deal_id


def test_safe_cells_leave_numbers_alone() -> None:
    assert safe_cell("-4.00") == "-4.00" and safe_cell("12") == "12"
    assert safe_cell("=1+2") == "'=1+2" and safe_cell("-2+3") == "'-2+3"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)" and safe_cell("+33 6") == "'+33 6"
    assert safe_cell("\t=1") == "'\t=1" and safe_cell("deal") == "deal"


def test_the_yearly_csv_ends_with_the_usd_total() -> None:
    item = dated(payout("po-a", "100.00", net=Money.of("90.00", "EUR")), NOV, NOV)
    summary = year_summary(CREATOR, Period(2026), [(item, None)], acct(CREATOR, "EUR"))
    rows = list(csv.reader(io.StringIO(statement_csv(summary))))
    assert rows[0] == list(YEAR_COLUMNS)
    last = dict(zip(YEAR_COLUMNS, rows[-1], strict=True))
    assert (last["kind"], last["paid_usd"]) == ("total_usd", "100.00")
    assert dict(zip(YEAR_COLUMNS, rows[1], strict=True))["paid_usd"] == "100.00"


def test_the_pdf_shows_the_payouts_and_the_totals() -> None:
    items = [
        dated(payout("po-1", "100.00", net=Money.of("89.10", "EUR"), fee="1.00"), NOV, NOV),
        dated(payout("po-2", "4.00", kind="clawback", deal_id="deal-(2)"), NOV),
        dated(payout("po-3", "5.00", deal_id="取引-東京"), NOV, NOV),  # beyond Latin-1
    ]
    statement = month_statement(CREATOR, Period(2026, 11), items, "EUR")
    for compress in (True, False):
        document = statement_pdf(statement, compress=compress)
        assert document.startswith(b"%PDF-") and document.rstrip().endswith(b"%%EOF")
        assert b"/Lang (en)" in document  # read aloud in English (WCAG 3.1.1, PDF16)
        text = pdf_text(document)
        for shown in (
            "Statement for November 2026",
            "89.10 EUR",  # the net, and the EUR total paid
            "-4.00 USD",  # the clawback
            "deal-(2)",
            "\\u53d6\\u5f15-\\u6771\\u4eac",  # kept, as codes the reader can look up
            "cannot show are written as codes",
            "101.00 USD",  # gross total: 100.00 - 4.00 + 5.00
        ):
            assert shown in text, shown
    summary = year_summary(CREATOR, Period(2026), [(items[0], None)], acct(CREATOR, "EUR"))
    text = pdf_text(statement_pdf(summary))
    assert "Earnings summary for 2026" in text and "99.00 USD over 1 payout(s)" in text
    assert "cannot show" not in text
    empty = pdf_text(statement_pdf(month_statement(CREATOR, Period(2031, 1), [], "EUR")))
    assert "No payouts in this period." in empty and "0.00 EUR" in empty
