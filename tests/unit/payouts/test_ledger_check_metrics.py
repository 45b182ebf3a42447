"""The periodic ledger check exports what `creatorflow payouts ledger-check` finds: the
`creatorflow_ledger_check_problems` gauge and `creatorflow_ledger_checks_total{result}`."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.payouts.schedules import LedgerCheck
from services.payouts.store.memory import MemoryPayoutsStore
from tests.support.metrics import LabelledCounter
from tests.unit.payouts.builders import account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

CHECKS = LabelledCounter("creatorflow_ledger_checks_total", "result", ("ok", "failed", "error"))
checks, grown = CHECKS.read, CHECKS.grown


def problems() -> float | None:
    return REGISTRY.get_sample_value("creatorflow_ledger_check_problems")


async def test_a_sound_ledger_reads_zero_and_a_broken_one_its_problems() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(
        fx({"EUR": "0.9215"}),
        account(creator),
        deal_signed(deal, creator),
        confirmed(deal, "dl-1"),
        confirmed(deal, "dl-2"),
    )
    await h.dispatch_all()
    check = LedgerCheck(h.db, interval_seconds=60)
    before = checks()
    report = await check.run_once()
    assert report is not None and report.transfers > 0 and report.problems == []
    assert problems() == 0 and grown(before) == {"ok": 1}
    # A sent payout whose transfers vanished: its postings no longer match its status.
    h.db.state.transfers.pop()
    report = await check.run_once()
    assert report is not None and report.problems
    assert problems() == len(report.problems) and grown(before) == {"ok": 1, "failed": 1}


async def test_a_check_that_cannot_run_is_counted_and_does_not_raise() -> None:
    class Unreachable(MemoryPayoutsStore):
        def snapshot(self):  # type: ignore[no-untyped-def,override]
            raise ConnectionError("database down")

    before = checks()
    assert await LedgerCheck(Unreachable(), interval_seconds=60).run_once() is None
    assert grown(before) == {"error": 1}
