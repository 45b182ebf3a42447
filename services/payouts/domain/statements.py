"""Creators' statements: a month's payouts with where each stands, and a year's earnings
summed exactly as the operators' tax report sums them.

A payout belongs to the month it became *owed* (its rate was locked: `fx_at`, else when it was
recorded), which never changes, so a month's statement lists the same payouts whenever it is
downloaded; only their statuses move on. The yearly summary is what was *paid* in the year:
the payouts settled in it (UTC) by their latest settlement, the set `tax.tax_report` counts,
valued in USD by `tax.in_usd` and totalled by `tax.tax_report` itself (no second computation).

Pure: the read side (`services/payouts/statements.py`) hands in dated payouts and snapshots.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from services.payouts.domain.accounts import PayoutAccount
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.tax import USD, CreatorTotal, in_usd, tax_report
from shared.contract.money import FxSnapshot, Money, MoneyError

FIRST_YEAR: Final = 1970
LAST_YEAR: Final = 9998  # its end, 1 January of the next year, is still a datetime
# A clawback's status on a statement: complete at once, it sends nothing to settle.
CLAWED_BACK: Final = "clawed_back"
_SHAPE: Final = re.compile(r"([0-9]{4})(?:-([0-9]{2}))?")


class PeriodError(ValueError):
    """A period that is not `YYYY` or `YYYY-MM`, or names no real month or a year out of range;
    the message says what is accepted."""


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month (`2026-11`) or a year (`2026`), in UTC."""

    year: int
    month: int | None = None

    def __post_init__(self) -> None:
        if not FIRST_YEAR <= self.year <= LAST_YEAR:
            raise PeriodError(
                f"there are no statements for {self.year}: years {FIRST_YEAR} to {LAST_YEAR} only"
            )
        if self.month is not None and not 1 <= self.month <= 12:
            raise PeriodError(f"there is no month {self.month:02d}: months are 01 to 12")

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-11` or `2026`; anything else raises PeriodError."""
        shaped = _SHAPE.fullmatch(text)
        if shaped is None:
            raise PeriodError(
                f"{text[:20]!r} is not a period: write a month as 2026-11 or a year as 2026"
            )
        month = shaped.group(2)
        return cls(int(shaped.group(1)), None if month is None else int(month))

    @property
    def is_year(self) -> bool:
        return self.month is None

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month or 1, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        if self.month is None or self.month == 12:
            return datetime(self.year + 1, 1, 1, tzinfo=UTC)
        return datetime(self.year, self.month + 1, 1, tzinfo=UTC)

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def label(self) -> str:
        """`November 2026`, or `2026`."""
        return (
            str(self.year)
            if self.month is None
            else f"{calendar.month_name[self.month]} {self.year}"
        )

    def __str__(self) -> str:
        return str(self.year) if self.month is None else f"{self.year}-{self.month:02d}"


@dataclass(frozen=True)
class DatedPayout:
    """A payout with the two dates statements sort it by."""

    payout: Payout
    owed_at: datetime  # when it became owed: its rate locked (`fx_at`), else when recorded
    settled_at: datetime | None  # while settled: when its latest settlement was posted


@dataclass(frozen=True)
class Line:
    """One payout on a statement. `gross` and `platform_fee` are in the deal currency, negative
    for a clawback (commission taken back); `net` is in the creator's currency once converted;
    `paid` is the net of a settled payout; `usd` its value in USD (yearly summary only)."""

    payout_id: str
    date: datetime
    paid_on: datetime | None
    deal_id: str
    kind: str
    milestone: str
    status: str  # the payout's status; `clawed_back` for a clawback
    gross: Money
    fx_rate: Decimal | None
    platform_fee: Money
    recovered: Money | None
    net: Money | None
    paid: Money | None
    rail: str | None
    reference: str | None
    usd: Money | None = None


@dataclass(frozen=True)
class Totals:
    """The sums of one currency: gross and fees of the payouts in it (deal currency), net and
    paid of those converted into it (creator's currency)."""

    currency: str
    gross: Money
    platform_fee: Money
    net: Money
    paid: Money
    # Whether some payout's gross is in this currency, and whether some payout was converted
    # into it: a currency that is only one of the two has nothing to total in the other's
    # columns (statements leave them blank rather than show "paid 0.00" beside a fee).
    has_gross: bool = True
    has_net: bool = True

    def shown(self) -> tuple[Money | None, Money | None, Money | None, Money | None]:
        """Gross, fees, net and paid as a statement shows them: None in the columns of a
        role the currency has no payout in (zeros in all four for a currency with none)."""
        bare = not (self.has_gross or self.has_net)
        deal_side = self.has_gross or bare
        payout_side = self.has_net or bare
        return (
            self.gross if deal_side else None,
            self.platform_fee if deal_side else None,
            self.net if payout_side else None,
            self.paid if payout_side else None,
        )


@dataclass(frozen=True)
class YearFigures:
    """What the tax report gives for the creator and year: the payouts it counted, their sum
    in USD and the form on file; and the payouts it could not value in USD (id: why)."""

    payouts: int
    paid_usd: Money
    tax_form: str
    unconverted: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    creator_id: str
    period: Period
    lines: tuple[Line, ...]
    totals: tuple[Totals, ...]  # by currency
    year: YearFigures | None = None  # the yearly summary's tax figures


def line(dated: DatedPayout, usd: Money | None = None) -> Line:
    p = dated.payout
    back = p.kind == "clawback"
    settled = p.status == "settled" and p.kind != "clawback"
    return Line(
        payout_id=p.payout_id,
        date=dated.owed_at,
        paid_on=dated.settled_at if settled else None,
        deal_id=p.deal_id,
        kind=p.kind,
        milestone=p.milestone,
        status=CLAWED_BACK if back else p.status,
        gross=-p.gross if back else p.gross,
        fx_rate=p.fx.rate if p.fx is not None else None,
        platform_fee=-p.platform_fee if back else p.platform_fee,
        recovered=p.recovered if p.recovered is not None and not p.recovered.is_zero() else None,
        net=p.net,
        paid=p.net if settled else None,
        rail=p.rail,
        reference=p.provider_ref,
        usd=usd,
    )


def totals(lines: Iterable[Line], currencies: Iterable[str] = ()) -> tuple[Totals, ...]:
    """Per currency of the lines, sorted by code; with no line, `currencies` at zero (a month
    without payouts totals 0 in the creator's currency, one with payouts only what is in it)."""
    lines = list(lines)
    codes = set() if lines else set(currencies)
    for item in lines:
        codes.add(item.gross.currency)
        codes |= {m.currency for m in (item.net, item.paid) if m is not None}
    return tuple(_totals_of(code, lines) for code in sorted(codes))


def _totals_of(code: str, lines: Sequence[Line]) -> Totals:
    zero = Money.zero(code)

    def total(amounts: Iterable[Money | None]) -> Money:
        return sum((m for m in amounts if m is not None and m.currency == code), zero)

    return Totals(
        code,
        total(item.gross for item in lines),
        total(item.platform_fee for item in lines),
        total(item.net for item in lines),
        total(item.paid for item in lines),
        has_gross=any(item.gross.currency == code for item in lines),
        has_net=any(item.net is not None and item.net.currency == code for item in lines),
    )


def month_statement(
    creator_id: str, period: Period, dated: Iterable[DatedPayout], currency: str | None = None
) -> Statement:
    """The creator's payouts owed in the month, oldest first, with their totals (`currency`,
    the creator's payout currency, at zero when there is none)."""
    if period.is_year:
        raise PeriodError(f"{period} is a year: its statement is the yearly summary")
    mine = [d for d in dated if d.payout.creator_id == creator_id and period.holds(d.owed_at)]
    lines = tuple(line(d) for d in sorted(mine, key=lambda d: (d.owed_at, d.payout.payout_id)))
    return Statement(creator_id, period, lines, totals(lines, [currency] if currency else []))


def settled_in(period: Period, dated: Iterable[DatedPayout]) -> list[DatedPayout]:
    """The payouts settled in the period (by their latest settlement), as the tax report
    selects them (`PayoutsTransaction.settled_between`), oldest settlement first."""
    paid = [
        d
        for d in dated
        if d.payout.status == "settled" and d.settled_at is not None and period.holds(d.settled_at)
    ]
    return sorted(paid, key=lambda d: (d.settled_at or d.owed_at, d.payout.payout_id))


def year_summary(
    creator_id: str,
    period: Period,
    settled: Sequence[tuple[DatedPayout, FxSnapshot | None]],
    account: PayoutAccount | None,
) -> Statement:
    """What the creator was paid in the year: each payout settled in it (`settled_in`, with
    the snapshot `tax.in_usd` needs), its USD value, and the tax report's own total."""
    if not period.is_year:
        raise PeriodError(f"{period} is a month: the yearly summary is for a year")
    report = tax_report(
        period.year,
        [(d.payout, snapshot) for d, snapshot in settled],
        {} if account is None else {creator_id: account},
    )
    rows = report.us_reportable + report.us_below + report.foreign + report.no_form
    row = next(
        (r for r in rows if r.creator_id == creator_id),
        CreatorTotal(
            creator_id, "none" if account is None else account.tax_form_type, 0, Money.zero(USD)
        ),
    )
    lines = tuple(line(d, _usd(d.payout, snapshot)) for d, snapshot in settled)
    currency = [account.currency] if account is not None else []
    figures = YearFigures(row.payouts, row.paid, row.tax_form, dict(report.unconverted))
    return Statement(creator_id, period, lines, totals(lines, currency), figures)


def _usd(payout: Payout, snapshot: FxSnapshot | None) -> Money | None:
    if payout.kind == "clawback":
        return None
    try:
        return in_usd(payout, snapshot)
    except MoneyError:
        return None


def periods(dated: Iterable[DatedPayout]) -> tuple[list[Period], list[Period]]:
    """The months with payouts owed in them and the years with payouts owed or settled in
    them, newest first."""
    months: set[Period] = set()
    years: set[Period] = set()
    for d in dated:
        months.add(Period(d.owed_at.year, d.owed_at.month))
        years.add(Period(d.owed_at.year))
        if d.settled_at is not None and d.payout.status == "settled":
            years.add(Period(d.settled_at.year))
    return sorted(months, reverse=True), sorted(years, reverse=True)
