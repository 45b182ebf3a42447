"""`creatorflow payouts statement <creator_id>`, `brand-statement <brand_id>`,
`retry <payout_id>`, `tax-report --year Y`, `ledger-check`, `new-key` and `rotate-key`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Final, TypeVar

import typer
from pydantic import ValidationError
from rich.table import Table

from services.payouts import brands_cli, creators_cli
from services.payouts.destinations import DestinationCipher, UnreadableDestination, new_key
from services.payouts.dispatcher import utc_now
from services.payouts.domain.amounts import FxRecord
from services.payouts.domain.lifecycle import InvalidTransition, Payout
from services.payouts.domain.statements import Period, PeriodError
from services.payouts.domain.tax import USD, CreatorTotal, TaxReport
from services.payouts.handlers import (
    PayoutNotFound,
    PayoutPolicy,
    payout_transaction,
    retry_payout,
)
from services.payouts.key_rotation import RotationProgress, rotate_destination_key
from services.payouts.reports import (
    BrandStatement,
    LedgerReport,
    Statement,
    brand_statement,
    check_ledger,
    statement,
    tax_totals,
)
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from services.payouts.statement_files import statement_csv
from services.payouts.statements import creator_statement
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.money import Money, MoneyError, shown_rate
from shared.runtime.config import settings_problems
from shared.tools.cli.console import console, fail
from shared.tools.cli.database import on_database

COMMAND_NAME: Final = "payouts"

app = typer.Typer(
    help="Creator payouts: statements, retries and ledger checks.", no_args_is_help=True
)
COMMAND_GROUPS: Final = {
    COMMAND_NAME: app,
    creators_cli.COMMAND_NAME: creators_cli.app,
    brands_cli.COMMAND_NAME: brands_cli.app,
}

T = TypeVar("T")


def _run(query: Callable[[PostgresPayoutsStore], Awaitable[T]]) -> T:
    return on_database(SCHEMA.name, lambda pool: query(PostgresPayoutsStore(pool)))


@app.command("statement")
def statement_command(
    creator_id: str,
    output: str = typer.Option(
        "table",
        "--format",
        help="table, or csv: the creator's own statement for --period, as their page gives it.",
    ),
    period: str | None = typer.Option(
        None, "--period", help="With --format csv: a month (2026-11) or a year (2026)."
    ),
) -> None:
    """Print a creator's payouts (commission adjustments and clawbacks among them) and the
    balances the ledger derives for them; or, with --format csv, the statement of a month or
    the yearly earnings summary the creator downloads from their page."""
    if output == "csv":
        _statement_csv(creator_id, period)
        return
    if output != "table":
        fail(f"--format {output!r} is not known", hint="table or csv")
    if period is not None:
        fail("--period chooses the csv statement's month or year", hint="add --format csv")
    result: Statement = _run(lambda db: statement(db, creator_id))
    if not result.payouts:
        if not result.has_account:
            fail(
                f"payouts knows no creator {creator_id!r}: no payout account and no payouts",
                hint="ids are case-sensitive; a creator becomes known with their "
                "creator.payout-account.upserted or their first payout",
            )
        console.print(f"No payouts for creator {creator_id} yet.")
        return
    console.print(_payouts_table(creator_id, result))
    if not result.balances:
        # An empty table would read as nothing owed.
        console.print(
            "Balances (from ledger postings): none yet. Nothing was drawn from a brand's "
            "escrow for these payouts: one waiting for funds is posted once the brand funds it."
        )
    else:
        totals = Table(title="Balances (from ledger postings)")
        totals.add_column("balance")
        totals.add_column("amount", justify="right")
        for (label, currency), amount in result.balances.items():
            totals.add_row(label, f"{amount:f} {currency}")
        console.print(totals)
    if result.attempts:
        attempts = Table(title="Attempts of failed or retried payouts (from ledger transfers)")
        for column in ("payout", "attempt", "step", "amount"):
            attempts.add_column(
                column, justify="right" if column == "amount" else "left", overflow="fold"
            )
        for step in result.attempts:
            attempts.add_row(step.payout_id, str(step.attempt), step.step, str(step.amount))
        console.print(attempts)


def _statement_csv(creator_id: str, period: str | None) -> None:
    if period is None:
        fail("--format csv needs --period", hint="a month (2026-11) or a year (2026)")
    try:
        wanted = Period.parse(period)
    except PeriodError as error:
        fail(f"--period: {error}")
    result = _run(lambda db: creator_statement(db, creator_id, wanted))
    sys.stdout.write(statement_csv(result))


def _rate_cell(fx: FxRecord) -> str:
    """The rate with its source and the time of its snapshot (UTC): what converted the net."""
    at = "" if fx.as_of is None else f" {fx.as_of.astimezone(UTC):%Y-%m-%d %H:%M}"
    return f"{shown_rate(fx.rate)} {fx.source}{at}"


def _payouts_table(creator_id: str, result: Statement) -> Table:
    """One row per payout: its amounts, status (held with its code) and rail."""
    table = Table(title=f"Payouts of {creator_id}")
    money = {"gross", "platform fee", "repaid", "net", "rate"}
    columns = (
        "payout",
        "deal",
        "kind",
        "status",
        "rail",
        "gross",
        "platform fee",
        "repaid",
        "net",
        "rate",
    )
    for column in columns:
        # Folded, never cut: the payout id is what `payouts retry` needs.
        table.add_column(column, justify="right" if column in money else "left", overflow="fold")
    table.add_column("reference / reason", overflow="fold")
    for p in result.payouts:
        kind = p.kind + (f" ({p.milestone})" if p.milestone else "")
        rate = "" if p.fx is None else _rate_cell(p.fx)
        # The rail's reference and, beside it, why the payout failed or waits.
        reason = p.hold.reason if p.hold else p.failure_reason
        note = "; ".join(part for part in (p.provider_ref, reason) if part)
        # A clawback takes commission back: its amounts are shown negative, and it has no
        # transfer status of its own.
        taken = p.kind == "clawback"
        status: str = "clawed back" if taken else p.status
        if p.status == "held" and p.hold is not None:
            status = f"held: {p.hold.code}"  # e.g. held: rail_unavailable
        table.add_row(
            p.payout_id,
            p.deal_id,
            kind,
            status,
            p.rail or "",
            str(-p.gross if taken else p.gross),
            str(-p.platform_fee if taken else p.platform_fee),
            "" if p.recovered is None else str(p.recovered),
            "" if p.net is None else str(p.net),
            rate,
            note,
        )
    return table


@app.command("brand-statement")
def brand_statement_command(brand_id: str) -> None:
    """Print a brand's fundings, the payouts drawn on its escrow (and those waiting for funds)
    and its escrow per currency."""
    result: BrandStatement = _run(lambda db: brand_statement(db, brand_id))
    if not result.fundings and not result.payouts:
        if not result.known:
            fail(
                f"payouts knows no brand {brand_id!r}: no deals, fundings or payouts",
                hint="ids are case-sensitive; a brand becomes known with its first "
                "deal.signed or brand.funded",
            )
        console.print(f"No fundings or payouts for brand {brand_id} yet.")
        return
    fundings = Table(title=f"Fundings of {brand_id}")
    for column in ("funding", "funded at", "amount"):
        fundings.add_column(column, justify="right" if column == "amount" else "left")
    for funding in result.fundings:
        fundings.add_row(funding.funding_id, funding.funded_at.isoformat(), str(funding.amount))
    console.print(fundings)
    drawn = Table(title=f"Payouts of {brand_id} on its escrow")
    for column in ("payout", "deal", "creator", "kind", "status", "drawn"):
        drawn.add_column(column, justify="right" if column == "drawn" else "left")
    for p in result.payouts:
        status = f"held: {p.hold.code}" if p.status == "held" and p.hold else p.status
        waiting = p.status == "held" and p.hold is not None and p.hold.code == "awaiting_funds"
        amount = "" if waiting else str(-p.gross if p.kind == "clawback" else p.gross)
        kind = "clawback (returned)" if p.kind == "clawback" else p.kind
        drawn.add_row(p.payout_id, p.deal_id, p.creator_id, kind, status, amount)
    console.print(drawn)
    totals = Table(title="Escrow per currency (from ledger postings)")
    for column in ("currency", "funded", "drawn", "returned", "balance"):
        totals.add_column(column, justify="left" if column == "currency" else "right")
    for currency, t in result.totals.items():
        totals.add_row(
            currency,
            f"{t.funded.amount:f}",
            f"{t.drawn.amount:f}",
            f"{t.returned.amount:f}",
            f"{t.balance.amount:f}",
        )
    console.print(totals)


@app.command("retry")
def retry_command(payout_id: str) -> None:
    """Send a failed (or returned) payout again, as a new attempt with its own idempotency
    key; the running payouts service sends it within a second."""

    async def retry(db: PostgresPayoutsStore) -> Payout | str:
        now = utc_now()
        try:
            async with payout_transaction(db, PayoutPolicy(), now) as changes:
                # A retry applies no setting of the service: the default policy will do.
                retried = await retry_payout(changes, payout_id)
        except PayoutNotFound:
            return f"no payout {payout_id!r}"
        except InvalidTransition as refused:
            return str(refused)
        return retried

    outcome = _run(retry)
    if isinstance(outcome, str):
        fail(outcome, hint="creatorflow payouts statement <creator_id> lists a creator's payouts")
    if outcome.status == "held" and outcome.hold is not None:
        console.print(f"payout {payout_id} attempt {outcome.chapter}: held, {outcome.hold.reason}")
        return
    # Whether its rail is configured is the service's to say, at dispatch: the outcome is in
    # the statement.
    console.print(
        f"payout {payout_id} attempt {outcome.chapter}: scheduled; the running payouts service "
        "sends it within a second (`creatorflow payouts statement "
        f"{outcome.creator_id}` shows how it went)"
    )


@app.command("tax-report")
def tax_report_command(
    year: int = typer.Option(..., "--year", help="Calendar year (UTC) the payouts settled in."),
    threshold: str = typer.Option(
        "600",
        "--threshold",
        envvar="PAYOUTS_TAX_1099_THRESHOLD_USD",
        help="USD paid in the year from which a US creator (W-9) gets a 1099-NEC.",
    ),
) -> None:
    """Yearly totals paid per creator in USD: US creators (W-9) at or above the threshold for
    1099-NEC, and W-8BEN / W-8BEN-E (foreign) creators apart."""
    try:
        floor = Money.of(threshold, USD)
    except MoneyError as error:
        fail(f"--threshold {threshold!r} is no amount of USD: {error}", hint="e.g. 600")
    if floor.is_negative():
        fail(f"--threshold {threshold!r} is negative", hint="e.g. 600")
    report: TaxReport = _run(lambda db: tax_totals(db, year, floor))
    _totals(f"1099-NEC {year}: US creators (W-9) paid {floor} or more", report.us_reportable)
    _totals(f"W-8BEN / W-8BEN-E {year}: foreign creators", report.foreign)
    _totals(f"{year}: paid, but no accepted tax form on file now", report.no_form)
    _totals(f"{year}: US creators (W-9) paid less than {floor}, no 1099-NEC", report.us_below)
    if report.unconverted:
        for payout_id, why in sorted(report.unconverted.items()):
            console.print(f"[red]x[/] {payout_id}: {why}")
        fail(f"{len(report.unconverted)} payout(s) could not be valued in USD: totals are short")


def _totals(title: str, rows: list[CreatorTotal]) -> None:
    if not rows:
        console.print(f"{title}: none.")
        return
    table = Table(title=title)
    for column in ("creator", "tax form", "payouts", "paid (USD)"):
        table.add_column(column, justify="right" if column in ("payouts", "paid (USD)") else "left")
    for row in rows:
        table.add_row(row.creator_id, row.tax_form, str(row.payouts), f"{row.paid.amount:f}")
    console.print(table)


@app.command("ledger-check")
def ledger_check_command() -> None:
    """Verify the ledger invariants; exit 1 if any is broken."""
    report: LedgerReport = _run(check_ledger)
    console.print(
        f"{report.payouts} payouts, {report.transfers} transfers, {report.postings} postings."
    )
    if report.problems:
        for problem in report.problems:
            console.print(f"[red]x[/] {problem}")
        fail(f"{len(report.problems)} ledger invariant(s) broken")
    console.print(
        "[green]ok[/] every transfer sums to zero per currency; each payout's postings match "
        "its status; no brand's escrow is negative."
    )


@app.command("new-key")
def new_key_command() -> None:
    """Print a fresh random PAYOUTS_DESTINATION_KEY (keep it in your secret store)."""
    console.print(new_key(), highlight=False, soft_wrap=True)


@app.command("rotate-key")
def rotate_key_command(
    batch: int = typer.Option(500, min=1, max=10_000, help="destinations per transaction"),
) -> None:
    """Re-encrypt every stored payout destination with PAYOUTS_DESTINATION_KEY, in batches,
    while the service runs; the key rotated away from must be PAYOUTS_DESTINATION_KEY_PREVIOUS
    (in the service too) until this has finished."""
    try:
        settings = PayoutsSettings()
    except ValidationError as error:
        fail(f"invalid payouts settings: {settings_problems(error)}")
    cipher = DestinationCipher.from_setting(
        settings.destination_key, settings.destination_key_previous
    )

    def report(step: RotationProgress) -> None:
        console.print(f"re-encrypted {step.resealed}, {step.left} left", highlight=False)

    try:
        total = _run(lambda db: rotate_destination_key(db, cipher, batch=batch, progress=report))
    except UnreadableDestination as error:
        fail(str(error))
    console.print(
        f"[green]ok[/] every payout destination is sealed with key {cipher.key_id.hex()} "
        f"({total} re-encrypted); PAYOUTS_DESTINATION_KEY_PREVIOUS can be removed once every "
        "payouts instance runs with this PAYOUTS_DESTINATION_KEY (restart any that does not: "
        "it cannot open a destination sealed with it)."
    )
