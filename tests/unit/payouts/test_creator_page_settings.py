"""The creator page's settings: links live 15 minutes at most, and printed links start with
the address creators reach the page at."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.payouts.settings import PayoutsSettings


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
