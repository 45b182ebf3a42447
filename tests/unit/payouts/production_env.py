"""The environment payouts runs in, in production, for the settings tests."""

from __future__ import annotations

import pytest

from services.payouts.destinations import new_key


def set_production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production, paying through Stripe (a test key) and sealing destinations with a fresh
    key: what payouts needs there before any optional setting."""
    monkeypatch.setenv("CREATORFLOW_PROFILE", "production")
    monkeypatch.setenv("PAYOUTS_PROVIDER", "stripe")
    monkeypatch.setenv("PAYOUTS_STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", new_key())
