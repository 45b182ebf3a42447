"""What a run ended with, read from where it is kept (PostgreSQL, the payment provider's own
records, the dead-letter topics), and how it compares with the workload's truth."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.payouts.reports import check_ledger
from services.payouts.schema import SCHEMA as PAYOUTS
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.events import TOPICS, dlq_topic
from shared.contract.money import Money
from shared.runtime.db import create_pool
from shared.runtime.kafka import partitions_of
from shared.tools.demo.scenario import DealTruth
from tests.chaos.rails import ChaosRails
from tests.chaos.workload import INVALID_HEADER, Workload

# tracking_attribution without its timestamps: what a clean run must reproduce exactly.
_ATTRIBUTION = """
SELECT deal_id, posts, likes, comments, shares, saves, views, impressions, reach, rate_sum,
       rated_posts, orders, pending_fx_orders, currency, revenue, spend, engagement_rate, cpm,
       cpe, cpa, roas, roi_pct
FROM tracking_attribution
"""
# Every count the truth keeps; its revenue, a Money, is compared apart.
_TRUTH_FIELDS = tuple(f.name for f in fields(DealTruth) if f.name != "revenue")


@dataclass
class Outcome:
    """One run's end state."""

    attribution: dict[str, dict[str, Any]] = field(default_factory=dict)
    confirmations: set[tuple[str, str]] = field(default_factory=set)
    fee_payouts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # deal -> status
    fee_schedules: dict[str, str] = field(
        default_factory=dict
    )  # deal -> schedule it was stored with
    applied: dict[str, set[str]] = field(default_factory=dict)  # consumer -> event ids
    answered: set[str] = field(default_factory=set)
    ledger_problems: list[str] = field(default_factory=list)
    ledger_transfers: int = 0
    transfers: dict[str, list[Money]] = field(default_factory=dict)  # destination -> amounts
    provider_requests: int = 0
    # Transfers the rails took back after paying them: (rail, transfer), from the rails.
    returns: set[tuple[str, str]] = field(default_factory=set)
    # Payouts with a return in the ledger: (rail, transfer) -> (payout, status, returns).
    reversals: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    webhook_replays: int = 0
    webhook_replays_refused: int = 0
    dead_letters: list[tuple[str, str | None]] = field(default_factory=list)  # service, invalid


# A fee payout returned by its rail (failed, with a return in the ledger) was paid once too.
_PROGRESS = """
SELECT (SELECT count(*) FROM payouts_payouts p
        WHERE kind = 'fee' AND (status IN ('sent', 'settled') OR (status = 'failed' AND EXISTS (
            SELECT 1 FROM payouts_transfers t
            WHERE t.payout_id = p.payout_id AND t.kind = 'return')))) AS paid,
       (SELECT count(*) FROM tracking_confirmations) AS confirmed
"""
_REVERSALS = """
SELECT p.payout_id, p.rail, p.provider_ref, p.status, count(*) AS returns
FROM payouts_payouts p JOIN payouts_transfers t ON t.payout_id = p.payout_id
WHERE t.kind = 'return'
GROUP BY p.payout_id, p.rail, p.provider_ref, p.status
"""


# The observer reads every service's tables: each is prefixed with its service's name, so one
# search path over the three schemas finds them. The runtime's tables exist in each schema and
# are named with their schema.
_EVERY_SCHEMA = {"search_path": "tracking, payouts, matching"}
_APPLIED = " UNION ALL ".join(
    f"SELECT consumer, event_id FROM {schema}.processed_events"
    for schema in ("matching", "tracking", "payouts")
)


async def progress(database_url: str) -> tuple[int, int]:
    """Cheap counts to watch while waiting: fee payouts sent, deliverables confirmed."""
    conn = await asyncpg.connect(database_url, server_settings=_EVERY_SCHEMA)
    try:
        row = await conn.fetchrow(_PROGRESS)
    finally:
        await conn.close()
    assert row is not None
    return int(row["paid"]), int(row["confirmed"])


async def read_database(database_url: str, outcome: Outcome) -> None:
    conn = await asyncpg.connect(database_url, server_settings=_EVERY_SCHEMA)
    try:
        outcome.attribution = {r["deal_id"]: dict(r) for r in await conn.fetch(_ATTRIBUTION)}
        outcome.confirmations = {
            (r["deal_id"], r["deliverable_id"])
            for r in await conn.fetch("SELECT deal_id, deliverable_id FROM tracking_confirmations")
        }
        payouts: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for r in await conn.fetch(
            "SELECT deal_id, payout_id, status FROM payouts_payouts WHERE kind = 'fee'"
        ):
            payouts[r["deal_id"]].append((r["payout_id"], r["status"]))
        outcome.fee_payouts = dict(payouts)
        outcome.fee_schedules = {
            r["deal_id"]: r["fee_schedule"]
            for r in await conn.fetch("SELECT deal_id, fee_schedule FROM payouts_deals")
        }
        applied: dict[str, set[str]] = defaultdict(set)
        for r in await conn.fetch(_APPLIED):
            applied[r["consumer"]].add(r["event_id"])
        outcome.applied = dict(applied)
        outcome.answered = {
            r["request_id"] for r in await conn.fetch("SELECT request_id FROM matching_requests")
        }
        outcome.reversals = {
            (r["rail"], r["provider_ref"]): (r["payout_id"], r["status"], int(r["returns"]))
            for r in await conn.fetch(_REVERSALS)
        }
    finally:
        await conn.close()
    pool = await create_pool(database_url, schema=PAYOUTS.name, min_size=1, max_size=2)
    try:
        report = await check_ledger(PostgresPayoutsStore(pool))
    finally:
        await pool.close()
    outcome.ledger_problems = report.problems
    outcome.ledger_transfers = report.transfers


def read_provider(rails: ChaosRails, outcome: Outcome) -> None:
    """Money that really moved: the rails' transfers (idempotent replays are not new), what
    they took back, and how the payouts service answered replayed webhooks."""
    outcome.transfers = rails.transfers()
    outcome.provider_requests = rails.requests()
    outcome.returns = {(r.rail, r.provider_ref) for r in rails.returns}
    outcome.webhook_replays = rails.webhooks.replays
    outcome.webhook_replays_refused = rails.webhooks.replays_refused


async def read_dead_letters(bootstrap: str, outcome: Outcome) -> None:
    """Every dead letter, as (service, invalid record number or None for a valid record).

    Each DLQ partition is read to its end offset, and any offset missing below it is read
    again: the embedded broker can leave a record out of a fetch that races with appends
    from several producers, and a dead letter read by nobody would be a check failed for
    nothing. A DLQ is neither compacted nor transactional, so its offsets have no gaps.
    """
    seen: dict[tuple[str, int, int], tuple[str, str | None]] = {}
    for _ in range(_DLQ_READS):
        missing = await _read_dlqs(bootstrap, seen)
        if not missing:
            break
    outcome.dead_letters = list(seen.values())


_DLQ_READS = 5


async def _read_dlqs(
    bootstrap: str, seen: dict[tuple[str, int, int], tuple[str, str | None]]
) -> int:
    """Read into `seen` every DLQ partition from its first offset not in `seen` to its end;
    returns how many offsets below the ends are still not in `seen`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, [dlq_topic(topic) for topic in TOPICS])
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)

        def absent(tp: TopicPartition) -> list[int]:
            return [
                o for o in range(starts[tp], ends[tp]) if (tp.topic, tp.partition, o) not in seen
            ]

        reading = {tp: gaps[0] for tp in partitions if (gaps := absent(tp))}
        if not reading:
            return 0
        consumer.assign(list(reading))
        for tp, first in reading.items():
            consumer.seek(tp, first)
        deadline = asyncio.get_running_loop().time() + 30.0
        while reading and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    headers = {k: v.decode("utf-8", "replace") for k, v in r.headers}
                    seen[(r.topic, r.partition, r.offset)] = (
                        headers.get("dlq.service", "?"),
                        headers.get(INVALID_HEADER),
                    )
                if await consumer.position(tp) >= ends[tp]:
                    reading.pop(tp, None)
        return sum(len(absent(tp)) for tp in partitions)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool


def converged(workload: Workload, outcome: Outcome) -> bool:
    """The database and the provider say everything the workload implies has happened."""
    return (
        not _attribution_vs_truth(workload, outcome)
        and outcome.confirmations == workload.confirmations
        and all(
            len(_amounts(outcome, workload, d)) >= len(_expected(workload, outcome, d))
            for d in workload.payouts
        )
        and all(
            sum(_paid_once(outcome, p, s) for p, s in outcome.fee_payouts.get(d, ()))
            >= len(_expected(workload, outcome, d))
            for d in workload.payouts
        )
        and not _not_reversed_once(outcome)
        and not any(_missing(workload, outcome).values())
        and workload.match_requests <= outcome.answered
    )


def checks(workload: Workload, outcome: Outcome, clean: Outcome | None) -> list[Check]:
    # Each deal keeps the fee schedule it was first stored with (the chaos run changes the
    # setting mid-run): one transfer on completion, or one per deliverable.
    expected = {d: _expected(workload, outcome, d) for d in workload.payouts}
    paid = {d: len(_amounts(outcome, workload, d)) for d in workload.payouts}
    double = sum(1 for d, n in paid.items() if n > len(expected[d]))
    lost = sum(1 for d, n in paid.items() if n < len(expected[d]))
    wrong = sum(
        1 for d in workload.payouts if paid[d] and _versions_paid(workload, outcome, d) is None
    )
    amended = [d for d, truth in workload.payouts.items() if truth.amended]
    versions = Counter(_versions_paid(workload, outcome, d) for d in amended)
    within = len(amended) - versions[None]
    rows = sum(
        1 for d, v in outcome.fee_payouts.items() if d in expected and len(v) != len(expected[d])
    )
    unpaid_rows = sum(
        1
        for d in workload.payouts
        if not all(_paid_once(outcome, p, s) for p, s in outcome.fee_payouts.get(d, ()))
        or d not in outcome.fee_payouts
    )
    reversal_problems = _not_reversed_once(outcome)
    # The ledger check's escrow rule (services/payouts/domain/escrow.py), shown on its own.
    escrow = [p for p in outcome.ledger_problems if p.startswith("escrow of brand")]
    replays_taken = outcome.webhook_replays - outcome.webhook_replays_refused
    fallbacks = sum(
        1 for p in workload.payouts.values() if p.fallback and outcome.transfers.get(p.fallback)
    )
    per_deliverable = sum(1 for s in outcome.fee_schedules.values() if s == "per_deliverable")
    stray = len(set(outcome.transfers) - workload.destinations)
    missing = _missing(workload, outcome)
    expected_dead = {(s, str(n)) for s, numbers in workload.dead_letters.items() for n in numbers}
    dead = Counter(outcome.dead_letters)
    valid_dead = sum(n for (_, invalid), n in dead.items() if invalid is None)
    result = [
        Check("deals confirmed (deliverables)", f"{len(workload.confirmations):,}", True),
        Check("double payouts (provider)", str(double), double == 0),
        Check("lost payouts (provider)", str(lost), lost == 0),
        Check("payouts with a wrong amount", str(wrong), wrong == 0),
        # Which version an amended deal pays depends on arrival order; each paid one of them
        # exactly (or, per deliverable, the first's share then the rest of the second).
        Check(
            "amended deals paid within their versions",
            f"{within}/{len(amended)} (v1 {versions['v1']}, v2 {versions['v2']}, "
            f"mixed {versions['mixed']})",
            within == len(amended),
        ),
        Check("transfers to unknown destinations", str(stray), stray == 0),
        Check(
            "deals paid per deliverable (schedule changed mid-run)", f"{per_deliverable:,}", True
        ),
        Check("deals with fee payout rows ≠ their schedule", str(rows), rows == 0),
        Check("fee payouts not sent", str(unpaid_rows), unpaid_rows == 0),
        Check("brands' escrow negative", str(len(escrow)), not escrow),
        Check(
            "returns not reversed exactly once (rails vs ledger)",
            f"{len(reversal_problems)} ({len(outcome.returns)} returns at the rails)",
            not reversal_problems,
        ),
        Check(
            "webhooks replayed 301 s old and taken",
            f"{replays_taken} ({outcome.webhook_replays} replays)",
            replays_taken == 0,
        ),
        Check("creators paid through their fallback rail", f"{fallbacks:,}", True),
        Check(
            "ledger",
            f"{outcome.ledger_transfers:,} transfers, {len(outcome.ledger_problems)} problems",
            not outcome.ledger_problems,
        ),
        Check(
            "attribution ≠ ground truth (deals)",
            str(len(_attribution_vs_truth(workload, outcome))),
            not _attribution_vs_truth(workload, outcome),
        ),
        Check(
            "confirmations ≠ ground truth",
            str(len(outcome.confirmations ^ workload.confirmations)),
            outcome.confirmations == workload.confirmations,
        ),
        Check(
            "valid events not applied",
            ", ".join(f"{s} {n}" for s, n in sorted(missing.items())),
            not any(missing.values()),
        ),
        Check(
            "match requests answered",
            f"{len(workload.match_requests & outcome.answered)}/{len(workload.match_requests)}",
            workload.match_requests <= outcome.answered,
        ),
        Check(
            "dead letters: invalid records (expected)",
            f"{len(expected_dead & set(dead))}/{len(expected_dead)}",
            expected_dead <= set(dead),
        ),
        Check("dead letters: valid records", str(valid_dead), valid_dead == 0),
        Check(
            "dead letters: repeated after a crash",
            str(sum(n - 1 for n in dead.values() if n > 1)),
            True,
        ),
    ]
    if clean is not None:
        differ = _differing(outcome.attribution, clean.attribution)
        result.append(Check("attribution ≠ clean run (deals)", str(differ), differ == 0))
        # An amended deal may pay another version there (another arrival order): it is held
        # to its versions instead.
        differ_paid = sum(
            1
            for d in workload.payouts
            if d not in amended
            and outcome.fee_schedules.get(d) == clean.fee_schedules.get(d)
            and sorted(_amounts(outcome, workload, d)) != sorted(_amounts(clean, workload, d))
        )
        result.append(
            Check("payouts ≠ clean run (deals never amended)", str(differ_paid), differ_paid == 0)
        )
        outside = sum(1 for d in amended if _versions_paid(workload, clean, d) is None)
        result.append(
            Check(
                "amended deals paid outside their versions (clean run)", str(outside), not outside
            )
        )
    return result


def _amounts(outcome: Outcome, workload: Workload, deal_id: str) -> list[Money]:
    """What the deal's creator got on any rail: its account's, or its fallback."""
    truth = workload.payouts[deal_id]
    return [a for d in truth.destinations for a in outcome.transfers.get(d, [])]


def _versions_paid(workload: Workload, outcome: Outcome, deal_id: str) -> str | None:
    """Which of the deal's allowed outcomes its creator got ("v1", "v2", "mixed"), or None.
    Exact when the count of transfers is right; when it is not (a double or lost payout,
    flagged on its own) the amounts alone are compared."""
    amounts = sorted(_amounts(outcome, workload, deal_id))
    schedule = outcome.fee_schedules.get(deal_id, "on_completion")
    allowed = workload.payouts[deal_id].allowed(schedule)
    exact = next((name for name, parts in allowed if amounts == parts), None)
    if exact is not None:
        return exact
    return next(
        (
            name
            for name, parts in allowed
            if len(amounts) != len(parts) and set(amounts) == set(parts)
        ),
        None,
    )


def _paid_once(outcome: Outcome, payout_id: str, status: str) -> bool:
    """Sent, settled, or returned by its rail after being paid (failed with a return)."""
    returned = {payout for payout, _, _ in outcome.reversals.values()}
    return status in ("sent", "settled") or (status == "failed" and payout_id in returned)


def _not_reversed_once(outcome: Outcome) -> list[str]:
    """Each transfer a rail took back is reversed once in the ledger, its payout failed (a
    `paid` webhook delivered after the return does not bring it back); nothing else is."""
    problems = []
    for ref in sorted(outcome.returns):
        payout, status, returns = outcome.reversals.get(ref, ("?", "not reversed", 0))
        if returns != 1 or status != "failed":
            problems.append(f"{ref}: {payout} {status}, {returns} reversals")
    problems += [
        f"{ref}: reversed, not returned" for ref in outcome.reversals.keys() - outcome.returns
    ]
    return problems


def _expected(workload: Workload, outcome: Outcome, deal_id: str) -> list[Money]:
    schedule = outcome.fee_schedules.get(deal_id, "on_completion")
    return workload.payouts[deal_id].expected(schedule)


def _differing(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> int:
    return sum(1 for deal in a.keys() | b.keys() if a.get(deal) != b.get(deal))


def _missing(workload: Workload, outcome: Outcome) -> dict[str, int]:
    return {
        service: len(ids - outcome.applied.get(service, set()))
        for service, ids in workload.applied.items()
    }


def _attribution_vs_truth(workload: Workload, outcome: Outcome) -> list[str]:
    wrong = []
    for deal_id, truth in workload.attribution.items():
        row = outcome.attribution.get(deal_id)
        if row is None:
            wrong.append(deal_id)
            continue
        if any(row[name] != getattr(truth, name) for name in _TRUTH_FIELDS) or (
            row["currency"] != truth.revenue.currency
            or Decimal(row["revenue"]) != truth.revenue.amount
        ):
            wrong.append(deal_id)
    return wrong


async def wait_until(predicate: Any, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(1.0)
    return False
