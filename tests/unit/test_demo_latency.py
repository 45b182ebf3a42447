"""The demo's post observed -> payout.sent figure: from the post that made the deal's last
confirmation, for fee payouts sent without a hold; and how the summary line reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.contract.events.examples import EXAMPLE_TIME, deliverable_confirmed, payout
from shared.tools.cli.demo_report import post_latency_line
from shared.tools.demo.flow import Observed, post_to_sent

T = EXAMPLE_TIME


def paid(seen: Observed, deal: str, *statuses: str, sent_at: Any) -> None:
    for n, status in enumerate(statuses):
        data = payout(status).model_copy(  # type: ignore[arg-type]
            update={"payout_id": f"po-{deal}", "deal_id": deal}
        )
        seen.payouts[f"po-{deal}"].append((data, sent_at + timedelta(seconds=n)))


def confirmed(seen: Observed, deal: str, at: Any, received: Any, by: str = "auto") -> None:
    data = deliverable_confirmed().model_copy(
        update={
            "deal_id": deal,
            "confirmed_at": at,
            "post_received_at": received,
            "confirmed_by": by,
        }
    )
    seen.confirmations[deal].append((data, at))


def test_measured_from_the_post_of_the_last_confirmation_of_unheld_payouts_only() -> None:
    seen = Observed()
    # The last confirmation's post arrived 0.3 s before the payout was seen sent.
    confirmed(seen, "d-1", T, T - timedelta(seconds=5))
    confirmed(seen, "d-1", T + timedelta(seconds=2), T + timedelta(seconds=1.9))
    paid(seen, "d-1", "sent", sent_at=T + timedelta(seconds=2.2))
    # The brand confirmed last: no post to measure from.
    confirmed(seen, "d-2", T, T)
    confirmed(seen, "d-2", T + timedelta(seconds=1), None, by="brand-user-1")
    paid(seen, "d-2", "sent", sent_at=T + timedelta(seconds=2))
    # Held for a tax form, then sent: its wait is the creator's paperwork, left out.
    confirmed(seen, "d-3", T, T)
    paid(seen, "d-3", "held", "scheduled", "sent", sent_at=T + timedelta(seconds=9))
    # Not one of the demo's deals.
    confirmed(seen, "d-4", T, T)
    paid(seen, "d-4", "sent", sent_at=T + timedelta(seconds=1))
    assert post_to_sent(seen, {"d-1", "d-2", "d-3"}) == [300.0]


def test_the_summary_puts_the_floor_of_the_same_hops_beside_it() -> None:
    class Report:  # the fields of DemoReport the line reads
        post_to_sent_ms = [400.0, 500.0, 900.0]
        floor_ms = [10.0, 20.0, 30.0]
        floor_error = None

    report: Any = Report()
    assert post_latency_line(report) == (
        "post observed → deliverable confirmed → payout.sent over 3 payouts: p50 500 ms, "
        "p99 900 ms\nraw floor of those 3 Kafka hops (bare clients, this run): p50 20.0 ms, "
        "p99 30.0 ms; 25x the floor at p50, 30x at p99"
    )
    report.floor_ms, report.floor_error = [], "KafkaError: refused"
    assert post_latency_line(report).endswith("not measured: KafkaError: refused")
