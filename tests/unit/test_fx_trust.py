"""Guards on the FX feed: future-dated events refused at the door, suspect snapshots marked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.contract.events import CloudEvent, EventDecodeError, check_not_future, encode
from shared.contract.events.examples import valid_example
from shared.contract.money import FxSnapshot
from shared.runtime.fx_moves import rejudged, suspect_reason
from shared.runtime.kafka import Delivery, SafeConsumer
from tests.unit.test_failure_policy import RETRY, RecordingDeadLetters

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def _event(event_type: str, **changes: Any) -> CloudEvent[Any]:
    example = valid_example(event_type)
    data = example.data.model_copy(update=changes.pop("data", {}))
    return example.model_copy(update={"data": data, **changes})


def test_fx_snapshot_dated_beyond_the_clock_skew_is_refused() -> None:
    check_not_future(_event("fx.rates.published", data={"as_of": NOW + SKEW}), NOW, SKEW)
    future = _event("fx.rates.published", data={"as_of": datetime(9999, 1, 1, tzinfo=UTC)})
    with pytest.raises(EventDecodeError) as refused:
        check_not_future(future, NOW, SKEW)
    assert refused.value.error_class == "FutureDated"
    assert refused.value.reason.startswith("data.as_of: 9999-01-01T00:00:00+00:00 is in the future")


def test_payout_account_sent_from_the_future_is_refused() -> None:
    later = NOW + SKEW + timedelta(seconds=1)
    with pytest.raises(EventDecodeError, match=r"FutureDated: time: .* is in the future"):
        check_not_future(_event("creator.payout-account.upserted", time=later), NOW, SKEW)


def test_events_where_no_newest_version_wins_may_carry_any_time() -> None:
    check_not_future(_event("deal.signed", time=NOW + timedelta(days=900)), NOW, SKEW)


async def test_the_consumer_dead_letters_a_future_snapshot_and_keeps_its_neighbours() -> None:
    dead = RecordingDeadLetters()
    future = _event("fx.rates.published", data={"as_of": NOW + timedelta(days=1)})
    good = _event("fx.rates.published", id="fx-good")
    deliveries = [
        Delivery("fx.rates", 0, offset, b"USD", encode(event), ())
        for offset, event in enumerate([future, good])
    ]
    handled: list[str] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        handled.extend(event.id for event, _ in batch)

    consumer = SafeConsumer(dead, RETRY, max_clock_skew=SKEW, clock=lambda: NOW)
    await consumer.handle_batch(deliveries, handler)
    assert handled == ["fx-good"]
    assert [(offset, error) for offset, error, _ in dead.sent] == [(0, "FutureDated")]


def _snapshot(rates: dict[str, str], *, base: str = "USD", hours: int = 0) -> FxSnapshot:
    return FxSnapshot(
        base, {c: Decimal(r) for c, r in rates.items()}, NOW + timedelta(hours=hours), "feed"
    )


TRUSTED = _snapshot({"EUR": "0.9215", "JPY": "151.32", "GBP": "0.79"})
LIMIT = Decimal("0.25")


def test_ordinary_moves_are_trusted() -> None:
    later = _snapshot({"EUR": "0.95", "JPY": "140", "GBP": "0.80", "CHF": "0.88"}, hours=1)
    assert suspect_reason(later, TRUSTED, LIMIT) is None
    assert suspect_reason(TRUSTED, None, LIMIT) is None  # the first snapshot


@pytest.mark.parametrize(
    ("rates", "moved"),
    [
        ({"EUR": "100000", "JPY": "151.32"}, "EUR 0.9215 -> 100000 per USD"),
        ({"EUR": "0.9215", "JPY": "15.132"}, "JPY 151.32 -> 15.132 per USD"),
        ({"EUR": "0.6", "JPY": "151.32"}, "EUR 0.9215 -> 0.6 per USD"),
    ],
)
def test_a_rate_that_moved_too_far_makes_the_snapshot_suspect(
    rates: dict[str, str], moved: str
) -> None:
    reason = suspect_reason(_snapshot(rates, hours=1), TRUSTED, LIMIT)
    assert reason is not None and moved in reason and "moved more than 25%" in reason


def test_snapshots_with_another_base_are_compared_by_cross_rates() -> None:
    # EUR-based: USD 1/0.9215 = 1.0852, JPY 151.32/0.9215 = 164.21 per EUR: consistent.
    consistent = _snapshot({"USD": "1.0852", "JPY": "164.21"}, base="EUR", hours=1)
    assert suspect_reason(consistent, TRUSTED, LIMIT) is None
    poisoned = _snapshot({"USD": "1.0852", "JPY": "16421"}, base="EUR", hours=1)
    reason = suspect_reason(poisoned, TRUSTED, LIMIT)
    assert reason is not None and "JPY" in reason


@pytest.mark.parametrize("rate", ["1E-40", "1E+12"])
def test_rates_beyond_any_real_currency_are_suspect_even_first(rate: str) -> None:
    reason = suspect_reason(_snapshot({"EUR": rate}), None, LIMIT)
    assert reason is not None and "outside any real exchange rate" in reason


def test_a_snapshot_of_another_base_between_does_not_let_a_poisoned_rate_through() -> None:
    """The one in force (GBP-based, quoting USD alone) shares one currency with the next
    USD-based snapshot: the last trusted USD-based one judges it."""
    gbp = _snapshot({"USD": "1.27"}, base="GBP", hours=1)
    poisoned = _snapshot({"EUR": "0.5", "JPY": "151.32", "GBP": "0.79"}, hours=2)
    genuine = _snapshot({"EUR": "0.93", "JPY": "151.32", "GBP": "0.79"}, hours=3)
    verdicts = [s.suspect for s in rejudged([gbp, poisoned, genuine], [TRUSTED], LIMIT)]
    assert verdicts[0] is None and verdicts[2] is None
    assert verdicts[1] is not None and "EUR 0.9215 -> 0.5 per USD" in verdicts[1]


def test_a_rate_walked_in_steps_each_under_the_limit_is_stopped_within_a_day() -> None:
    """Each step moves EUR 24 % from the one before; the day's anchor (the first trusted
    snapshot here) sees the second step's 54 %, and the walk stops there."""
    steps = [
        _snapshot({"EUR": str(Decimal("0.9215") * Decimal("1.24") ** n), "JPY": "151.32"}, hours=n)
        for n in range(1, 7)
    ]
    verdicts = [s.suspect for s in rejudged(steps, [TRUSTED], LIMIT)]
    assert verdicts[0] is None
    assert all(v is not None and "moved more than 25%" in v for v in verdicts[1:])
    # A genuine rate after the walk is judged against what was trusted, and trusted.
    genuine = _snapshot({"EUR": "0.93", "JPY": "151.32"}, hours=8)
    assert rejudged([*steps, genuine], [TRUSTED], LIMIT)[-1].suspect is None


def test_a_move_spread_over_more_than_a_day_is_judged_from_the_day_before() -> None:
    """Steps of 15 % a day apart: each within the limit of the one in force a day before."""
    days = [
        FxSnapshot(
            "USD",
            {"EUR": Decimal("0.9215") * Decimal("1.15") ** n, "JPY": Decimal("151.32")},
            NOW + timedelta(days=n),
            "feed",
        )
        for n in range(1, 5)
    ]
    assert [s.suspect for s in rejudged(days, [TRUSTED], LIMIT)] == [None] * 4
    # Twice as fast (two steps within one day) passes the anchor's limit and is suspect.
    fast = FxSnapshot(
        "USD",
        {"EUR": Decimal("0.9215") * Decimal("1.15") ** 2, "JPY": Decimal("151.32")},
        NOW + timedelta(days=1, hours=12),
        "feed",
    )
    verdicts = rejudged([days[0], fast], [TRUSTED], LIMIT)
    assert verdicts[0].suspect is None and verdicts[1].suspect is not None
