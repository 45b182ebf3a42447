"""Creators' payout e-mails: one per payout status change, with a fresh link to their page
(docs/architecture.md §11). `content` says what an e-mail says, `sender` sends them at most
once, `smtp` talks to the mail server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from services.payouts.creator_page.access import CreatorAccess, link_url
from services.payouts.notifications.content import Link
from services.payouts.notifications.sender import EmailSender, LinkIssuer
from services.payouts.notifications.smtp import SmtpMailer
from services.payouts.settings import PayoutsSettings
from services.payouts.store.port import PayoutsStore
from shared.runtime.service import Background

__all__ = ["EmailSender", "email_sender", "link_issuer"]


def link_issuer(pool: asyncpg.Pool, settings: PayoutsSettings) -> LinkIssuer:
    """New links to creators' pages, as `creatorflow creators link` issues them."""
    access = CreatorAccess(pool)
    lifetime = timedelta(minutes=settings.page_link_minutes)
    base = settings.page_base_url()

    async def issue(creator_id: str, now: datetime) -> Link:
        link = await access.new_link(creator_id, now, lifetime)
        return Link(link_url(base, link.token), link.expires_at)

    return issue


def email_sender(
    pool: asyncpg.Pool,
    db: PayoutsStore,
    settings: PayoutsSettings,
    clock: Callable[[], datetime],
) -> list[Background]:
    """The sender's loop, when PAYOUTS_SMTP_HOST is set. Without it, the e-mails of creators
    with an address wait as `pending`; one older than PAYOUTS_EMAIL_MAX_AGE_HOURS when a
    sender finds it is never sent (it would tell old news)."""
    if not settings.emails_on() or settings.smtp_host is None or settings.smtp_from is None:
        return []
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password,
        start_tls=settings.smtp_starttls,
        timeout_seconds=settings.smtp_timeout_seconds,
    )
    sender = EmailSender(
        db,
        mailer,
        link_issuer(pool, settings),
        sender=settings.smtp_from,
        clock=clock,
        lease=timedelta(seconds=3 * settings.smtp_timeout_seconds),
        max_attempts=settings.email_max_attempts,
        max_age=timedelta(hours=settings.email_max_age_hours),
        idle_seconds=settings.email_idle_seconds,
    )
    return [sender.run]
