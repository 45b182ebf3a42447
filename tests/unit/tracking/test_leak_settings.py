"""TRACKING_LEAK_* settings become the thresholds of the leaked-code rules."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.tracking.domain.leaks import DEFAULT_COUPON_DOMAINS, LeakThresholds
from services.tracking.settings import TrackingSettings


def test_without_settings_the_thresholds_are_the_documented_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("TRACKING_LEAK_"):
            monkeypatch.delenv(name)
    assert TrackingSettings().leak_thresholds() == LeakThresholds()
    assert LeakThresholds().coupon_domains == DEFAULT_COUPON_DOMAINS


def test_each_setting_reaches_its_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKING_LEAK_WINDOW_DAYS", "14")
    monkeypatch.setenv("TRACKING_LEAK_ABROAD_SHARE", "0.75")
    monkeypatch.setenv("TRACKING_LEAK_ABROAD_MIN_ORDERS", "25")
    monkeypatch.setenv("TRACKING_LEAK_COUPON_SHARE", "0.2")
    monkeypatch.setenv("TRACKING_LEAK_COUPON_MIN_ORDERS", "3")
    monkeypatch.setenv("TRACKING_LEAK_BURST_SHARE_OF_REACH", "0.01")
    monkeypatch.setenv("TRACKING_LEAK_BURST_MIN_ORDERS", "50")
    monkeypatch.setenv("TRACKING_LEAK_COUPON_DOMAINS", " Deals.Example , coupons.example.co.uk. ,")
    assert TrackingSettings().leak_thresholds() == LeakThresholds(
        window=timedelta(days=14),
        abroad_share=Decimal("0.75"),
        abroad_min_orders=25,
        coupon_share=Decimal("0.2"),
        coupon_min_orders=3,
        burst_share_of_reach=Decimal("0.01"),
        burst_min_orders=50,
        coupon_domains=frozenset({"deals.example", "coupons.example.co.uk"}),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACKING_LEAK_WINDOW_DAYS", "0"),
        ("TRACKING_LEAK_ABROAD_SHARE", "1"),
        ("TRACKING_LEAK_COUPON_SHARE", "-0.1"),
        ("TRACKING_LEAK_BURST_SHARE_OF_REACH", "0"),
        ("TRACKING_LEAK_BURST_MIN_ORDERS", "0"),
        ("TRACKING_LEAK_COUPON_DOMAINS", "https://retailmenot.com/"),
        ("TRACKING_LEAK_COUPON_DOMAINS", "localhost"),
    ],
)
def test_a_setting_that_cannot_be_meant_stops_the_service(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("TRACKING_").lower()):
        TrackingSettings()
