"""Property: after any sequence of events, dispatch rounds, failures and settlements, the
ledger sums to zero per currency, every transfer balances, and each payout's postings match
its status. Each business key is paid at most once; commission adjustments never claw back or
repay more than was paid."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.payouts.domain.ledger import balances, currency_totals
from shared.contract.events import CloudEvent
from shared.contract.money import Money
from tests.unit.payouts.builders import T0, account, attribution, confirmed, deal_signed, fx
from tests.unit.payouts.harness import Harness

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD"]
DEALS = ["d0", "d1"]
CREATORS = ["c0", "c1"]

rate = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500"), places=3)
money = st.builds(
    lambda units, currency: Money.from_minor(units, currency),
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(CURRENCIES),
)

sign = st.tuples(st.just("sign"), st.sampled_from(DEALS), st.sampled_from(CREATORS), money)
full_fx = st.tuples(st.just("fx"), st.fixed_dictionaries({c: rate for c in CURRENCIES[1:]}))
verified = st.tuples(
    st.just("account"), st.sampled_from(CREATORS), st.sampled_from(CURRENCIES), st.just("verified")
)
step = st.one_of(
    sign,
    full_fx,
    verified,
    verified,
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("confirm_all"), st.sampled_from(DEALS)),
    st.tuples(st.just("confirm"), st.sampled_from(DEALS), st.sampled_from(["dl-1", "dl-2"])),
    st.tuples(st.just("confirm_all"), st.sampled_from(DEALS)),
    st.tuples(
        st.just("account"),
        st.sampled_from(CREATORS),
        st.sampled_from(CURRENCIES),
        st.sampled_from(["verified", "verified", "pending", "rejected"]),
    ),
    st.tuples(st.just("fx"), st.dictionaries(st.sampled_from(CURRENCIES[1:]), rate, min_size=1)),
    st.tuples(st.just("attribution"), st.sampled_from(DEALS), money),
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("later"), st.integers(min_value=1, max_value=40)),
    st.tuples(st.just("settle")),
    st.tuples(st.just("commissions")),
)


async def run(
    steps: list[tuple[Any, ...]], fee_bps: int, failure_rate: float, seed: int
) -> Harness:
    h = Harness(platform_fee_bps=fee_bps, failure_rate=failure_rate, seed=seed, max_attempts=3)
    signed: dict[str, str] = {}
    minutes = 0
    for kind, *args in steps:
        event: CloudEvent[Any] | None = None
        if kind == "sign":
            deal, creator, fee = args
            signed.setdefault(deal, creator)
            event = deal_signed(
                deal, signed[deal], fee=fee, ends_at=T0, window_days=1, commission_rate="0.15"
            )
        elif kind == "confirm":
            event = confirmed(*args)
        elif kind == "confirm_all":
            await h.consume(confirmed(args[0], "dl-1"), confirmed(args[0], "dl-2"))
        elif kind == "account":
            creator, currency, status = args
            minutes += 1
            event = account(
                creator, currency=currency, status=status, time=T0 + timedelta(minutes=minutes)
            )
        elif kind == "fx":
            minutes += 1
            event = fx(
                {c: str(r) for c, r in args[0].items()}, as_of=T0 + timedelta(minutes=minutes)
            )
        elif kind == "attribution":
            deal, revenue = args
            minutes += 1
            event = attribution(deal, "c0", revenue, T0 + timedelta(minutes=minutes))
        elif kind == "dispatch":
            await h.dispatch_all()
        elif kind == "later":
            h.now += timedelta(seconds=args[0])
        elif kind == "settle":
            await h.settlement.run_once()
        elif kind == "commissions":
            await h.commissions.run_once()
        if event is not None:
            try:
                await h.consume(event)
            except Exception as error:  # a rejected event leaves no trace (rolled back)
                assert type(error).__name__ == "EventRejected"
    return h


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.tuples(sign, sign, st.lists(step, min_size=3, max_size=40)).map(
        lambda t: [t[0], t[1], *t[2]]
    ),
    fee_bps=st.sampled_from([0, 1, 250, 3333, 10_000]),
    failure_rate=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 1000),
)
def test_ledger_balances_after_any_sequence_of_events(
    steps: list[tuple[Any, ...]], fee_bps: int, failure_rate: float, seed: int
) -> None:
    h = asyncio.run(run(steps, fee_bps, failure_rate, seed))
    event(f"payouts: {min(len(h.payouts()), 3)}")
    event(f"statuses: {'/'.join(sorted({p.status for p in h.payouts()}))}")
    event(f"kinds: {'/'.join(sorted({p.kind for p in h.payouts()}))}")
    event(f"repaid a clawback: {any(p.recovered for p in h.payouts())}")
    postings = [p for t in h.db.state.transfers for p in t.postings]
    assert all(total == 0 for total in currency_totals(postings).values())
    assert h.problems() == []
    # Late attribution adjusts commission: never more repaid than was clawed back, and a
    # deal's commission bookings never add up to less than nothing.
    assert all(v <= 0 for (a, _), v in balances(postings).items() if a.startswith("creator_rec"))
    for deal in DEALS:
        entries = [p for p in h.payouts(deal) if p.kind != "fee"]
        paid = sum((p.gross.amount for p in entries if p.kind == "commission"), Decimal(0))
        assert paid >= sum((p.gross.amount for p in entries if p.kind == "clawback"), Decimal(0))
    keys = [(p.deal_id, p.kind, p.milestone) for p in h.payouts()]
    assert len(keys) == len(set(keys))
    # The provider moved money once per payout that is sent, settled, or failed after sending.
    moved = {p.payout_id for p in h.payouts() if p.provider_ref is not None}
    assert set(h.provider.transfers) == moved
