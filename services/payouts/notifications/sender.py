"""The sender of creators' payout e-mails (docs/architecture.md §11): claims due e-mails
(FOR UPDATE SKIP LOCKED and a lease, so replicas share them), and for each issues a fresh link,
commits `sending`, hands the message to the SMTP server, then commits `sent`.

At most once: an e-mail is `sending` (committed) before its SMTP transaction starts, and one
found `sending` past its lease (its sender stopped in between) is taken as `unknown`, logged
and counted, never sent again. A duplicate is worse than a missing e-mail here: the next status
change brings a fresh link anyway. What the server refused is tried again with backoff (a 4xx
reply, no connection) up to `max_attempts`, or given up at once (5xx): it delivered nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

import structlog

from services.payouts.notices import DueEmail, EmailState, Notice
from services.payouts.notifications.content import Link, message
from services.payouts.notifications.smtp import NotSent
from services.payouts.store.port import PayoutsStore
from shared.runtime.observability import PAYOUT_EMAILS
from shared.runtime.rounds import run_in_rounds

log = structlog.get_logger(__name__)

LinkIssuer = Callable[[str, datetime], Awaitable[Link]]
"""A new link to the creator's page (creator id, now)."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the mail server. Raises `smtp.NotSent` when the server kept
        nothing; any other error leaves it in doubt."""
        ...


class EmailSender:
    """Runs rounds while e-mails are due, then polls every `idle_seconds`."""

    def __init__(
        self,
        db: PayoutsStore,
        mailer: Mailer,
        links: LinkIssuer,
        *,
        sender: str,
        clock: Callable[[], datetime],
        lease: timedelta = timedelta(seconds=90),
        max_attempts: int = 5,
        max_age: timedelta = timedelta(hours=24),
        retry_initial: timedelta = timedelta(seconds=30),
        retry_max: timedelta = timedelta(minutes=30),
        batch: int = 20,
        idle_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._mailer = mailer
        self._links = links
        self._sender = sender
        self._clock = clock
        self._lease = lease
        self._max_attempts = max_attempts
        self._max_age = max_age
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._batch = batch
        self._idle = idle_seconds

    async def run(self) -> None:
        await run_in_rounds(self._round_surviving_outages, full=1, idle_seconds=self._idle)

    async def _round_surviving_outages(self) -> int:
        """`round`, where one that fails counts as having sent nothing: the loop goes on."""
        try:
            return await self.round()
        except Exception:  # the database is away: e-mails wait, payouts go on
            log.exception("payout e-mails: round failed, trying again")
            return 0

    async def round(self) -> int:
        """Settle the e-mails left in doubt, then send those due now; how many were claimed."""
        now = self._clock()
        async with self._db.transaction() as repo:
            doubtful = await repo.emails_in_doubt(now)
        for notice in doubtful:
            PAYOUT_EMAILS.labels(outcome="unknown").inc()
            log.warning(
                "payout e-mail in doubt (its sender stopped while sending): not sent again",
                **_about(notice),
            )
        async with self._db.transaction() as repo:
            due = await repo.claim_emails(now, self._lease, self._batch)
        for item in due:
            await self._send(item)
        return len(due)

    async def _send(self, due: DueEmail) -> None:
        notice, now = due.notice, self._clock()
        if due.email is None:  # the account lost its address since the change
            await self._end(notice, "failed", now, error="no address")
            PAYOUT_EMAILS.labels(outcome="no_address").inc()
            return
        if now - notice.changed_at > self._max_age:
            await self._end(notice, "failed", now, error="too old")
            PAYOUT_EMAILS.labels(outcome="failed").inc()
            log.warning("payout e-mail too old to send", **_about(notice))
            return
        link = await self._links(notice.creator_id, now)
        email = message(
            notice,
            link,
            sender=self._sender,
            to=due.email.get_secret_value(),
            now=now,
            paid_from=due.cooling_off_until if _ahead(due.cooling_off_until, now) else None,
        )
        async with self._db.transaction() as repo:
            if not await repo.start_email(notice.event_id, due.claim_id, now + self._lease):
                return  # our lease ended and another sender claimed it
        try:
            # Bounded well within the lease, so no other sender takes it `unknown` meanwhile.
            await asyncio.wait_for(self._mailer.send(email), self._lease.total_seconds() * 2 / 3)
        except NotSent as error:
            await self._refused(due, error)
            return
        except Exception as error:  # broke off after the message was handed over
            await self._end(notice, "unknown", self._clock(), error=type(error).__name__)
            PAYOUT_EMAILS.labels(outcome="unknown").inc()
            log.warning(
                "payout e-mail in doubt: not sent again",
                **_about(notice),
                error=type(error).__name__,
            )
            return
        await self._end(notice, "sent", self._clock())
        PAYOUT_EMAILS.labels(outcome="sent").inc()
        log.info("payout e-mail sent", **_about(notice))

    async def _refused(self, due: DueEmail, error: NotSent) -> None:
        attempts = due.attempts + 1
        now = self._clock()
        if error.retryable and attempts < self._max_attempts:
            delay = min(self._retry_initial * 2 ** (attempts - 1), self._retry_max)
            await self._end(due.notice, "pending", now, error=error.reason, retry_at=now + delay)
            log.info(
                "payout e-mail not taken by the mail server: trying again",
                **_about(due.notice),
                reason=error.reason,
                in_seconds=delay.total_seconds(),
            )
            return
        await self._end(due.notice, "failed", now, error=error.reason)
        PAYOUT_EMAILS.labels(outcome="failed").inc()
        log.warning(
            "payout e-mail not sent", **_about(due.notice), reason=error.reason, attempts=attempts
        )

    async def _end(
        self,
        notice: Notice,
        state: EmailState,
        at: datetime,
        *,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        async with self._db.transaction() as repo:
            ended = await repo.end_email(notice.event_id, state, at, error=error, retry_at=retry_at)
        if not ended:
            log.warning("payout e-mail was already settled", **_about(notice), state=state)


def _about(notice: Notice) -> dict[str, str]:
    """What the logs say of an e-mail: never its address, its link or its text."""
    return {"payout_id": notice.payout_id, "status": notice.status, "event_id": notice.event_id}


def _ahead(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and moment > now
