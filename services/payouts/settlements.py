"""The rails' word on transfers already sent, whether polled (schedules.SettlementPoller) or
pushed (webhooks): one code path, so a report counts the same from either, in any order and
any number of times (lifecycle.reported)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.payouts.domain import lifecycle
from services.payouts.domain.lifecycle import PayoutStatus, SettlementReport, Transition
from services.payouts.handlers import PendingChanges


@dataclass(frozen=True)
class RailReport:
    """A rail says its transfer `provider_ref` of payout `payout_id` settled or failed."""

    payout_id: str
    provider_ref: str
    state: SettlementReport
    reason: str


async def apply_reports(changes: PendingChanges, reports: Sequence[RailReport]) -> int:
    """Apply the reports inside the transaction of `changes` (payouts locked); a report on another
    transfer than the payout's current one (an earlier attempt's) changes nothing. Returns the
    number of payouts changed."""
    by_payout = {r.payout_id: r for r in reports}
    transitions: list[tuple[Transition, PayoutStatus]] = []
    for payout in await changes.repo.payouts_for_update(sorted(by_payout)):
        report = by_payout[payout.payout_id]
        if payout.provider_ref != report.provider_ref:
            continue
        transition = lifecycle.reported(payout, report.state, report.reason)
        if transition is not None:
            transitions.append((transition, payout.status))
    await changes.changed(transitions)
    return len(transitions)
