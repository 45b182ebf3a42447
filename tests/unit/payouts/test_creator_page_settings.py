"""The creator page's settings: links live 15 minutes at most, and printed links start with
the address creators reach the page at."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from services.payouts.app import creator_page
from services.payouts.settings import PayoutsSettings
from shared.runtime.server_urls import InfraUrls
from shared.runtime.service import ServiceConfigurationError
from tests.unit.payouts.production_env import set_production_env


def test_a_link_lives_fifteen_minutes_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOUTS_PAGE_LINK_MINUTES", "16")
    with pytest.raises(ValidationError, match="page_link_minutes"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_PAGE_LINK_MINUTES", "15")
    assert PayoutsSettings().page_link_minutes == 15


def test_links_start_with_the_pages_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOUTS_PAGE_PORT", "9443")
    assert PayoutsSettings().page_base_url() == "http://127.0.0.1:9443"
    monkeypatch.setenv("PAYOUTS_PAGE_URL", "https://pay.example.com/")
    assert PayoutsSettings().page_base_url() == "https://pay.example.com"


def test_production_serves_the_page_only_behind_https(monkeypatch: pytest.MonkeyPatch) -> None:
    set_production_env(monkeypatch)
    assert PayoutsSettings().page_port is None  # no page: nothing to refuse
    monkeypatch.setenv("PAYOUTS_PAGE_PORT", "9443")
    with pytest.raises(ValidationError, match="PAYOUTS_PAGE_URL to its https"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_PAGE_URL", "http://pay.example.com")
    with pytest.raises(ValidationError, match="PAYOUTS_PAGE_URL to its https"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_PAGE_URL", "https://pay.example.com")
    assert PayoutsSettings().page_base_url() == "https://pay.example.com"


def test_the_page_is_not_served_without_redis_for_its_rate_limits() -> None:
    urls = InfraUrls("localhost:9092", "postgresql://db/x", None)
    resources = SimpleNamespace(urls=urls, pool=None)
    assert creator_page(resources, PayoutsSettings()) == []  # type: ignore[arg-type]
    with_page = PayoutsSettings(page_port=0)
    with pytest.raises(ServiceConfigurationError, match="REDIS_URL"):
        creator_page(resources, with_page)  # type: ignore[arg-type]
