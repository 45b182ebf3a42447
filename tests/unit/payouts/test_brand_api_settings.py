"""The brand API's settings: not served unless its port is set, never without Redis for its
rate limits, and limits that can be kept."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from services.payouts.app import brand_api
from services.payouts.settings import PayoutsSettings
from shared.runtime.server_urls import InfraUrls
from shared.runtime.service import ServiceConfigurationError


def test_the_api_is_served_only_on_its_port_and_with_redis() -> None:
    without_redis = SimpleNamespace(urls=InfraUrls("localhost:9092", "postgresql://db/x", None))
    assert brand_api(without_redis, PayoutsSettings(), None) == []  # type: ignore[arg-type]
    with pytest.raises(ServiceConfigurationError, match="REDIS_URL"):
        brand_api(without_redis, PayoutsSettings(brand_api_port=0), None)  # type: ignore[arg-type]


def test_rate_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOUTS_BRAND_API_RATE_LIMIT", "600")
    monkeypatch.setenv("PAYOUTS_BRAND_API_RATE_WINDOW_SECONDS", "3600")
    settings = PayoutsSettings()
    assert (settings.brand_api_rate_limit, settings.brand_api_rate_window_seconds) == (600, 3600)
    for name, value in (("RATE_LIMIT", "0"), ("RATE_WINDOW_SECONDS", "0")):
        monkeypatch.setenv(f"PAYOUTS_BRAND_API_{name}", value)
        with pytest.raises(ValidationError, match=f"brand_api_{name.lower()}"):
            PayoutsSettings()
        monkeypatch.setenv(f"PAYOUTS_BRAND_API_{name}", "60")
