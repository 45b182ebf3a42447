"""Order attribution: window, unknown codes, currency conversion and refunds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from services.tracking.domain.orders import (
    Order,
    OrderReason,
    OrderStatus,
    Refund,
    evaluate_order,
)
from shared.contract.money import FxSnapshot, Money
from tests.unit.tracking.builders import T0, terms


def order(amount: str = "50.00", currency: str = "USD", *, days: float = 3) -> Order:
    return Order("o-1", "CODE10", Money.of(amount, currency), T0 + timedelta(days=days))


def refund(amount: str, currency: str = "USD", *, days: float = 5) -> Refund:
    return Refund("o-1", Money.of(amount, currency), T0 + timedelta(days=days))


DEAL = terms(deal_id="deal-1", days=30, window_days=7)
EUR_DEAL = terms(deal_id="deal-eur", fee="400.00", currency="EUR")
SNAPSHOT = FxSnapshot("USD", {"EUR": Decimal("0.9215")}, T0, "ecb")


def test_window_is_start_to_end_plus_attribution_days_inclusive() -> None:
    assert evaluate_order(order(days=0), (), [DEAL], None).deal_id == "deal-1"
    assert evaluate_order(order(days=37), (), [DEAL], None).deal_id == "deal-1"
    for days in (-0.001, 37.001):
        outcome = evaluate_order(order(days=days), (), [DEAL], None)
        assert outcome.status is OrderStatus.UNATTRIBUTED
        assert outcome.reason is OrderReason.OUTSIDE_WINDOW
        assert outcome.deal_id is None


def test_unknown_code_is_kept_unattributed_with_its_reason() -> None:
    outcome = evaluate_order(order(), (), [], None)
    assert (outcome.status, outcome.reason) == (OrderStatus.UNATTRIBUTED, OrderReason.UNKNOWN_CODE)
    other = terms(deal_id="deal-2", promo_codes=("OTHER",))
    assert evaluate_order(order(), (), [other], None).reason is OrderReason.UNKNOWN_CODE


def test_same_currency_counts_at_face_value() -> None:
    outcome = evaluate_order(order("64.90"), (), [DEAL], None)
    assert outcome.status is OrderStatus.ATTRIBUTED
    assert outcome.net_revenue == Money.of("64.90", "USD")
    assert outcome.counts_as_order
    assert outcome.fx is not None and outcome.fx.rate == 1 and outcome.fx.source is None


def test_conversion_uses_the_snapshot_and_records_it() -> None:
    outcome = evaluate_order(order("64.90"), (), [EUR_DEAL], SNAPSHOT)
    assert outcome.revenue == Money.of("59.81", "EUR")  # 64.90 x 0.9215 = 59.80535
    assert outcome.fx is not None
    assert (outcome.fx.rate, outcome.fx.as_of, outcome.fx.source) == (Decimal("0.9215"), T0, "ecb")


def test_without_a_snapshot_the_order_waits_for_one_attributed_but_not_counted() -> None:
    outcome = evaluate_order(order(), (), [EUR_DEAL], None)
    assert outcome.status is OrderStatus.PENDING_FX
    assert outcome.reason is OrderReason.NO_FX_SNAPSHOT
    assert outcome.deal_id == "deal-eur"
    assert outcome.net_revenue is None and not outcome.counts_as_order
    no_rate = FxSnapshot("USD", {"JPY": Decimal("150")}, T0, "ecb")
    assert evaluate_order(order(), (), [EUR_DEAL], no_rate).reason is OrderReason.NO_FX_RATE


def test_a_full_refund_reverses_exactly_what_the_order_added() -> None:
    outcome = evaluate_order(order("64.90"), [refund("64.90")], [EUR_DEAL], SNAPSHOT)
    assert outcome.net_revenue == Money.of("0.00", "EUR")
    assert outcome.fully_refunded and not outcome.counts_as_order
    assert outcome.last_refund_at == T0 + timedelta(days=5)


def test_partial_refunds_sum_and_are_capped_at_the_order_amount() -> None:
    partial = evaluate_order(
        order("100.00"), [refund("30.00"), refund("20.00", days=6)], [DEAL], None
    )
    assert partial.net_revenue == Money.of("50.00", "USD")
    assert partial.counts_as_order
    assert partial.last_refund_at == T0 + timedelta(days=6)
    over = evaluate_order(order("100.00"), [refund("80.00"), refund("80.00", days=6)], [DEAL], None)
    assert over.refunded_source == Money.of("100.00", "USD")
    assert over.net_revenue == Money.of("0.00", "USD")


def test_refunds_in_another_currency_or_for_another_order_are_ignored() -> None:
    other = Refund("o-2", Money.of("50.00", "USD"), T0)
    outcome = evaluate_order(order(), [refund("10.00", "EUR"), other], [DEAL], None)
    assert outcome.net_revenue == Money.of("50.00", "USD")
    assert outcome.last_refund_at is None


def test_among_accepting_deals_the_latest_start_wins_then_smallest_id() -> None:
    early = terms(deal_id="deal-a", starts_at=T0 - timedelta(days=10))
    late_b = terms(deal_id="deal-b", starts_at=T0)
    late_c = terms(deal_id="deal-c", starts_at=T0)
    for candidates in ([early, late_b, late_c], [late_c, late_b, early]):
        assert evaluate_order(order(), (), candidates, None).deal_id == "deal-b"
