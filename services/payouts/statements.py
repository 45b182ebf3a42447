"""Creators' statements read from the store, as of one snapshot: a month's payouts, or the
yearly summary the tax report gives (`domain/statements.py`). Read-only."""

from __future__ import annotations

from services.payouts.domain.statements import (
    Period,
    Statement,
    month_statement,
    periods,
    settled_in,
    year_summary,
)
from services.payouts.reports import snapshot_for_usd
from services.payouts.store.port import PayoutsStore


async def creator_statement(db: PayoutsStore, creator_id: str, period: Period) -> Statement:
    """The creator's statement for a month, or their yearly summary for a year."""
    async with db.snapshot() as repo:
        dated = await repo.dated_payouts_of(creator_id)
        account = (await repo.accounts([creator_id])).get(creator_id)
        if not period.is_year:
            currency = None if account is None else account.currency
            return month_statement(creator_id, period, dated, currency)
        valued = [(d, await snapshot_for_usd(repo, d.payout)) for d in settled_in(period, dated)]
    return year_summary(creator_id, period, valued, account)


async def statement_periods(db: PayoutsStore, creator_id: str) -> tuple[list[Period], list[Period]]:
    """The months and the years the creator has statements for, newest first."""
    async with db.snapshot() as repo:
        return periods(await repo.dated_payouts_of(creator_id))
