"""The chaos checks themselves: each flags the failure it is there to catch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.chaos.faults import Fault, Restart
from tests.chaos.observe import Outcome, checks, converged
from tests.chaos.run import RunReport, summary
from tests.chaos.workload import ChaosConfig, PayoutTruth, Workload, generate


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(ChaosConfig(deals=6, profiles=20, match_requests=2), datetime.now(UTC))


def perfect(workload: Workload) -> Outcome:
    """The outcome a correct system reaches for `workload`."""
    attribution = {
        deal: {
            **{name: getattr(t, name) for name in vars(t) if name != "revenue"},
            "currency": t.revenue.currency,
            "revenue": t.revenue.amount,
        }
        for deal, t in workload.attribution.items()
    }
    return Outcome(
        attribution=attribution,
        confirmations=set(workload.confirmations),
        fee_payouts={d: [(f"p-{d}", "sent")] for d in workload.payouts},
        applied={s: set(ids) for s, ids in workload.applied.items()},
        answered=set(workload.match_requests),
        transfers={p.destination: [p.net] for p in workload.payouts.values()},
        dead_letters=[(s, str(n)) for s, ns in workload.dead_letters.items() for n in ns],
    )


def failing(workload: Workload, outcome: Outcome, clean: Outcome | None = None) -> list[str]:
    return [c.name for c in checks(workload, outcome, clean) if not c.ok]


def test_a_correct_outcome_passes_every_check(workload: Workload) -> None:
    outcome = perfect(workload)
    assert converged(workload, outcome)
    assert failing(workload, outcome, perfect(workload)) == []


def test_a_payout_sent_twice_is_a_double_payout(workload: Workload) -> None:
    outcome = perfect(workload)
    payout = next(iter(workload.payouts.values()))
    outcome.transfers[payout.destination].append(payout.net)
    assert failing(workload, outcome) == ["double payouts (provider)"]


def test_a_missing_transfer_is_a_lost_payout(workload: Workload) -> None:
    outcome = perfect(workload)
    del outcome.transfers[next(iter(workload.payouts.values())).destination]
    assert "lost payouts (provider)" in failing(workload, outcome)
    assert not converged(workload, outcome)


def test_attribution_off_by_one_like_differs_from_truth_and_clean_run(
    workload: Workload,
) -> None:
    outcome = perfect(workload)
    outcome.attribution[next(iter(outcome.attribution))]["likes"] += 1
    assert failing(workload, outcome, perfect(workload)) == [
        "attribution ≠ ground truth (deals)",
        "attribution ≠ clean run (deals)",
    ]


def test_an_unapplied_event_and_a_dead_lettered_valid_one_are_flagged(
    workload: Workload,
) -> None:
    outcome = perfect(workload)
    outcome.applied["tracking"].pop()
    outcome.dead_letters.append(("payouts", None))
    assert failing(workload, outcome) == [
        "valid events not applied",
        "dead letters: valid records",
    ]


def test_an_invalid_record_not_dead_lettered_is_flagged(workload: Workload) -> None:
    outcome = perfect(workload)
    outcome.dead_letters.pop()
    assert failing(workload, outcome) == ["dead letters: invalid records (expected)"]


def test_deals_paid_under_the_schedule_they_were_stored_with_pass(workload: Workload) -> None:
    outcome = perfect(workload)
    deal, payout = next(iter(workload.payouts.items()))
    outcome.fee_schedules[deal] = "per_deliverable"
    outcome.fee_payouts[deal] = [("p-1", "sent"), ("p-2", "settled")]
    outcome.transfers[payout.destination] = list(reversed(payout.parts))
    assert converged(workload, outcome)
    assert failing(workload, outcome) == []
    # Its whole fee on top of the parts (a schedule switched under a stored deal) is flagged.
    outcome.transfers[payout.destination].append(payout.net)
    outcome.fee_payouts[deal].append(("p-3", "sent"))
    assert failing(workload, outcome) == [
        "double payouts (provider)",
        "payouts with a wrong amount",
        "deals with fee payout rows ≠ their schedule",
    ]


def test_unbalanced_ledger_is_flagged(workload: Workload) -> None:
    outcome = perfect(workload)
    outcome.ledger_problems = ["transfer t-1 sums to 0.01 USD"]
    assert failing(workload, outcome) == ["ledger"]


def test_a_creator_paid_through_the_fallback_rail_is_paid_not_lost(workload: Workload) -> None:
    outcome = perfect(workload)
    payout = next(p for p in workload.payouts.values() if p.fallback is not None)
    assert payout.fallback is not None
    outcome.transfers[payout.fallback] = outcome.transfers.pop(payout.destination)
    assert converged(workload, outcome)
    assert failing(workload, outcome) == []
    # On both rails: paid twice.
    outcome.transfers[payout.destination] = [payout.net]
    assert failing(workload, outcome) == ["double payouts (provider)"]


def _returned(
    workload: Workload, outcome: Outcome, status: str = "failed", reversals: int = 1
) -> Outcome:
    """`outcome` with the first deal's payout taken back by Stripe, reversed `reversals`
    times in the ledger, its payout left `status`."""
    deal = next(iter(workload.payouts))
    [(payout_id, _)] = outcome.fee_payouts[deal]
    outcome.fee_payouts[deal] = [(payout_id, status)]
    outcome.returns = {("stripe", "tr_1")}
    if reversals:
        outcome.reversals = {("stripe", "tr_1"): (payout_id, status, reversals)}
    return outcome


def test_a_return_reversed_once_passes(workload: Workload) -> None:
    outcome = _returned(workload, perfect(workload))
    assert converged(workload, outcome)
    assert failing(workload, outcome) == []


def test_a_return_not_reversed_is_flagged_and_not_converged(workload: Workload) -> None:
    outcome = _returned(workload, perfect(workload), reversals=0)
    assert not converged(workload, outcome)
    assert failing(workload, outcome) == [
        "fee payouts not sent",
        "returns not reversed exactly once (rails vs ledger)",
    ]


def test_a_return_reversed_twice_or_undone_by_a_late_paid_webhook_is_flagged(
    workload: Workload,
) -> None:
    twice = _returned(workload, perfect(workload), reversals=2)
    assert failing(workload, twice) == ["returns not reversed exactly once (rails vs ledger)"]
    undone = _returned(workload, perfect(workload), status="settled")
    assert failing(workload, undone) == ["returns not reversed exactly once (rails vs ledger)"]


def test_a_reversal_the_rails_never_asked_for_is_flagged(workload: Workload) -> None:
    outcome = _returned(workload, perfect(workload))
    outcome.returns = set()
    assert failing(workload, outcome) == ["returns not reversed exactly once (rails vs ledger)"]


def test_a_webhook_replay_taken_is_flagged(workload: Workload) -> None:
    outcome = perfect(workload)
    outcome.webhook_replays, outcome.webhook_replays_refused = 4, 3
    assert failing(workload, outcome) == ["webhooks replayed 301 s old and taken"]


def test_a_negative_escrow_is_flagged_on_its_own_and_by_the_ledger(workload: Workload) -> None:
    outcome = perfect(workload)
    outcome.ledger_problems = [
        "escrow of brand brand-chaos: -10.00 USD, negative (drawn beyond its fundings)"
    ]
    assert failing(workload, outcome) == ["brands' escrow negative", "ledger"]


def test_restarts_overlapping_a_server_outage_are_told_apart() -> None:
    report = RunReport("chaos", Outcome())
    report.faults = [
        Fault("kill -9 payouts-1", 10.0, 10.0),  # the kill itself is no outage
        Fault("PostgreSQL down 10.0 s", 20.0, 30.0),
        Fault("Redis flushed and restarted", 40.0, 42.0),  # payouts goes on without Redis
        Fault("one broker down 30.0 s", 50.0, 80.0, "kafka-2"),
    ]
    report.restarts = [
        Restart("payouts-1", 10.0, 2.0),
        Restart("tracking-1", 18.0, 13.0),  # ready once PostgreSQL was back
        Restart("matching-1", 41.0, 3.0),
        Restart("payouts-1", 79.0, 4.0),  # began while the broker was still down
    ]
    # A second instance asked for during the outage: its first start is no restart.
    report.additions = [Restart("payouts-2", 22.0, 9.0)]
    rows = summary(report)
    assert rows["restarts → ready"] == "4, median 3.5 s, max 13.0 s"
    assert rows["instances added → ready"] == "1, median 9.0 s, max 9.0 s"
    assert rows["  of them with every server up"] == "2, median 2.5 s, max 3.0 s"


@pytest.fixture(scope="module")
def amended_workload() -> Workload:
    """A workload where every deal's fee is amended (version 2)."""
    config = ChaosConfig(deals=6, profiles=20, match_requests=2, amended_share=1.0)
    return generate(config, datetime.now(UTC))


def _first_amended(workload: Workload) -> tuple[str, PayoutTruth]:
    deal, truth = next(iter(workload.payouts.items()))
    assert truth.amended and truth.amended_net is not None
    return deal, truth


def test_an_amended_deal_may_pay_either_version_or_a_mix_of_them(
    amended_workload: Workload,
) -> None:
    workload = amended_workload
    deal, truth = _first_amended(workload)
    outcome = perfect(workload)
    assert truth.amended_net is not None
    outcome.transfers[truth.destination] = [truth.amended_net]
    assert failing(workload, outcome, perfect(workload)) == []
    # Per deliverable: the first fee's share, then what is left of the amended fee.
    outcome.fee_schedules[deal] = "per_deliverable"
    outcome.fee_payouts[deal] = [("p-1", "sent"), ("p-2", "sent")]
    for paid in (truth.parts, truth.amended_parts, *truth.mixed):
        outcome.transfers[truth.destination] = list(paid)
        assert converged(workload, outcome)
        assert failing(workload, outcome, perfect(workload)) == []
    # Halves of two versions add up to neither fee: wrong.
    outcome.transfers[truth.destination] = [truth.parts[0], truth.amended_parts[1]]
    assert failing(workload, outcome) == [
        "payouts with a wrong amount",
        "amended deals paid within their versions",
    ]


def test_an_amended_deal_paid_both_versions_is_a_double_payout(
    amended_workload: Workload,
) -> None:
    workload = amended_workload
    _, truth = _first_amended(workload)
    outcome = perfect(workload)
    assert truth.amended_net is not None
    outcome.transfers[truth.destination].append(truth.amended_net)
    assert failing(workload, outcome) == [
        "double payouts (provider)",
        "payouts with a wrong amount",
        "amended deals paid within their versions",
    ]


def test_an_amended_deal_paid_neither_version_is_wrong_here_and_in_the_clean_run(
    amended_workload: Workload,
) -> None:
    workload = amended_workload
    _, truth = _first_amended(workload)
    neither = perfect(workload)
    neither.transfers[truth.destination] = [truth.net + truth.net]
    assert failing(workload, neither) == [
        "payouts with a wrong amount",
        "amended deals paid within their versions",
    ]
    # The clean run is held to the same versions, not compared with the chaos run.
    assert failing(workload, perfect(workload), neither) == [
        "amended deals paid outside their versions (clean run)"
    ]
    other_version = perfect(workload)
    assert truth.amended_net is not None
    other_version.transfers[truth.destination] = [truth.amended_net]
    assert failing(workload, perfect(workload), other_version) == []


def test_an_amended_deal_not_paid_is_lost(amended_workload: Workload) -> None:
    workload = amended_workload
    _, truth = _first_amended(workload)
    outcome = perfect(workload)
    del outcome.transfers[truth.destination]
    assert failing(workload, outcome) == [
        "lost payouts (provider)",
        "amended deals paid within their versions",
    ]
    assert not converged(workload, outcome)
