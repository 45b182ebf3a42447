"""The payout e-mails' settings: off without an SMTP host, a sender address required, and in
production neither clear-text SMTP to another host nor links to a page without https."""

from __future__ import annotations

from typing import cast

import asyncpg
import pytest
from pydantic import ValidationError

from services.payouts.dispatcher import utc_now
from services.payouts.notifications import email_sender
from services.payouts.settings import PayoutsSettings
from services.payouts.store.memory import MemoryPayoutsStore
from tests.unit.payouts.production_env import set_production_env

UNUSED_POOL = cast(asyncpg.Pool, object())  # the sender's loop is built, never run here


def test_emails_are_off_without_an_smtp_host() -> None:
    settings = PayoutsSettings()
    assert not settings.emails_on()
    assert email_sender(UNUSED_POOL, MemoryPayoutsStore(), settings, utc_now) == []
    on = PayoutsSettings(smtp_host="smtp.example.com", smtp_from="payouts@example.com")
    assert len(email_sender(UNUSED_POOL, MemoryPayoutsStore(), on, utc_now)) == 1


def test_an_smtp_host_needs_a_sender_and_a_whole_login() -> None:
    with pytest.raises(ValidationError, match="PAYOUTS_SMTP_FROM"):
        PayoutsSettings(smtp_host="smtp.example.com")
    with pytest.raises(ValidationError, match="both PAYOUTS_SMTP_USERNAME and _PASSWORD"):
        PayoutsSettings(
            smtp_host="smtp.example.com", smtp_from="payouts@example.com", smtp_username="u"
        )


def test_a_wrong_smtp_password_is_never_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYOUTS_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("PAYOUTS_SMTP_PASSWORD", "pw-4b1d9c7e")
    with pytest.raises(ValidationError) as refused:
        PayoutsSettings()
    assert "pw-4b1d9c7e" not in str(refused.value)
    monkeypatch.setenv("PAYOUTS_SMTP_FROM", "payouts@example.com")
    monkeypatch.setenv("PAYOUTS_SMTP_USERNAME", "payouts")
    assert "pw-4b1d9c7e" not in repr(PayoutsSettings())


def test_production_mails_only_over_tls_and_links_only_to_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_production_env(monkeypatch)
    monkeypatch.setenv("PAYOUTS_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("PAYOUTS_SMTP_FROM", "payouts@example.com")
    with pytest.raises(ValidationError, match="https:// PAYOUTS_PAGE_URL"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_PAGE_URL", "https://pay.example.com")
    assert PayoutsSettings().emails_on()
    monkeypatch.setenv("PAYOUTS_SMTP_STARTTLS", "false")
    with pytest.raises(ValidationError, match="PAYOUTS_SMTP_STARTTLS=false"):
        PayoutsSettings()
    monkeypatch.setenv("PAYOUTS_SMTP_HOST", "127.0.0.1")  # a relay on this host
    assert not PayoutsSettings().smtp_starttls
