"""A statement (`domain/statements.py`) as the files a creator downloads: CSV and PDF.

CSV is RFC 4180 (a header row, CRLF line ends, fields quoted when they hold a comma, a quote or
a line break), one row per payout and then one `total` row per currency. Deal ids, milestones
and references come from brands and rails: a text cell that a spreadsheet would read as a
formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`, so it
is shown, never evaluated. Our own amounts are plain decimals (`-4.00` for a clawback) and stay
numbers.

Amounts are exact: each `Money` is printed with its currency's ISO 4217 exponent (`1200 JPY`,
`89.10 EUR`, `1.250 KWD`). The PDF (fpdf2, its built-in Helvetica) is a plain landscape table
with the totals under it. Helvetica covers Latin-1 only: any other character (a deal named in
Japanese or Arabic) is written as its Python escape (`\\u6771`), so nothing is lost, and a
line under the totals says so; the CSV (UTF-8) and the page show such names as written.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from services.payouts.domain.statements import Line, Statement, Totals
from shared.contract.money import Money, shown_rate

if TYPE_CHECKING:
    from fpdf import FPDF

COLUMNS: Final = (
    "date",
    "paid_on",
    "payout_id",
    "deal",
    "kind",
    "milestone",
    "status",
    "gross",
    "gross_currency",
    "fx_rate",
    "platform_fee",
    "recovered",
    "net",
    "net_currency",
    "paid",
    "rail",
    "reference",
)
YEAR_COLUMNS: Final = (*COLUMNS, "paid_usd")
TOTAL: Final = "total"
TOTAL_USD: Final = "total_usd"
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_NUMBER: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it without evaluating it: a leading `'` before what would
    start a formula; a plain decimal number is left as it is."""
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def amount(money: Money | None) -> str:
    """The amount with exactly its currency's minor-unit digits; '' for none."""
    return "" if money is None else f"{money.amount:f}"


def money_text(money: Money | None) -> str:
    return "" if money is None else f"{amount(money)} {money.currency}"


def day(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).date().isoformat()


def _rate(rate: Decimal | None) -> str:
    return "" if rate is None else shown_rate(rate)


def _line_row(item: Line, yearly: bool) -> list[str]:
    row = [
        day(item.date),
        day(item.paid_on),
        item.payout_id,
        item.deal_id,
        item.kind,
        item.milestone,
        item.status,
        amount(item.gross),
        item.gross.currency,
        _rate(item.fx_rate),
        amount(item.platform_fee),
        amount(item.recovered),
        amount(item.net),
        "" if item.net is None else item.net.currency,
        amount(item.paid),
        item.rail or "",
        item.reference or "",
    ]
    return [*row, amount(item.usd)] if yearly else row


def _total_rows(totals: Sequence[Totals], yearly: bool) -> list[list[str]]:
    """One `total` row per currency; a statement with no currency at all gets one of zeros."""
    where = {name: i for i, name in enumerate(COLUMNS)}
    rows = []
    for t in totals:
        row = [""] * len(COLUMNS)
        row[where["kind"]] = TOTAL
        row[where["gross_currency"]] = row[where["net_currency"]] = t.currency
        for column, value in zip(("gross", "platform_fee", "net", "paid"), t.shown(), strict=True):
            row[where[column]] = amount(value)
        rows.append(row)
    if not rows:
        zeros = [""] * len(COLUMNS)
        zeros[where["kind"]] = TOTAL
        for column in ("gross", "platform_fee", "net", "paid"):
            zeros[where[column]] = "0"
        rows.append(zeros)
    return [[*row, ""] for row in rows] if yearly else rows


def statement_csv(statement: Statement) -> str:
    """The statement as RFC 4180 CSV text."""
    yearly = statement.year is not None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(YEAR_COLUMNS if yearly else COLUMNS)
    rows = [_line_row(item, yearly) for item in statement.lines]
    rows += _total_rows(statement.totals, yearly)
    if statement.year is not None:
        usd = [""] * len(YEAR_COLUMNS)
        usd[COLUMNS.index("kind")] = TOTAL_USD
        usd[-1] = amount(statement.year.paid_usd)
        rows.append(usd)
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def title(statement: Statement) -> str:
    if statement.year is not None:
        return f"Earnings summary for {statement.period.label}"
    return f"Statement for {statement.period.label}"


def file_name(statement: Statement, extension: str) -> str:
    return f"creatorflow-statement-{statement.period}.{extension}"


# Relative widths of the PDF's columns (fpdf2 scales them to the page).
_PDF_COLUMNS: Final = (
    ("Owed on", 17),
    ("Paid on", 17),
    ("Deal", 34),
    ("Kind", 22),
    ("Status", 15),
    ("Gross", 24),
    ("FX rate", 17),
    ("Fee", 21),
    ("Net", 24),
    ("Paid", 24),
    ("Rail", 13),
    ("Reference", 30),
)


def statement_pdf(statement: Statement, *, compress: bool = True) -> bytes:
    """The statement as a PDF: a title, the payouts' table, the totals per currency and, for a
    yearly summary, the USD total the tax report gives."""
    # Imported here: fpdf2 takes half a second to import, which every payouts process and
    # command would pay at start for a file only the creator page makes.
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_title(title(statement))
    pdf.set_lang("en")
    pdf.set_subject(f"Creator {statement.creator_id}, {statement.period.label}")
    pdf.set_creator("CreatorFlow")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=14)
    _text(pdf, title(statement))
    pdf.set_font("Helvetica", size=9)
    _text(
        pdf,
        f"Creator {statement.creator_id}. Gross and fees are in the deal's currency, net and "
        "paid in yours; each amount exactly, to its currency's smallest unit. Dates are UTC.",
    )
    pdf.ln(2)
    rows = [_cells(item, statement) for item in statement.lines]
    _payouts_table(pdf, statement, rows)
    pdf.ln(4)
    _totals_table(pdf, statement)
    if any(_escaped(text) for text in [statement.creator_id, *(c for r in rows for c in r)]):
        pdf.ln(2)
        _text(
            pdf,
            "Characters this file's font cannot show are written as codes such as \\u6771; "
            "the CSV statement and your payout page show them as written.",
        )
    if statement.year is not None:
        figures = statement.year
        pdf.ln(3)
        _text(
            pdf,
            f"Paid in {statement.period.label}, in USD at the rate recorded with each payout: "
            f"{money_text(figures.paid_usd)} over {figures.payouts} payout(s). Tax form on "
            f"file: {figures.tax_form}.",
        )
        if figures.unconverted:
            _text(pdf, f"{len(figures.unconverted)} payout(s) could not be valued in USD yet.")
    return bytes(pdf.output())


def _text(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, 6, _latin1(text), new_x="LMARGIN", new_y="NEXT")


def _latin1(text: str) -> str:
    """`text` in the PDF font's Latin-1, any other character as its escape (never lost)."""
    return text.encode("latin-1", "backslashreplace").decode("latin-1")


def _escaped(text: str) -> bool:
    return _latin1(text) != text


def _payouts_table(pdf: FPDF, statement: Statement, rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        _text(pdf, "No payouts in this period.")
        return
    columns = list(_PDF_COLUMNS) + ([("USD", 20)] if statement.year is not None else [])
    pdf.set_font("Helvetica", size=7)
    with pdf.table(col_widths=tuple(w for _, w in columns), text_align="LEFT") as table:
        heading = table.row()
        for name, _ in columns:
            heading.cell(name)
        for cells in rows:
            row = table.row()
            for cell in cells:
                row.cell(_latin1(cell))


def _cells(item: Line, statement: Statement) -> list[str]:
    """One payout's row of the PDF's table."""
    kind = item.kind + (f" ({item.milestone})" if item.milestone else "")
    cells = [
        day(item.date),
        day(item.paid_on),
        item.deal_id,
        kind,
        item.status,
        money_text(item.gross),
        _rate(item.fx_rate),
        money_text(item.platform_fee),
        money_text(item.net),
        money_text(item.paid),
        item.rail or "",
        item.reference or "",
    ]
    if statement.year is not None:
        cells.append(money_text(item.usd))
    return cells


def _totals_table(pdf: FPDF, statement: Statement) -> None:
    pdf.set_font("Helvetica", style="B", size=10)
    _text(pdf, "Totals")
    pdf.set_font("Helvetica", size=9)
    totals = statement.totals
    if not totals:
        _text(pdf, "Gross 0, fees 0, net 0, paid 0.")
        return
    with pdf.table(col_widths=(14, 30, 30, 30, 30), width=160, text_align="LEFT") as table:
        heading = table.row()
        for name in ("Currency", "Gross", "Fees", "Net", "Paid"):
            heading.cell(name)
        for t in totals:
            row = table.row()
            for cell in (t.currency, *(money_text(m) for m in t.shown())):
                row.cell(cell)
